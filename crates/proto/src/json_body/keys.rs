//! Which of the keys we read an object key is, ignoring ASCII case: one look-up in a 128-slot table.

/// The keys we read, whatever their case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Method,
    Result,
    Params,
    EventList,
    Code,
    Action,
    Index,
    Data,
    /// A device time key; the number ranks it (lower is preferred).
    Time(u8),
    XmEvent,
    Status,
    Channel,
    Serial,
    Mac,
    Ip,
    Address,
    Domain,
    Period,
    Other,
}

/// Classifies an object key, ignoring ASCII case.
///
/// Every name we read is lower-case ASCII letters, so a key matches a name exactly when the key's bytes
/// with bit 5 set (`| 0x20`: upper-case letters become lower-case, nothing else becomes a letter) are the
/// name's. A key of 2 to 16 bytes is read as two overlapping little-endian words (its first and its last
/// 2, 4 or 8 bytes, straight from the key: no copy) and looked up in [`KEY_TABLE`] by a hash of its
/// length and words: one comparison of length and words with the name in its slot.
pub(crate) fn key_of(name: &str) -> Key {
    key_of_bytes(name.as_bytes())
}

/// [`key_of`] for the bytes of a key.
pub(super) fn key_of_bytes(b: &[u8]) -> Key {
    let (head, tail) = match b.len() {
        2..=3 => (
            u64::from(le16(b, 0)) | 0x2020,
            u64::from(le16(b, b.len() - 2)) | 0x2020,
        ),
        4..=7 => (
            u64::from(le32(b, 0)) | 0x2020_2020,
            u64::from(le32(b, b.len() - 4)) | 0x2020_2020,
        ),
        8..=16 => (le64(b, 0) | LOWER64, le64(b, b.len() - 8) | LOWER64),
        17 if b.eq_ignore_ascii_case(b"keepaliveinterval") => return Key::Period,
        _ => return Key::Other,
    };
    let (len, h, t, key) = KEY_TABLE[key_slot(b.len(), head, tail)];
    if len == b.len() && h == head && t == tail {
        key
    } else {
        Key::Other
    }
}

/// The slot of a key in [`KEY_TABLE`]: a multiplicative hash of its length and words, chosen so that the
/// 38 names of 2 to 16 bytes fall in 38 different slots of 128 (checked when the table is built).
const fn key_slot(len: usize, head: u64, tail: u64) -> usize {
    const K: u64 = 0x61f9_6da9_9f65_4229;
    ((head ^ tail.rotate_left(7) ^ len as u64).wrapping_mul(K) >> 57) as usize
}

/// `(len, head, tail, key)` of each name of 2 to 16 bytes, at its [`key_slot`]; `len` 0 marks a free
/// slot.
const KEY_TABLE: [(usize, u64, u64, Key); 128] = {
    const NAMES: [(&[u8], Key); 38] = [
        (b"sn", Key::Serial),
        (b"ip", Key::Ip),
        (b"mac", Key::Mac),
        (b"code", Key::Code),
        (b"data", Key::Data),
        (b"time", Key::Time(1)),
        (b"ddns", Key::Domain),
        (b"index", Key::Index),
        (b"event", Key::XmEvent),
        (b"action", Key::Action),
        (b"method", Key::Method),
        (b"params", Key::Params),
        (b"result", Key::Result),
        (b"status", Key::Status),
        (b"serial", Key::Serial),
        (b"ipaddr", Key::Ip),
        (b"domain", Key::Domain),
        (b"channel", Key::Channel),
        (b"macaddr", Key::Mac),
        (b"address", Key::Address),
        (b"timeout", Key::Period),
        (b"serialno", Key::Serial),
        (b"serialid", Key::Serial),
        (b"devicesn", Key::Serial),
        (b"eventlist", Key::EventList),
        (b"starttime", Key::Time(2)),
        (b"localtime", Key::Time(3)),
        (b"ipaddress", Key::Ip),
        (b"keepalive", Key::Period),
        (b"localetime", Key::Time(0)),
        (b"macaddress", Key::Mac),
        (b"domainname", Key::Domain),
        (b"nkeepalive", Key::Period),
        (b"serialnumber", Key::Serial),
        (b"deviceserial", Key::Serial),
        (b"aliveinterval", Key::Period),
        (b"keepalivetime", Key::Period),
        (b"keepaliveperiod", Key::Period),
    ];
    let mut table = [(0, 0, 0, Key::Other); 128];
    let mut i = 0;
    while i < NAMES.len() {
        let (name, key) = NAMES[i];
        let (head, tail, key) = kw(name, key);
        let slot = key_slot(name.len(), head, tail);
        assert!(table[slot].0 == 0, "two names of key_of in one slot");
        table[slot] = (name.len(), head, tail, key);
        i += 1;
    }
    table
};

const LOWER64: u64 = 0x2020_2020_2020_2020;

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |w| u16::from_le_bytes([w[0], w[1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |w| {
        u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
    })
}

/// The first and last words of a name as [`key_of`] reads a key.
type Words = (u64, u64, Key);

/// `(head, tail, key)` of a lower-case name of 2 to 16 bytes, as [`key_of`] reads a key.
const fn kw(name: &[u8], key: Key) -> Words {
    let n = name.len();
    let w = if n >= 8 {
        8
    } else if n >= 4 {
        4
    } else {
        2
    };
    let (mut head, mut tail) = (0u64, 0u64);
    let mut i = 0;
    while i < w {
        head |= (name[i] as u64) << (8 * i);
        tail |= (name[n - w + i] as u64) << (8 * i);
        i += 1;
    }
    (head, tail, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys we read, lower-case, with their classification ([`key_of`] has them by length).
    const KEYS: [(&[u8], Key); 39] = [
        (b"method", Key::Method),
        (b"result", Key::Result),
        (b"params", Key::Params),
        (b"eventlist", Key::EventList),
        (b"code", Key::Code),
        (b"action", Key::Action),
        (b"index", Key::Index),
        (b"data", Key::Data),
        (b"localetime", Key::Time(0)),
        (b"time", Key::Time(1)),
        (b"starttime", Key::Time(2)),
        (b"localtime", Key::Time(3)),
        (b"event", Key::XmEvent),
        (b"status", Key::Status),
        (b"channel", Key::Channel),
        (b"serialno", Key::Serial),
        (b"serialnumber", Key::Serial),
        (b"serialid", Key::Serial),
        (b"serial", Key::Serial),
        (b"deviceserial", Key::Serial),
        (b"devicesn", Key::Serial),
        (b"sn", Key::Serial),
        (b"mac", Key::Mac),
        (b"macaddress", Key::Mac),
        (b"macaddr", Key::Mac),
        (b"ip", Key::Ip),
        (b"ipaddress", Key::Ip),
        (b"ipaddr", Key::Ip),
        (b"address", Key::Address),
        (b"domain", Key::Domain),
        (b"domainname", Key::Domain),
        (b"ddns", Key::Domain),
        // `KeepAlive` / `nKeepAlive`: the NetSDK heartbeat (0x4028) names its period so.
        (b"timeout", Key::Period),
        (b"keepaliveperiod", Key::Period),
        (b"keepaliveinterval", Key::Period),
        (b"aliveinterval", Key::Period),
        (b"keepalivetime", Key::Period),
        (b"keepalive", Key::Period),
        (b"nkeepalive", Key::Period),
    ];

    /// The table lookup against a plain case-insensitive search.
    fn reference(name: &str) -> Key {
        KEYS.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map_or(Key::Other, |&(_, key)| key)
    }

    #[test]
    fn key_of_ignores_case_and_only_matches_whole_keys() {
        for (name, key) in KEYS {
            let name = std::str::from_utf8(name).unwrap();
            assert_eq!(key_of(name), key, "{name}");
            assert_eq!(key_of(&name.to_ascii_uppercase()), key, "{name}");
            assert_eq!(key_of(&format!("{name}x")), Key::Other, "{name}x");
            assert_eq!(key_of(&format!("{name}\0")), Key::Other, "{name}\\0");
            assert_eq!(key_of(&name[1..]), reference(&name[1..]), "{name}");
        }
        for name in [
            "",
            "x",
            "SerialNumberTooLongForTable",
            "Séri",
            "ID",
            "Code ",
            "\0",
        ] {
            assert_eq!(key_of(name), reference(name), "{name:?}");
        }
        // Every ASCII byte in every position of every name (the `| 0x20` reading must not take a
        // non-letter for a letter).
        for (name, _) in KEYS {
            for at in 0..name.len() {
                for byte in 0..128u8 {
                    let mut key = name.to_vec();
                    key[at] = byte;
                    let key = String::from_utf8(key).unwrap();
                    assert_eq!(key_of(&key), reference(&key), "{key:?}");
                }
            }
        }
        assert_eq!(key_of("LocaleTime"), Key::Time(0));
        assert_eq!(key_of("nKeepAlive"), Key::Period);
    }
}
