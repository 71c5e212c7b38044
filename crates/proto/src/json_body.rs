//! Reading events, device identity and keep-alive periods out of JSON bodies, whatever the framing.
//!
//! The body is read in one pass that picks out the keys we know (ignoring ASCII case) and skips
//! everything else without building a tree; an event's `Data` is kept as its raw JSON text. A hand-written
//! strict reader ([`Strict`]) reads the common bodies; whatever it is not sure of is read by serde
//! visitors that build the same [`Object`]s, and whose reading (results and errors) is the reference.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{Action, DeviceInfo, Event, JsonText};
use crate::xm;

/// What a JSON body says.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct JsonFacts {
    pub(crate) events: Vec<Event>,
    /// A `method` is present (non-empty text).
    pub(crate) has_method: bool,
    /// The `method` ends in `keepalive` (any case).
    pub(crate) keepalive_method: bool,
    pub(crate) has_result: bool,
    pub(crate) keepalive_period: Option<u32>,
    /// An XM message whose `Type` is `"Log"` (the device's "Log" upload flag), not an alarm.
    pub(crate) xm_log: bool,
    /// Identity found anywhere in the body (first value of each field wins).
    pub(crate) device: DeviceInfo,
}

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

/// The keys we read, lower-case, with their classification ([`key_of`] has them by length).
#[cfg(test)]
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
fn key_of_bytes(b: &[u8]) -> Key {
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

/// An object key, borrowed from the input when it has no escapes, with its classification.
struct KeyName<'de>(Key, Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyName(key_of(v), Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyName(key_of(v), Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Any JSON value reduced to what we need from a scalar; objects and arrays are skipped.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    Int(i64),
    Other,
}

impl<'de> Scalar<'de> {
    fn int(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Other => None,
        }
    }

    /// Non-empty text, borrowed from the input when it has no escapes.
    fn text(self) -> Option<Cow<'de, str>> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::Other, Scalar::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(if v.is_finite() {
            Scalar::Int(v as i64)
        } else {
            Scalar::Other
        })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// The fields of one JSON object that we read. Objects nest: `params`, `eventList[]`.
#[derive(Default)]
struct Object<'de> {
    method: Option<Cow<'de, str>>,
    has_result: bool,
    params: Option<Box<Object<'de>>>,
    #[expect(clippy::vec_box)]
    // boxed: an `Object` is large and moves through serde's layers by value
    event_list: Option<Vec<Box<Object<'de>>>>,
    code: Option<Cow<'de, str>>,
    action: Option<Cow<'de, str>>,
    index: Option<i64>,
    /// The raw text of `Data`.
    data: Option<&'de str>,
    /// What [`data_found`] returns for `data`, when the strict reader found it already.
    data_read: Option<Option<Found<'de>>>,
    xm_event: Option<Cow<'de, str>>,
    status: Option<Cow<'de, str>>,
    channel: Option<i64>,
    /// Time and identity keys.
    found: Found<'de>,
    period: Option<u32>,
    /// Keys we do not read, with their raw values (the data of an XM event).
    others: Vec<(Cow<'de, str>, &'de str)>,
    /// The object's raw text when `others` was not listed while reading it (the strict reader):
    /// [`Object::list_others`] lists them from it.
    text: Option<&'de str>,
}

/// An object, or nothing when the value is of another type.
struct MaybeObject<'de>(Option<Box<Object<'de>>>);

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = MaybeObject<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut o = Box::<Object<'de>>::default();
        while let Some(KeyName(key, name)) = map.next_key::<KeyName<'de>>()? {
            match key {
                Key::Params => o.params = map.next_value::<MaybeObject<'de>>()?.0,
                Key::EventList => o.event_list = map.next_value::<MaybeList<'de>>()?.0,
                Key::Data => o.data = Some(map.next_value::<&'de RawValue>()?.get()),
                Key::Other => o
                    .others
                    .push((name, map.next_value::<&'de RawValue>()?.get())),
                Key::Result => {
                    map.next_value::<IgnoredAny>()?;
                    o.has_result = true;
                }
                _ => {
                    let value: Scalar<'de> = map.next_value()?;
                    o.set(key, value);
                }
            }
        }
        Ok(MaybeObject(Some(o)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeObject(None))
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
}

impl<'de> Deserialize<'de> for MaybeObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectVisitor)
    }
}

/// An array of objects (non-objects skipped), or nothing when the value is not an array.
#[expect(clippy::vec_box)] // see `Object::event_list`
struct MaybeList<'de>(Option<Vec<Box<Object<'de>>>>);

impl<'de> Deserialize<'de> for MaybeList<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = MaybeList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<MaybeObject<'de>>()? {
                    items.extend(item.0);
                }
                Ok(MaybeList(Some(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeList(None))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
        }
        d.deserialize_any(ListVisitor)
    }
}

/// The time and identity keys of an object: read in every object we read, and in an event's `Data`.
#[derive(Default)]
struct Found<'de> {
    /// The preferred device time key seen (lower rank wins) and its text.
    time: Option<(u8, Cow<'de, str>)>,
    device: DeviceInfo,
}

impl<'de> Found<'de> {
    /// Stores a time or identity value; the first value of each identity field wins.
    fn set(&mut self, key: Key, value: Scalar<'de>) {
        fn first(slot: &mut Option<String>, value: Option<Cow<'_, str>>) {
            if slot.is_none() {
                *slot = value.map(Cow::into_owned);
            }
        }
        match key {
            Key::Time(rank) if self.time.as_ref().is_none_or(|(r, _)| rank < *r) => {
                if let Some(text) = value.text() {
                    self.time = Some((rank, text));
                }
            }
            Key::Serial => first(&mut self.device.serial, value.text()),
            Key::Mac => first(&mut self.device.mac, value.text()),
            Key::Ip => first(&mut self.device.ip, value.text()),
            Key::Domain => first(&mut self.device.domain, value.text()),
            // XM writes its IPv4 as the hex of a little-endian u32; keep other spellings verbatim.
            Key::Address => {
                let text = value.text();
                let ip = text
                    .as_deref()
                    .and_then(xm::address_to_ipv4)
                    .map(|ip| Cow::Owned(ip.to_string()));
                first(&mut self.device.ip, ip.or(text));
            }
            _ => {}
        }
    }

    fn time(self) -> Option<String> {
        self.time.map(|(_, t)| t.into_owned())
    }
}

/// The time and identity keys of an event's `Data`, or nothing when it is not an object. Every other
/// value is skipped as [`Object`] would read it, without keeping anything.
struct DataFound<'de>(Option<Found<'de>>);

impl<'de> Deserialize<'de> for DataFound<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = DataFound<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = Found::default();
                while let Some(KeyName(key, _)) = map.next_key::<KeyName<'de>>()? {
                    match key {
                        Key::Params => drop(map.next_value::<MaybeObject<'de>>()?),
                        Key::EventList => drop(map.next_value::<MaybeList<'de>>()?),
                        Key::Data | Key::Other | Key::Result => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        _ => {
                            let value: Scalar<'de> = map.next_value()?;
                            found.set(key, value);
                        }
                    }
                }
                Ok(DataFound(Some(found)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(DataFound(None))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
        }
        d.deserialize_any(DataVisitor)
    }
}

/// The time and identity keys of an event's `Data` (its raw text, already accepted by the first reading),
/// exactly as a [`DataFound`] reading of it finds them: nothing when it is not an object or when that
/// reading fails. The common case is scanned by hand ([`scan_data`]); anything it is not sure of is read by
/// serde as before.
fn data_found(raw: &str) -> Option<Found<'_>> {
    match scan_data(raw) {
        Some(found) => found,
        None => serde_json::from_str::<DataFound<'_>>(raw).ok()?.0,
    }
}

/// The second reading of an event's `Data` without serde: `raw` is one JSON value that serde's first
/// reading accepted (as a `RawValue`), so the grammar needs no checking and skipping a value cannot fail.
/// What a [`DataFound`] reading could still reject (a key or a kept string with an escape, which may hold
/// a lone surrogate; a number that may overflow an `f64`; the keys of a nested object under a key it
/// reads, a `params`/`eventList` chain deeper than serde's recursion limit) makes it give up: `None`,
/// and the caller reads `raw` with serde. `Some(found)` is what that reading would have returned.
fn scan_data(raw: &str) -> Option<Option<Found<'_>>> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'{') {
        // An array or a scalar: no `Found` whether serde's reading of it succeeds or not.
        return Some(None);
    }
    let mut found = Found::default();
    let mut i = skip_ws(b, 1);
    if b.get(i) == Some(&b'}') {
        return Some(Some(found));
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key, after) = plain_string(raw, i)?;
        i = skip_ws(b, after);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        match key_of(key) {
            Key::Params | Key::EventList => return None,
            Key::Data | Key::Other | Key::Result => i = skip_value(b, i)?,
            key => {
                let value = match *b.get(i)? {
                    b'"' => {
                        let (text, after) = plain_string(raw, i)?;
                        i = after;
                        Scalar::Str(Cow::Borrowed(text))
                    }
                    b'-' | b'0'..=b'9' => {
                        let len = b[i..]
                            .iter()
                            .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'.'))
                            .unwrap_or(b.len() - i);
                        // No exponent and at most 17 characters: far below `f64::MAX`. Its value does not
                        // matter: `Found` keeps text only.
                        if len > 17 || matches!(b.get(i + len), Some(b'e' | b'E')) {
                            return None;
                        }
                        i += len;
                        Scalar::Other
                    }
                    b't' | b'n' => {
                        i += 4;
                        Scalar::Other
                    }
                    b'f' => {
                        i += 5;
                        Scalar::Other
                    }
                    _ => return None,
                };
                found.set(key, value);
            }
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(Some(found)),
            _ => return None,
        }
    }
}

/// The index in `rest` of the first byte that ends a run of plain string text: a quote, a backslash or
/// a control character (`< 0x20`). Eight bytes at a time: in each of the three tests below the lowest
/// flagged byte is always a true one (a false flag needs a borrow from a true one below it), so the lowest
/// flag of their union is the answer.
fn string_stop(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(&word) = rest.get(at..).and_then(|r| r.first_chunk::<8>()) {
        let v = u64::from_le_bytes(word);
        let quote = v ^ (ONES * u64::from(b'"'));
        let slash = v ^ (ONES * u64::from(b'\\'));
        let flags = ((quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (v.wrapping_sub(ONES * 0x20) & !v))
            & HIGH;
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    while let Some(&c) = rest.get(at) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// The index of the first byte at or after `i` that is not an ASCII digit. Eight bytes at a time, as in
/// [`string_stop`]: a byte below `'0'` is flagged by a borrow test, one above `'9'` by adding `0x46`
/// (which reaches bit 7 from `0x3A` on; bytes from `0x80` on have it already, and only those can carry
/// into the byte above), so the lowest flag is a true one.
fn digits_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(&word) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let v = u64::from_le_bytes(word);
        let below = v.wrapping_sub(ONES * u64::from(b'0')) & !v;
        let above = v.wrapping_add(ONES * 0x46) | v;
        let flags = (below | above) & HIGH;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The string starting with the quote at `i`, when it has no escape, and the index after its closing
/// quote; `None` for a string with an escape (or no end).
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let rest = text.as_bytes().get(i + 1..)?;
    let len = string_stop(rest)?;
    if rest[len] != b'"' {
        return None;
    }
    Some((text.get(i + 1..i + 1 + len)?, i + 2 + len))
}

/// The index after the (valid) JSON value starting at `i`; `None` when the text ends first.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    i += string_stop(b.get(i..)?)?;
                    match b[i] {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1, // a control character: the text was checked, cannot happen
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ if depth == 0 => {
                // A scalar: up to the next delimiter.
                let len = b[i..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(b.len() - i);
                return Some(i + len);
            }
            _ => {}
        }
        i += 1;
        if depth == 0 {
            return Some(i);
        }
    }
}

/// Event codes common enough to be kept as static text instead of an allocation per event (the code is
/// still the device's text, byte for byte).
const COMMON_CODES: [&str; 24] = [
    "VideoMotion",
    "VideoMotionInfo",
    "VideoLoss",
    "VideoBlind",
    "VideoAbnormalDetection",
    "AlarmLocal",
    "CrossLineDetection",
    "CrossRegionDetection",
    "SmartMotionHuman",
    "SmartMotionVehicle",
    "FaceDetection",
    "FaceRecognition",
    "LeftDetection",
    "TakenAwayDetection",
    "ParkingDetection",
    "WanderDetection",
    "AudioMutation",
    "StorageFailure",
    "StorageLowSpace",
    "StorageNotExist",
    "HumanDetect",
    "MotionDetect",
    "LossDetect",
    "KeepAlive",
];

/// The event code as `Event::code`: static for the common ones.
fn event_code(code: Cow<'_, str>) -> Cow<'static, str> {
    match COMMON_CODES.iter().find(|&&c| c == code) {
        Some(&c) => Cow::Borrowed(c),
        None => Cow::Owned(code.into_owned()),
    }
}

impl<'de> Object<'de> {
    /// Stores a scalar under its key; the first value of each identity field wins.
    fn set(&mut self, key: Key, value: Scalar<'de>) {
        match key {
            Key::Method => self.method = value.text(),
            Key::Code => self.code = value.text(),
            Key::XmEvent => self.xm_event = value.text(),
            Key::Action => self.action = value.text(),
            Key::Status => self.status = value.text(),
            Key::Index => self.index = value.int(),
            Key::Channel => self.channel = value.int(),
            Key::Period => {
                if self.period.is_none() {
                    self.period = value
                        .int()
                        .and_then(|p| u32::try_from(p).ok())
                        .filter(|p| *p > 0);
                }
            }
            Key::Time(_) | Key::Serial | Key::Mac | Key::Ip | Key::Domain | Key::Address => {
                self.found.set(key, value);
            }
            Key::Params | Key::EventList | Key::Data | Key::Result | Key::Other => {}
        }
    }

    /// Fills `others` when the reading left them in the object's text.
    fn list_others(&mut self) {
        if let Some(text) = self.text.take() {
            self.others = Strict::others_of(text).unwrap_or_default();
        }
    }

    /// The event this object describes: a Dahua `Code` object or an XM `Event` object.
    fn into_event(mut self: Box<Self>, device: &mut DeviceInfo) -> Option<Event> {
        if let Some(code) = self.code {
            // The event's own time keys first, else those inside its Data.
            let inner = match self.data_read {
                Some(read) => read,
                None => self.data.and_then(data_found),
            };
            merge(device, self.found.device);
            let mut time = self.found.time.map(|(_, t)| t.into_owned());
            if let Some(inner) = inner {
                merge(device, inner.device);
                time = time.or_else(|| inner.time.map(|(_, t)| t.into_owned()));
            }
            return Some(Event {
                code: event_code(code),
                action: self.action.as_deref().map_or(Action::Pulse, Action::parse),
                index: self.index,
                device_time: time.map(String::into_boxed_str),
                data: self.data.filter(|raw| *raw != "null").map(JsonText::new),
            });
        }
        let code = self.xm_event.take()?;
        self.list_others();
        let mut data = String::from("{");
        for (i, (key, raw)) in self.others.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            data.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_default());
            data.push(':');
            data.push_str(raw);
        }
        data.push('}');
        Some(Event {
            code: event_code(code),
            action: self.status.as_deref().map_or(Action::Pulse, Action::parse),
            index: self.channel,
            device_time: self.found.time().map(String::into_boxed_str),
            data: (!self.others.is_empty()).then(|| JsonText::new(&data)),
        })
    }
}

/// Fills the empty fields of `device` from `more`.
pub(crate) fn merge(device: &mut DeviceInfo, more: DeviceInfo) {
    device.serial = device.serial.take().or(more.serial);
    device.mac = device.mac.take().or(more.mac);
    device.ip = device.ip.take().or(more.ip);
    device.domain = device.domain.take().or(more.domain);
}

/// Reads what a JSON body (known to be UTF-8) says. `Err` when the text is not valid JSON.
pub(crate) fn json_facts(text: &str) -> Result<JsonFacts, serde_json::Error> {
    if let Some(top) = Strict::body(text) {
        return Ok(facts_of(MaybeObject(Some(top))));
    }
    let top = serde_json::from_str::<MaybeObject<'_>>(text)?;
    Ok(facts_of(top))
}

/// Reads the bare JSON object at the start of `window` in one pass: its length and what it says.
/// `None` when `window` does not start with one whole JSON object in valid UTF-8 (incomplete, invalid, or
/// not UTF-8): the caller then frames it by brace matching and the session reads it as before.
pub(crate) fn bare_object(window: &[u8]) -> Option<(usize, JsonFacts)> {
    match Strict::object_at_start(window) {
        Ok((len, top)) => return Some((len, facts_of(MaybeObject(Some(top))))),
        // Cut by the end of the window: serde would not find its end either.
        Err(true) => return None,
        Err(false) => {}
    }
    let mut stream = serde_json::Deserializer::from_slice(window).into_iter::<MaybeObject<'_>>();
    let top = stream.next()?.ok()?;
    let len = stream.byte_offset();
    std::str::from_utf8(window.get(..len)?).ok()?;
    Some((len, facts_of(top)))
}

/// A reader of the common JSON body that does serde's work without serde: it reads the same
/// [`Object`]s that the serde visitors build, from the same text, but accepts only a part of what serde
/// accepts and gives up (`None`) on anything else, and the caller then reads the text with serde as
/// before. So a text it reads is one that serde reads the same way (same facts), and every text serde
/// rejects, or might read differently, goes to serde (same errors).
///
/// It gives up on: an escape in a key or in a string it keeps (serde may reject a lone surrogate there,
/// or decode it), a number it would keep that is not a plain integer of at most 18 digits (serde may
/// reject an overflowing float), nesting deeper than [`Strict::MAX_DEPTH`] (serde's recursion limit),
/// anything the JSON grammar does not allow (a bad escape, a control character in a string, a trailing
/// comma, a leading zero, a cut text), and a top-level value that is not an object.
struct Strict<'de> {
    b: &'de [u8],
    /// Values are skipped at most this deep.
    skip_cap: usize,
    /// Set when a reading needed bytes past the end of `b`.
    ran_out: bool,
    /// The longest prefix of `b` known to be UTF-8 (all of it when the input is text), as text. A
    /// window of bytes is checked ahead as far as needed, doubling, so that each byte is checked at most
    /// about twice.
    valid: &'de str,
    /// `b` holds a byte sequence that is not UTF-8 right after `valid`: `valid` cannot grow, and no
    /// text reaches past it (checked once: not again for each text asked for later).
    not_utf8: bool,
    i: usize,
}

impl<'de> Strict<'de> {
    /// Objects nest at most this deep (serde's limit is 128), values skipped whole at most twice that.
    const MAX_DEPTH: usize = 32;

    /// A whole body: one object, then only whitespace.
    fn body(text: &'de str) -> Option<Box<Object<'de>>> {
        let mut r = Strict {
            b: text.as_bytes(),
            ran_out: false,
            valid: text,
            not_utf8: false,
            i: 0,
            skip_cap: 2 * Self::MAX_DEPTH,
        };
        let top = r.top()?;
        r.ws();
        (r.i == text.len()).then_some(top)
    }

    /// The object at `b[0]` (what a stream reading of `b` reads first) and the index after it, when all
    /// its bytes are UTF-8. `Err(true)` when `b` ends inside it (before anything that made the reader
    /// give up): no reading of `b` can find its end then.
    fn object_at_start(b: &'de [u8]) -> Result<(usize, Box<Object<'de>>), bool> {
        let mut r = Strict {
            b,
            ran_out: false,
            valid: "",
            not_utf8: false,
            i: 0,
            skip_cap: 2 * Self::MAX_DEPTH,
        };
        match r.top().and_then(|top| Some((r.span(0, r.i)?.len(), top))) {
            Some(read) => Ok(read),
            None => Err(r.ran_out),
        }
    }

    fn top(&mut self) -> Option<Box<Object<'de>>> {
        if self.peek()? != b'{' {
            return None;
        }
        self.object(1)
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let next = self.b.get(self.i).copied();
        self.ran_out |= next.is_none();
        next
    }

    /// `b[from..to]`, noting when the input ends first.
    #[inline]
    fn bytes(&mut self, from: usize, to: usize) -> Option<&'de [u8]> {
        let bytes = self.b.get(from..to);
        self.ran_out |= bytes.is_none();
        bytes
    }

    /// Where the string text starting at `from` stops (see [`string_stop`]), noting when the input
    /// ends first.
    #[inline]
    fn stop(&mut self, from: usize) -> Option<usize> {
        let stop = self.b.get(from..).and_then(string_stop);
        self.ran_out |= stop.is_none();
        stop
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The text of the string at the quote at `i`, which must have no escape (and no control character).
    #[inline]
    fn plain_str(&mut self) -> Option<&'de str> {
        let start = self.i + 1;
        let len = self.plain_bytes()?.len();
        self.span(start, start + len)
    }

    /// The bytes of the string at the quote at `i`, which must have no escape (and no control
    /// character); not checked as UTF-8 (a reading of a window checks all its bytes in the end).
    #[inline]
    fn plain_bytes(&mut self) -> Option<&'de [u8]> {
        let start = self.i + 1;
        let len = self.stop(start)?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        self.b.get(start..start + len)
    }

    /// Skips the string at the quote at `i`, checking its escapes as serde does.
    fn skip_str(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            self.i += self.stop(self.i)?;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => match self.bytes(self.i + 1, self.i + 2)?[0] {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                    b'u' => {
                        let hex = self.bytes(self.i + 2, self.i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 6;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// Skips a number (JSON grammar); says whether it was a plain integer.
    fn skip_number(&mut self) -> Option<bool> {
        let b = self.b;
        let mut i = self.i;
        let digits = |i: &mut usize| {
            let start = *i;
            *i = digits_end(b, *i);
            *i - start
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            next => {
                self.ran_out |= next.is_none();
                return None;
            }
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                self.ran_out |= i == b.len();
                return None;
            }
            integer = false;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.ran_out |= i == b.len();
                return None;
            }
            integer = false;
        }
        self.i = i;
        Some(integer)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes(self.i, self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// Skips any value, as serde's `IgnoredAny` and `RawValue` do (no depth limit there; here one).
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_str(),
            b'{' => self.entries(b'}', depth, |r, depth| {
                if r.peek()? != b'"' {
                    return None;
                }
                r.skip_str()?;
                r.ws();
                r.eat(b':')?;
                r.ws();
                r.skip_value(depth)
            }),
            b'[' => self.entries(b']', depth, |r, depth| r.skip_value(depth)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number().map(drop),
            _ => None,
        }
    }

    /// The comma-separated entries of the object or array opening at `i`, up to `close`.
    fn entries(
        &mut self,
        close: u8,
        depth: usize,
        mut entry: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if depth >= self.skip_cap {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            entry(self, depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The raw text of the value at `i`, skipped.
    fn raw(&mut self) -> Option<&'de str> {
        let start = self.i;
        self.skip_value(0)?;
        self.span(start, self.i)
    }

    /// `b[from..to]` as text (`None` when it is not UTF-8).
    #[inline]
    fn span(&mut self, from: usize, to: usize) -> Option<&'de str> {
        if to > self.valid.len() && !self.not_utf8 {
            let ahead = to.max(2 * self.valid.len()).max(256).min(self.b.len());
            #[cfg(test)]
            tests::UTF8_CHECKED.with(|c| c.set(c.get() + ahead));
            self.valid = match std::str::from_utf8(self.b.get(..ahead)?) {
                Ok(text) => text,
                Err(e) => {
                    // An invalid sequence (not one cut by the end of `ahead`): no later check gets past it.
                    self.not_utf8 = e.error_len().is_some();
                    std::str::from_utf8(&self.b[..e.valid_up_to()]).ok()?
                }
            };
        }
        self.valid.get(from..to)
    }

    /// A string at `i` with no escape: its text; with an escape: skipped (checked), `Some(None)`.
    fn key_str(&mut self) -> Option<Option<&'de str>> {
        let at = self.i;
        if let Some(text) = self.plain_str() {
            return Some(Some(text));
        }
        self.i = at;
        self.skip_str()?;
        Some(None)
    }

    /// [`Strict::key_str`] for bytes.
    fn key_bytes(&mut self) -> Option<Option<&'de [u8]>> {
        let at = self.i;
        if let Some(bytes) = self.plain_bytes() {
            return Some(Some(bytes));
        }
        self.i = at;
        self.skip_str()?;
        Some(None)
    }

    /// An event's `Data` object, checked and skipped like [`Strict::raw`], and read at the same time as
    /// [`data_found`] reads it: `Some(found)` when sure (see [`scan_data`] for when it is not), `None`
    /// when `data_found` must read the raw text again. The outer `None`: not valid (give up).
    fn data_object(&mut self) -> Option<Option<Found<'de>>> {
        let mut found = Some(Found::default());
        self.entries(b'}', 0, |r, depth| {
            if r.peek()? != b'"' {
                return None;
            }
            let name = r.key_bytes()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            let key = match name {
                Some(name) => key_of_bytes(name),
                None => {
                    // An escape in a key: serde's reading may reject or decode it.
                    found = None;
                    Key::Other
                }
            };
            match key {
                Key::Data | Key::Other | Key::Result => r.skip_value(depth),
                Key::Params | Key::EventList => {
                    found = None;
                    r.skip_value(depth)
                }
                key => match r.peek()? {
                    b'"' => {
                        match r.key_str()? {
                            Some(text) => {
                                if let Some(found) = &mut found {
                                    found.set(key, Scalar::Str(Cow::Borrowed(text)));
                                }
                            }
                            None => found = None,
                        }
                        Some(())
                    }
                    b'-' | b'0'..=b'9' => {
                        // Its value does not matter (`Found` keeps text only); whether serde's float
                        // reading of it could fail does.
                        let start = r.i;
                        r.skip_number()?;
                        let number = r.b.get(start..r.i)?;
                        if number.len() > 17 || number.iter().any(|&c| c | 0x20 == b'e') {
                            found = None;
                        }
                        Some(())
                    }
                    b'{' | b'[' => {
                        found = None;
                        r.skip_value(depth)
                    }
                    _ => r.skip_value(depth),
                },
            }
        })?;
        Some(found)
    }

    /// A value as [`Scalar`] reads it.
    fn scalar(&mut self) -> Option<Scalar<'de>> {
        Some(match self.peek()? {
            b'"' => Scalar::Str(Cow::Borrowed(self.plain_str()?)),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                if !self.skip_number()? || self.i - start > 18 {
                    return None;
                }
                let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                Scalar::Int(text.parse().ok()?)
            }
            b'{' => {
                // serde reads the keys (as strings) and skips the values.
                self.entries(b'}', 0, |r, depth| {
                    if r.peek()? != b'"' {
                        return None;
                    }
                    r.plain_str()?;
                    r.ws();
                    r.eat(b':')?;
                    r.ws();
                    r.skip_value(depth)
                })?;
                Scalar::Other
            }
            _ => {
                self.skip_value(0)?;
                Scalar::Other
            }
        })
    }

    /// A value as [`MaybeObject`] reads it.
    fn maybe_object(&mut self, depth: usize) -> Option<Option<Box<Object<'de>>>> {
        match self.peek()? {
            b'{' => self.object(depth + 1).map(Some),
            b'[' => self.skip_value(0).map(|()| None),
            _ => self.scalar().map(|_| None),
        }
    }

    /// A value as [`MaybeList`] reads it.
    fn maybe_list(&mut self, depth: usize) -> Option<Option<Vec<Box<Object<'de>>>>> {
        match self.peek()? {
            b'[' => {
                if depth + 1 > Self::MAX_DEPTH {
                    return None;
                }
                let mut items = Vec::new();
                self.entries(b']', 0, |r, _| {
                    items.extend(r.maybe_object(depth + 1)?);
                    Some(())
                })?;
                Some(Some(items))
            }
            // an object's keys are read as strings, its values skipped: as `scalar` does
            _ => self.scalar().map(|_| None),
        }
    }

    /// The object opening at `i`, at nesting `depth`, as [`ObjectVisitor`] reads it.
    fn object(&mut self, depth: usize) -> Option<Box<Object<'de>>> {
        if depth > Self::MAX_DEPTH {
            return None;
        }
        let mut o = Box::<Object<'de>>::default();
        let start = self.i;
        let mut others = false;
        self.entries(b'}', 0, |r, _| {
            if r.peek()? != b'"' {
                return None;
            }
            let name_at = r.i + 1;
            let name = r.plain_bytes()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            match key_of_bytes(name) {
                Key::Params => o.params = r.maybe_object(depth)?,
                Key::EventList => o.event_list = r.maybe_list(depth)?,
                Key::Data => {
                    let start = r.i;
                    o.data_read = if r.peek()? == b'{' {
                        r.data_object()?.map(Some)
                    } else {
                        r.skip_value(0)?;
                        Some(None)
                    };
                    o.data = Some(r.span(start, r.i)?);
                }
                // The top level is where XM objects are: listed now. Below, an XM object is rare and the
                // values are listed again from the object's text only if they are needed.
                Key::Other if depth == 1 => {
                    let name = r.span(name_at, name_at + name.len())?;
                    o.others.push((Cow::Borrowed(name), r.raw()?));
                }
                Key::Other => {
                    r.skip_value(0)?;
                    others = true;
                }
                Key::Result => {
                    r.skip_value(0)?;
                    o.has_result = true;
                }
                key => {
                    let value = r.scalar()?;
                    o.set(key, value);
                }
            }
            Some(())
        })?;
        if others {
            o.text = Some(self.span(start, self.i)?);
        }
        Some(o)
    }

    /// The keys of a (valid) object that [`Object`] keeps in `others`, with their raw values, in order,
    /// as [`Strict::object`] would have listed them.
    fn others_of(text: &'de str) -> Option<Vec<(Cow<'de, str>, &'de str)>> {
        let mut r = Strict {
            b: text.as_bytes(),
            ran_out: false,
            valid: text,
            not_utf8: false,
            i: 0,
            // The object was read nested at most `MAX_DEPTH` deep, with values skipped at most twice
            // that below any level: all of it is skipped here.
            skip_cap: 4 * Self::MAX_DEPTH,
        };
        let mut others = Vec::new();
        r.peek()?;
        r.entries(b'}', 0, |r, _| {
            if r.peek()? != b'"' {
                return None;
            }
            let name = r.plain_str()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            if key_of(name) == Key::Other {
                others.push((Cow::Borrowed(name), r.raw()?));
                Some(())
            } else {
                r.skip_value(0)
            }
        })?;
        Some(others)
    }
}

/// What a parsed body says. `found` collects the identity of every level; `JsonFacts::device` has it.
fn facts_of(MaybeObject(top): MaybeObject<'_>) -> JsonFacts {
    let Some(mut top) = top else {
        return JsonFacts::default();
    };
    let mut found = std::mem::take(&mut top.found.device);
    let mut params = top.params.take();
    if let Some(params) = params.as_deref_mut() {
        merge(&mut found, std::mem::take(&mut params.found.device));
    }
    let keepalive_period = top.period.or(params.as_ref().and_then(|p| p.period));
    let method = top.method.take();
    let keepalive_method = method.as_deref().is_some_and(|m| {
        m.len() >= 9 && m.as_bytes()[m.len() - 9..].eq_ignore_ascii_case(b"keepalive")
    });
    let has_result = top.has_result;
    if top.xm_event.is_some() {
        top.list_others();
    }
    let xm_log = top.xm_event.is_some()
        && top.others.iter().any(|(key, raw)| {
            key.eq_ignore_ascii_case("type") && raw.eq_ignore_ascii_case("\"log\"")
        });
    // Events: params.eventList[], a top-level eventList, a Code/Event object at the top or in params.
    let list = params
        .as_deref_mut()
        .and_then(|p| p.event_list.take())
        .or_else(|| top.event_list.take());
    let events: Vec<Event> = match list {
        Some(list) => list
            .into_iter()
            .filter_map(|o| o.into_event(&mut found))
            .collect(),
        None if top.code.is_some() || top.xm_event.is_some() => {
            top.into_event(&mut found).into_iter().collect()
        }
        None => params
            .filter(|p| p.code.is_some() || p.xm_event.is_some())
            .and_then(|p| p.into_event(&mut found))
            .into_iter()
            .collect(),
    };
    JsonFacts {
        events,
        has_method: method.is_some(),
        keepalive_method,
        has_result,
        keepalive_period,
        xm_log,
        device: found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Bytes [`Strict::span`] has checked as UTF-8 on this thread.
        pub(super) static UTF8_CHECKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A byte that is not UTF-8 early in a window, then many strings whose text the reader keeps: the
    /// reader reads on past the first (an event's `Data` is checked, its time and identity strings
    /// kept when they are text), and the prefix known to be UTF-8 cannot grow past the bad byte, so
    /// every later string must not check the window again from its start (quadratic in the window).
    #[test]
    fn a_window_with_a_byte_that_is_not_utf8_is_checked_once() {
        for bad in [&b"\"k\xff\":1"[..], b"\"Other\":\"\xff\""] {
            let mut window = br#"{"Code":"x","Data":{"#.to_vec();
            window.extend_from_slice(bad);
            for _ in 0..5000 {
                window.extend_from_slice(br#","Time":"t""#);
            }
            window.extend_from_slice(b"}}");
            UTF8_CHECKED.with(|c| c.set(0));
            assert_eq!(bare_object(&window), serde_bare(&window));
            assert_eq!(bare_object(&window), None);
            let checked = UTF8_CHECKED.with(std::cell::Cell::get);
            assert!(
                checked <= 4 * window.len(),
                "{checked} bytes checked for a window of {}",
                window.len()
            );
        }
    }

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

    /// What a reading of `Data` found, comparable.
    fn seen(found: Option<Found<'_>>) -> Option<(Option<(u8, String)>, DeviceInfo)> {
        found.map(|f| (f.time.map(|(r, t)| (r, t.into_owned())), f.device))
    }

    /// The scanner agrees with serde's reading whenever it does not hand over to it.
    fn check_scan(raw: &str) {
        if serde_json::from_str::<&RawValue>(raw).is_err() {
            return; // the first reading would have rejected the body
        }
        let serde = serde_json::from_str::<DataFound<'_>>(raw)
            .ok()
            .and_then(|d| d.0);
        if let Some(scanned) = scan_data(raw) {
            assert_eq!(seen(scanned), seen(serde), "{raw}");
        }
        assert_eq!(
            seen(data_found(raw)),
            seen(
                serde_json::from_str::<DataFound<'_>>(raw)
                    .ok()
                    .and_then(|d| d.0)
            ),
            "{raw}"
        );
    }

    #[test]
    fn data_scan_matches_serde_on_edge_cases() {
        let deep = format!(
            r#"{{"LocaleTime":"t",{}"x":1{}}}"#,
            r#""params":{"#.repeat(200),
            "}".repeat(200)
        );
        let shallow = format!(
            r#"{{"LocaleTime":"t",{}"x":1{}}}"#,
            r#""params":{"#.repeat(5),
            "}".repeat(5)
        );
        for raw in [
            r#"{"LocaleTime":"2024-05-01 10:00:00","Name":"IVS-1"}"#,
            r#"{ "Time" : "a" , "LocaleTime" : "b" , "StartTime":"c" }"#,
            r#"{"SerialNo":"S1","serial":"S2","MAC":"m","IP":"1.2.3.4","Domain":"d"}"#,
            r#"{"Address":"0x0A01A8C0"}"#,
            r#"{"Address":"host"}"#,
            r#"{"Time":""}"#,
            r#"{"Time":1,"SerialNo":true,"Mac":null,"IP":false}"#,
            r#"{"Time":"a\"b"}"#,
            r#"{"Time":"\ud800"}"#,
            r#"{"\ud800":1,"Time":"a"}"#,
            r#"{"\u0054ime":"a"}"#,
            r#"{"Index":1e999,"Time":"a"}"#,
            r#"{"Index":-1.5E3,"Time":"a"}"#,
            r#"{"Index":123456789012345678901234567890,"Time":"a"}"#,
            r#"{"Index":1234567890123456,"Time":"a"}"#,
            r#"{"Time":{"\ud800":1}}"#,
            r#"{"Time":{"a":1},"Serial":"s"}"#,
            r#"{"Time":[1,{"\ud800":1}],"Serial":"s"}"#,
            r#"{"Other":{"\ud800":[1,"}",{"x":"\\"}]},"Time":"a"}"#,
            r#"{"Data":{"Time":"inner"},"Result":[1e999],"Time":"a"}"#,
            r#"{"Other":"x\\","Time":"a"}"#,
            r#"{"EventList":[{"Code":"x"}],"Time":"a"}"#,
            r#"{"params":{"Index":1e999},"Time":"a"}"#,
            r#"{}"#,
            r#"{ }"#,
            r#"[{"Time":"a"}]"#,
            r#""\ud800""#,
            r#"1e999"#,
            r#"null"#,
            &deep,
            &shallow,
        ] {
            check_scan(raw);
        }
        // A `params` chain past serde's recursion limit: the reading fails, nothing is taken.
        assert!(data_found(&deep).is_none());
        assert!(data_found(&shallow).is_some());
        // The common case is read by the scanner.
        assert!(scan_data(r#"{"LocaleTime":"t","Object":{"Action":"x"},"PTS":1.5}"#).is_some());
    }

    proptest::proptest! {
        #[test]
        fn data_scan_matches_serde(
            entries in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "LocaleTime", "time", "StartTime", "localtime", "SerialNo", "sn", "mac", "IP",
                        "Address", "domain", "params", "eventList", "Data", "Result", "Other", "Code",
                        "Index", "Channel", "KeepAlive", r"\u0054ime", r"\ud800", r"a\\b",
                    ]),
                    proptest::sample::select(vec![
                        r#""a""#, r#""2024-01-01 10:00:00""#, r#""""#, r#""\ud800""#, r#""x\"y""#,
                        r#""0x0A01A8C0""#, "1", "-1.5", "0", "1e999", "1E5", "-0.0e-5",
                        "123456789012345678901234567890", "12345678901234567", "true", "null",
                        "false", "{}", "[]", r#"{"\ud800":1}"#, r#"[1,{"a":"\ud800"}]"#,
                        r#"{"params":{"params":{"Index":1e999}}}"#, r#"[{"Code":"c","Time":"x"}]"#,
                        r#"{"a":[{"b":"}]"}],"c":"\\"}"#,
                    ]),
                    proptest::sample::select(vec!["", " ", "\n\t ", "\r"]),
                ),
                0..8,
            )
        ) {
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                .collect();
            check_scan(&format!("{{{}}}", body.join(",")));
        }
    }

    /// What serde's reading of a whole body says.
    fn serde_body(text: &str) -> Result<JsonFacts, String> {
        serde_json::from_str::<MaybeObject<'_>>(text)
            .map(facts_of)
            .map_err(|e| e.to_string())
    }

    /// What serde's stream reading of a window's first object says.
    fn serde_bare(window: &[u8]) -> Option<(usize, JsonFacts)> {
        let mut stream =
            serde_json::Deserializer::from_slice(window).into_iter::<MaybeObject<'_>>();
        let top = stream.next()?.ok()?;
        let len = stream.byte_offset();
        std::str::from_utf8(window.get(..len)?).ok()?;
        Some((len, facts_of(top)))
    }

    /// The strict reader reads only what serde reads, and reads it the same way.
    fn check_strict(bytes: &[u8]) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Some(top) = Strict::body(text) {
                assert_eq!(
                    Ok(facts_of(MaybeObject(Some(top)))),
                    serde_body(text),
                    "{text}"
                );
            }
            assert_eq!(
                json_facts(text).map_err(|e| e.to_string()),
                serde_body(text),
                "{text}"
            );
        }
        assert_eq!(
            bare_object(bytes),
            serde_bare(bytes),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }

    /// A JSON value built from the keys and values that matter to the reading.
    fn json_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = proptest::sample::select(vec![
            r#""Start""#,
            r#""VideoMotion""#,
            r#""""#,
            r#""a\"b""#,
            r#""\ud800""#,
            r#""\u00e9""#,
            r#""0x0A01A8C0""#,
            r#""2024-05-01 10:00:00""#,
            r#"" 7 ""#,
            "0",
            "-0",
            "1",
            "-1",
            "7.5",
            "1e999",
            "-1E-5",
            "123456789012345678",
            "1234567890123456789",
            "99999999999999999999",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            r#""é""#,
        ])
        .prop_map(str::to_owned);
        leaf.prop_recursive(5, 48, 6, |inner| {
            let key = proptest::sample::select(vec![
                "method",
                "Method",
                "result",
                "params",
                "PARAMS",
                "eventList",
                "Code",
                "Action",
                "Index",
                "Data",
                "LocaleTime",
                "Time",
                "StartTime",
                "Event",
                "Status",
                "Channel",
                "SerialNo",
                "mac",
                "IP",
                "Address",
                "Domain",
                "KeepAlive",
                "Type",
                "id",
                "x",
                r"Co\u0064e",
                r"\ud800",
                "",
            ]);
            let ws = proptest::sample::select(vec!["", " ", "\n\t", "\r "]);
            prop_oneof![
                proptest::collection::vec((key, ws, inner.clone()), 0..6).prop_map(|entries| {
                    let body: Vec<String> = entries
                        .iter()
                        .map(|(k, ws, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                        .collect();
                    format!("{{{}}}", body.join(","))
                }),
                proptest::collection::vec(inner, 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
            ]
        })
    }

    /// An event notification (DHIP style or XM style) whose objects carry extra entries.
    fn event_body() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let extra = || {
            proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "Code",
                        "code",
                        "Action",
                        "Index",
                        "Data",
                        "LocaleTime",
                        "Time",
                        "SerialNo",
                        "mac",
                        "Address",
                        "Status",
                        "Channel",
                        "Type",
                        "Name",
                        "id",
                        "session",
                        "KeepAlive",
                        "result",
                    ]),
                    json_value(),
                ),
                0..4,
            )
            .prop_map(|entries| {
                entries
                    .iter()
                    .map(|(k, v)| format!(",\"{k}\":{v}"))
                    .collect::<String>()
            })
        };
        prop_oneof![
            (extra(), extra(), extra(), json_value()).prop_map(|(top, params, event, data)| {
                format!(
                    r#"{{"method":"client.notifyEventStream"{top},"params":{{"SID":1{params},"eventList":[{{"Code":"VideoMotion","Action":"Start","Index":0,"Data":{data}{event}}}]}}}}"#
                )
            }),
            (extra(), json_value()).prop_map(|(more, v)| {
                format!(r#"{{"Event":"HumanDetect","Status":"Start","Channel":1,"X":{v}{more}}}"#)
            }),
        ]
    }

    proptest::proptest! {
        #[test]
        fn string_stop_finds_the_first_quote_backslash_or_control_byte(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b' ', b'"', b'\\', 0x1F, 0x20, 0x7F, 0x80, 0xFF, 0, b'!', b'#', b'[', b']']),
                0..40,
            ),
            plain in 0usize..40,
        ) {
            // Mostly plain text first, so that the stop falls in every position of a word.
            let text: Vec<u8> = std::iter::repeat_n(b'x', plain).chain(bytes).collect();
            let naive = text.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            proptest::prop_assert_eq!(string_stop(&text), naive);
        }

        #[test]
        fn digits_end_finds_the_first_byte_that_is_not_a_digit(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'0', b'9', b'/', b':', b'.', b'e', 0x7F, 0x80, 0xB9, 0xBA, 0xFF, 0, b'-']),
                0..20,
            ),
            digits in 0usize..30,
            from in 0usize..4,
        ) {
            let text: Vec<u8> = (0..digits).map(|d| b'0' + (d % 10) as u8).chain(bytes).collect();
            let from = from.min(text.len());
            let naive = text[from..].iter().position(|c| !c.is_ascii_digit()).map_or(text.len(), |p| from + p);
            proptest::prop_assert_eq!(digits_end(&text, from), naive);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn strict_reading_of_events_matches_serde(
            value in event_body(),
            edits in proptest::collection::vec((0usize..1000, 0u8..=255, 0u8..3), 0..3),
            cuts in proptest::collection::vec(0usize..1000, 3),
        ) {
            let mut bytes = value.into_bytes();
            check_strict(&bytes);
            // Cut by the end of a read.
            for cut in cuts {
                check_strict(&bytes[..cut % (bytes.len() + 1)]);
            }
            for (at, byte, op) in edits {
                let at = at % (bytes.len() + 1);
                match op {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => { bytes.remove(at); }
                    _ if at < bytes.len() => bytes[at] = byte,
                    _ => {}
                }
            }
            check_strict(&bytes);
        }

        #[test]
        fn strict_reading_matches_serde(
            value in json_value(),
            edits in proptest::collection::vec((0usize..1000, 0u8..=255, 0u8..3), 0..3),
            tail in proptest::sample::select(vec!["", " ", "\n{\"a\":1}", "x", "\0"]),
        ) {
            let mut bytes = format!("{value}{tail}").into_bytes();
            check_strict(&bytes);
            for (at, byte, op) in edits {
                let at = at % (bytes.len() + 1);
                match op {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => { bytes.remove(at); }
                    _ if at < bytes.len() => bytes[at] = byte,
                    _ => {}
                }
            }
            check_strict(&bytes);
        }
    }

    /// Every reader of a body, on any bytes: none may panic (debug builds check overflow) or fail to
    /// end. The scanners that expect text serde has accepted (`scan_data`, `skip_value`,
    /// `plain_string`, `Strict::others_of`) are fed anything too: they must be safe, if not right.
    fn read_every_way(bytes: &[u8]) {
        let _ = bare_object(bytes);
        let _ = key_of_bytes(bytes);
        let _ = string_stop(bytes);
        for i in 0..=bytes.len() + 1 {
            let _ = skip_value(bytes, i);
            let _ = digits_end(bytes, i);
            let _ = skip_ws(bytes, i);
        }
        if let Ok(text) = std::str::from_utf8(bytes) {
            let _ = json_facts(text);
            let _ = Strict::body(text);
            let _ = scan_data(text);
            let _ = data_found(text);
            let _ = Strict::others_of(text);
            for i in 0..=text.len() + 1 {
                let _ = plain_string(text, i);
            }
        }
        // Through the decoder and the session, in every framing that carries JSON.
        let text = String::from_utf8_lossy(bytes);
        let mut alarm_tail = [0u8; 24];
        alarm_tail[crate::dvrip::BODY_FORMAT_AT - 8] = 2;
        for stream in [
            bytes.to_vec(),
            crate::encode::dvrip_json(1, 2, &text),
            crate::encode::dvrip_frame(crate::dvrip::CMD_ALARM, 0, alarm_tail, bytes),
            crate::encode::dhip(1, 2, &text),
            crate::encode::xm(1508, 1, 2, &text),
            crate::encode::http_request("POST", "/", &[], bytes),
        ] {
            let mut decoder = crate::Decoder::default();
            let mut frames: Vec<_> = decoder.feed(&stream).collect();
            frames.extend(decoder.finish());
            let mut session = crate::Session::new();
            for frame in &frames {
                let _ = session.decode(frame);
            }
        }
    }

    /// A body to break: a generated one, deep nesting of each kind the readers count (closed or not),
    /// or bytes from the JSON alphabet and beyond.
    fn hostile_body() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let deep = (
            proptest::sample::select(vec![
                r#"{"params":"#,
                r#"{"eventList":["#,
                "[",
                r#"{"Data":"#,
                r#"{"x":"#,
                r#"{"Code":"c","Data":{"Time":"#,
                r#"{"Event":"E","Z":"#,
            ]),
            0usize..300,
            any::<bool>(),
        )
            .prop_map(|(open, n, close)| {
                let mut text = open.repeat(n);
                text.push('1');
                if close {
                    for c in open.bytes().rev().filter(|c| matches!(c, b'{' | b'[')) {
                        text.extend(std::iter::repeat_n(if c == b'{' { '}' } else { ']' }, n));
                    }
                }
                text.into_bytes()
            });
        let bytes = proptest::collection::vec(
            prop_oneof![
                any::<u8>(),
                proptest::sample::select(b"{}[]\":,\\u0123456789eE.-+ \t\n\rtfnalsx".to_vec()),
            ],
            0..300,
        );
        prop_oneof![
            event_body().prop_map(String::into_bytes),
            json_value().prop_map(String::into_bytes),
            deep,
            bytes,
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        #[test]
        fn hostile_bodies_never_panic(
            body in hostile_body(),
            edits in proptest::collection::vec(
                (
                    0usize..4000,
                    proptest::sample::select(vec![
                        &b"\xff"[..], b"\xc3", b"\xe2\x82", b"\\u", b"\\ud800", b"\"", b"\\", b"{", b"}",
                        b"[", b"]", b",", b":", b"-", b"0", b"1e999", b"\0", b"\x0c", b"\xef\xbb\xbf",
                    ]),
                    0u8..3,
                ),
                0..8,
            ),
        ) {
            let mut bytes: Vec<u8> = body;
            read_every_way(&bytes);
            for (at, piece, op) in edits {
                let at = at % (bytes.len() + 1);
                let end = (at + piece.len()).min(bytes.len());
                match op {
                    0 => drop(bytes.splice(at..at, piece.iter().copied())),
                    1 => drop(bytes.drain(at..end)),
                    _ => drop(bytes.splice(at..end, piece.iter().copied())),
                }
                read_every_way(&bytes);
            }
        }
    }

    #[test]
    fn strict_reading_edge_cases() {
        let deep = |n: usize| {
            format!(
                r#"{{"method":"m",{}"Code":"c"{}}}"#,
                r#""params":{"#.repeat(n),
                "}".repeat(n)
            )
        };
        let deep_skip = format!(
            r#"{{"x":{}1{},"Code":"c"}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        for text in [
            deep(10),
            deep(40),
            deep(200),
            deep_skip.clone(),
            r#"{"params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":0,"Data":{"LocaleTime":"t"}}]}}"#.into(),
            r#"{"Code":"x","Index":01}"#.into(),
            r#"{"Code":"x","Index":1.}"#.into(),
            r#"{"Code":"x",}"#.into(),
            r#"{"Code":"x" "Index":1}"#.into(),
            r#"{"Code":"x","Data":[1,]}"#.into(),
            r#"{"Code":"x","Data":"\x"}"#.into(),
            r#"{"Code":"x","Data":"\u12G4"}"#.into(),
            "{\"Code\":\"a\tb\"}".into(),
            "{\"Code\":\"x\",\"Data\":\"a\u{1}b\"}".into(),
            r#"{"Code":"x"} "#.into(),
            r#"{"Code":"x"}{}"#.into(),
            r#"{"Code":"x","Index":1e999}"#.into(),
            r#"{"Code":"x","Data":1e999}"#.into(),
            r#"{"Code":"x","Index":tru}"#.into(),
            r#"{"Event":"HumanDetect","Type":"Log","Status":"Start","Channel":3}"#.into(),
            r#"{"Event":"HumanDetect","Type":"Alarm","SerialID":"s","Address":"0x0A01A8C0"}"#.into(),
            // XM objects below the top level: their other values are listed from their text.
            r#"{"eventList":[{"A":1,"Event":"HumanDetect","Type":"x","Status":"Start","Z":{"a":[1,"\u00e9"]},"B":"y"}]}"#.into(),
            r#"{"params":{"A":[{"b":{}}],"Event":"HumanDetect","Channel":2,"Q":null}}"#.into(),
            // Duplicate keys: each entry is read in order, by both readers (no error; the last
            // `Code`/`params`/`Data`/`eventList` wins, the first identity and period win).
            r#"{"Code":"a","Code":"b","Index":1,"Index":"2","SerialNo":"s1","SerialNo":"s2"}"#.into(),
            r#"{"Code":"a","Data":{"Time":"t1"},"Data":{"Time":"t2","Time":"t0"},"Data":{"LocaleTime":"t3"}}"#.into(),
            r#"{"Code":"a","Data":{"Time":"t1"},"Data":null}"#.into(),
            r#"{"params":{"Code":"a"},"params":7,"KeepAlive":5,"KeepAlive":9}"#.into(),
            r#"{"eventList":[{"Code":"a"}],"eventList":{"Code":"b"},"Event":"E","Type":"Log","Type":"x"}"#.into(),
            // Numbers: -0, leading zeros, the longest integer kept, one past it, past i64 and u64.
            r#"{"Code":"x","Index":-0}"#.into(),
            r#"{"Code":"x","Index":-01}"#.into(),
            r#"{"Code":"x","Index":00}"#.into(),
            r#"{"Code":"x","Index":999999999999999999}"#.into(),
            r#"{"Code":"x","Index":-99999999999999999}"#.into(),
            r#"{"Code":"x","Index":-999999999999999999}"#.into(),
            r#"{"Code":"x","Index":9223372036854775808}"#.into(),
            r#"{"Code":"x","Index":18446744073709551616}"#.into(),
            r#"{"Code":"x","Index":1.0}"#.into(),
            // Whitespace JSON does not allow, a BOM, NUL after the object.
            "{\"Code\":\"x\",\u{c}\"Index\":1}".into(),
            "{\"Code\":\"x\",\u{b}\"Index\":1}".into(),
            "{\"Code\":\"x\",\u{a0}\"Index\":1}".into(),
            "\u{feff}{\"Code\":\"x\"}".into(),
            "{\"Code\":\"x\"}\0".into(),
        ] {
            check_strict(text.as_bytes());
        }
        for bytes in [
            &b"\xef\xbb\xbf{\"Code\":\"x\"}"[..],
            b"{\"Code\":\"x\xff\"}",
            b"{\"x\xff\":1}",
        ] {
            check_strict(bytes);
        }
        // An XM object read at depth 2 whose values nest as deep as the strict reader goes: listing its
        // other values again must not give up where the first reading did not.
        let deepest = format!(
            r#"{{"params":{{"Event":"HumanDetect","A":1,{}"Z":{}0{}{}}}}}"#,
            r#""params":{"#.repeat(28),
            "[".repeat(60),
            "]".repeat(60),
            "}".repeat(28)
        );
        assert!(Strict::body(&deepest).is_some());
        check_strict(deepest.as_bytes());
        let facts = json_facts(&deepest).unwrap();
        assert!(facts.events[0]
            .data
            .as_ref()
            .unwrap()
            .as_str()
            .starts_with(r#"{"A":1}"#));
        let nested = json_facts(
            r#"{"eventList":[{"A":1,"Event":"HumanDetect","Status":"Start","Z":{"a":[1]},"B":"y"}]}"#,
        )
        .unwrap();
        assert_eq!(
            nested.events[0].data.as_ref().map(JsonText::as_str),
            Some(r#"{"A":1,"Z":{"a":[1]},"B":"y"}"#)
        );
        // Past serde's recursion limit: serde rejects it, so the strict reader must have given up.
        assert!(json_facts(&deep(200)).is_err());
        assert!(Strict::body(&deep(200)).is_none());
        // Deep skipped values: serde accepts them (no limit there); the strict reader hands them over.
        assert!(json_facts(&deep_skip).is_ok());
        // The common bodies are read by the strict reader.
        assert!(Strict::body(&deep(10)).is_some());
    }

    #[test]
    fn the_decoder_reads_whole_bare_objects_once() {
        let event = br#"{"method":"client.notifyEventStream","params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":0}]}}"#;
        let stream = [&event[..], b"\n", &event[..60]].concat();
        let mut decoder = crate::Decoder::default();
        let frames: Vec<_> = decoder.feed(&stream).collect();
        assert_eq!(frames.len(), 1);
        let copy = frames[0].clone();
        let facts = frames[0]
            .parsed
            .take(&frames[0].bytes)
            .expect("read by the decoder");
        assert_eq!(facts.events.len(), 1);
        assert!(
            frames[0].parsed.take(&frames[0].bytes).is_none(),
            "taken once"
        );
        assert!(copy.parsed.take(&copy.bytes).is_none());
        // The rest of the second object arrives later: framed by brace matching, read by the session.
        let frames: Vec<_> = decoder.feed(&event[60..]).collect();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].parsed.take(&frames[0].bytes).is_none());
        assert_eq!(crate::Session::new().decode(&frames[0]).events.len(), 1);
    }
}
