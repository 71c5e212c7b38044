//! Who sent a frame: a configured device, the identity the frames carry, or the source address.

use std::net::IpAddr;

use alarm_center_proto::DeviceInfo;

/// Longest device id taken from what a device sends, in characters.
pub const MAX_DEVICE_ID: usize = 128;

/// A `[[devices]]` entry as identity resolution sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownDevice {
    /// The configured id.
    pub id: String,
    /// Serial number (compared ignoring ASCII case).
    pub serial: Option<String>,
    /// MAC address, normalised with [`normalize_mac`].
    pub mac: Option<String>,
    /// DDNS or domain name (compared ignoring ASCII case).
    pub domain: Option<String>,
    /// The device's fixed source address.
    pub address: Option<IpAddr>,
}

/// Who a connection's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The device id.
    pub id: String,
    /// True when it was recognised from what the frames carry (or a configured address), not only
    /// the source address.
    pub strong: bool,
    /// True when it matches a `[[devices]]` entry.
    pub configured: bool,
}

/// Lower-case hex digits of a MAC address, separators removed.
pub fn normalize_mac(mac: &str) -> String {
    mac.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A device id from a serial or domain the device sent: control characters escaped (so that the id
/// cannot forge log lines or break topics and tables), at most [`MAX_DEVICE_ID`] characters.
pub fn device_id(sent: &str) -> String {
    sent.trim()
        .chars()
        .take(MAX_DEVICE_ID)
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            escaped
                .into_iter()
                .flatten()
                .chain((!c.is_control()).then_some(c))
        })
        .take(MAX_DEVICE_ID)
        .collect()
}

/// Resolves who sent a frame carrying `info`, from `peer`, in this order:
/// 1. a `known` device whose serial, MAC or domain the frame carries, else one configured at `peer`;
/// 2. the serial, the MAC (12 hex digits) or the domain the frame carries;
/// 3. with `ip_names_device` (HTTP mode, whose bodies carry the device's own `Data.IP` and no
///    serial), a reported address other than `peer`: `<reported ip>@<peer ip>`, which tells devices
///    behind one NAT address apart;
/// 4. the source address alone: `addr-<peer>` (weak: several devices may share it).
pub fn resolve(
    known: &[KnownDevice],
    info: &DeviceInfo,
    peer: IpAddr,
    ip_names_device: bool,
) -> Identity {
    let eq = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    };
    let mac = info.mac.as_deref().map(normalize_mac);
    let by_identity = known
        .iter()
        .find(|k| eq(&k.serial, &info.serial) || eq(&k.mac, &mac) || eq(&k.domain, &info.domain));
    if let Some(k) = by_identity.or_else(|| known.iter().find(|k| k.address == Some(peer))) {
        return Identity {
            id: k.id.clone(),
            strong: true,
            configured: true,
        };
    }
    let carried = info
        .serial
        .as_deref()
        .map(device_id)
        .or(mac.filter(|m| m.len() == 12))
        .or_else(|| info.domain.as_deref().map(device_id));
    let (id, strong) = match carried {
        Some(id) => (id, true),
        None => {
            let reported = info
                .ip
                .as_deref()
                .filter(|_| ip_names_device)
                .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
                .filter(|ip| *ip != peer);
            match reported {
                Some(ip) => (format!("{ip}@{peer}"), true),
                None => (format!("addr-{peer}"), false),
            }
        }
    };
    Identity {
        id,
        strong,
        configured: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

    fn info(serial: Option<&str>, mac: Option<&str>, ip: Option<&str>) -> DeviceInfo {
        DeviceInfo {
            serial: serial.map(str::to_owned),
            mac: mac.map(str::to_owned),
            ip: ip.map(str::to_owned),
            ..DeviceInfo::default()
        }
    }

    fn known() -> Vec<KnownDevice> {
        vec![
            KnownDevice {
                id: "nvr-shop".into(),
                serial: Some("ABC123".into()),
                ..KnownDevice::default()
            },
            KnownDevice {
                id: "cam-gate".into(),
                mac: Some(normalize_mac("00:1A:2B:3C:4D:5E")),
                ..KnownDevice::default()
            },
            KnownDevice {
                id: "dvr-nat".into(),
                address: Some(PEER),
                ..KnownDevice::default()
            },
        ]
    }

    #[test]
    fn a_configured_device_is_found_by_what_the_frame_carries_then_by_address() {
        let by_serial = resolve(&known(), &info(Some("abc123"), None, None), PEER, false);
        assert_eq!(by_serial.id, "nvr-shop");
        assert!(by_serial.configured && by_serial.strong);
        let by_mac = resolve(
            &known(),
            &info(None, Some("00-1a-2b-3c-4d-5e"), None),
            PEER,
            false,
        );
        assert_eq!(by_mac.id, "cam-gate");
        let by_address = resolve(&known(), &info(None, None, None), PEER, false);
        assert_eq!(by_address.id, "dvr-nat");
    }

    #[test]
    fn otherwise_the_carried_identity_then_the_reported_address_then_the_source() {
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let serial = resolve(&[], &info(Some(" SN\u{1b}[31m "), None, None), other, false);
        assert_eq!(serial.id, "SN\\u{1b}[31m");
        assert!(serial.strong && !serial.configured);
        let mac = resolve(
            &[],
            &info(None, Some("00:1A:2B:3C:4D:5F"), None),
            other,
            false,
        );
        assert_eq!(mac.id, "001a2b3c4d5f");
        let http = resolve(&[], &info(None, None, Some("192.168.1.108")), other, true);
        assert_eq!(http.id, "192.168.1.108@198.51.100.1");
        assert!(http.strong);
        // Outside HTTP mode, or when the reported address is the source: the address alone, weak.
        let weak = resolve(&[], &info(None, None, Some("192.168.1.108")), other, false);
        assert_eq!(weak.id, "addr-198.51.100.1");
        assert!(!weak.strong);
        let same = resolve(&[], &info(None, None, Some("198.51.100.1")), other, true);
        assert_eq!(same.id, "addr-198.51.100.1");
    }

    #[test]
    fn carried_ids_are_capped() {
        let long = "x".repeat(1000);
        assert_eq!(device_id(&long).chars().count(), MAX_DEVICE_ID);
        let controls = "\u{7}".repeat(200);
        assert_eq!(device_id(&controls).chars().count(), MAX_DEVICE_ID);
    }
}
