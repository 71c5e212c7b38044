//! The frames a simulated device sends, built with `alarm_center_proto::encode`.

use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use alarm_center_proto::{dvrip, encode, http, xm};

use crate::Variant;

/// Channels per simulated device: alarms pick an index in `0..CHANNELS`.
pub(crate) const CHANNELS: u32 = 4;

/// Event codes of the JSON variants (`client.notifyEventStream`).
pub(crate) const JSON_CODES: [&str; 6] = [
    "VideoMotion",
    "CrossLineDetection",
    "CrossRegionDetection",
    "AlarmLocal",
    "VideoBlind",
    "SmartMotionHuman",
];

/// XM `Event` names.
pub(crate) const XM_EVENTS: [&str; 5] = [
    "HumanDetect",
    "VideoMotion",
    "VideoBlind",
    "VideoLoss",
    "LocalAlarm",
];

/// DVRIP 0x69 alarm types used for mask and text alarms (channel bitmasks, not booleans).
pub(crate) const DVRIP_TYPES: [u8; 4] = [1, 2, 3, 4];

/// Path of the HTTP variant's keepAlive requests. What real devices send in HTTP mode between events is
/// not known; the server takes any request whose path contains `keepalive` for one.
pub(crate) const HTTP_KEEPALIVE_PATH: &str = "/cgi-bin/keepAlive";

/// Number of distinct codes a variant picks from (the size of its per-code active-channel state).
pub(crate) fn code_count(variant: Variant) -> usize {
    match variant {
        Variant::DvripMask | Variant::DvripText => DVRIP_TYPES.len(),
        Variant::Xm => XM_EVENTS.len(),
        _ => JSON_CODES.len(),
    }
}

/// The event code of code slot `slot` for `variant`.
pub(crate) fn code_name(variant: Variant, slot: usize) -> &'static str {
    match variant {
        Variant::DvripMask | Variant::DvripText => {
            dvrip::alarm_code(DVRIP_TYPES[slot]).unwrap_or("DvripAlarm")
        }
        Variant::Xm => XM_EVENTS[slot],
        _ => JSON_CODES[slot],
    }
}

/// Wall-clock time now: whole seconds and milliseconds since the Unix epoch.
pub(crate) fn wall_clock() -> (u64, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs(), now.as_millis() as u64)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of `secs` since the Unix epoch.
pub(crate) fn locale_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
        .unwrap_or(jiff::Timestamp::MAX)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// What a device puts in every frame about itself.
pub(crate) struct Identity<'a> {
    pub(crate) serial: &'a str,
    /// The serial as a JSON string literal, quotes included.
    pub(crate) serial_json: &'a str,
    pub(crate) ip: Ipv4Addr,
    /// The server as the device addresses it (`HOST:PORT`, the HTTP `Host` field).
    pub(crate) host: &'a str,
}

/// Per-connection numbering.
pub(crate) struct Conn {
    /// Session id of the connection (JSON `session`, DHIP/DVRIP/XM header session).
    pub(crate) session: u32,
    /// Id of the next JSON-RPC request, XM sequence number of the next keepAlive.
    pub(crate) next_id: u32,
}

impl Conn {
    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }
}

/// A JSON variant's frame around `json`.
fn json_frame(variant: Variant, conn: &Conn, id: u32, json: &str) -> Vec<u8> {
    match variant {
        Variant::DvripJson => encode::dvrip_json(id, conn.session, json),
        Variant::Dhip => encode::dhip(conn.session, id, json),
        _ => encode::bare_json(json),
    }
}

/// An HTTP request of the HTTP variant: `Host`, `Content-Type` when there is a body (as
/// [`encode::http_event`] sends them) and the serial in `X-Serial-Number`, since the bodies carry none.
fn http_request(method: &str, path: &str, me: &Identity<'_>, json: &str) -> Vec<u8> {
    let mut headers = vec![("Host", me.host)];
    if !json.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    headers.push(("X-Serial-Number", me.serial));
    encode::http_request(method, path, &headers, json.as_bytes())
}

/// The DVRIP 0x69 type-120 self-report that opens a DVRIP mask/text connection; `None` for other
/// variants.
pub(crate) fn report(variant: Variant, me: &Identity<'_>) -> Option<Vec<u8>> {
    if !matches!(variant, Variant::DvripMask | Variant::DvripText) {
        return None;
    }
    let ip = me.ip.to_string();
    let domain = format!("{}.sim.invalid", me.serial);
    Some(encode::dvrip_text(
        dvrip::ALARM_TYPE_REPORT,
        0,
        &[("Global IP", &ip), ("Domain name", &domain)],
    ))
}

/// A keepAlive frame; `period_secs` is announced where the variant has a field for it.
pub(crate) fn keepalive(
    variant: Variant,
    me: &Identity<'_>,
    conn: &mut Conn,
    period_secs: u64,
) -> Vec<u8> {
    match variant {
        Variant::DvripMask | Variant::DvripText => encode::dvrip_heartbeat(),
        Variant::Http => http_request("GET", HTTP_KEEPALIVE_PATH, me, ""),
        Variant::Xm => {
            let json = format!(
                r#"{{"Name":"KeepAlive","SessionID":"0x{:08X}","SerialID":{}}}"#,
                conn.session, me.serial_json
            );
            encode::xm(xm::MSG_KEEPALIVE, conn.session, conn.id(), &json)
        }
        _ => {
            let id = conn.id();
            let json = format!(
                r#"{{"id":{id},"method":"global.keepAlive","params":{{"timeout":{period_secs},"active":true,"SerialNo":{}}},"session":{}}}"#,
                me.serial_json, conn.session
            );
            json_frame(variant, conn, id, &json)
        }
    }
}

/// One alarm event: a start or stop of code `slot` on channel `index`.
pub(crate) struct AlarmEvent {
    pub(crate) slot: usize,
    pub(crate) index: u32,
    pub(crate) start: bool,
}

/// The frame carrying `event`. `mask` is the device's active-channel mask of the event's code
/// after the change (DVRIP snapshots send it whole).
pub(crate) fn alarm(
    variant: Variant,
    me: &Identity<'_>,
    conn: &mut Conn,
    event: &AlarmEvent,
    mask: u32,
) -> Vec<u8> {
    let (secs, millis) = wall_clock();
    match variant {
        Variant::DvripMask => encode::dvrip_mask(DVRIP_TYPES[event.slot], 0, mask),
        Variant::DvripText => encode::dvrip_text(
            DVRIP_TYPES[event.slot],
            0,
            &[
                ("alarm channel", &mask.to_string()),
                ("Time", &locale_time(secs)),
            ],
        ),
        Variant::Xm => encode::xm_alarm(
            me.serial,
            me.ip,
            event.index,
            XM_EVENTS[event.slot],
            event.start,
            &locale_time(secs),
        ),
        Variant::Http => {
            // The shape public HTTP-mode receivers read: Code, Action and a 0-based Index at the top.
            let code = JSON_CODES[event.slot];
            let json = format!(
                r#"{{"Action":"{action}","Code":"{code}","Index":{index},"Data":{{"StartTime":"{time}","IP":"{ip}","Name":"{code}{channel}"}}}}"#,
                action = if event.start { "Start" } else { "Stop" },
                index = event.index,
                time = locale_time(secs),
                ip = me.ip,
                channel = event.index + 1,
            );
            http_request("POST", http::NOTIFY_PATH, me, &json)
        }
        _ => {
            let id = conn.id();
            let code = JSON_CODES[event.slot];
            let action = if event.start { "Start" } else { "Stop" };
            let (index, channel) = (event.index, event.index + 1);
            let json = format!(
                concat!(
                    r#"{{"id":{id},"method":"client.notifyEventStream","params":{{"SerialNo":{serial},"#,
                    r#""eventList":[{{"Action":"{action}","Code":"{code}","Index":{index},"#,
                    r#""Data":{{"LocaleTime":"{time}","UTC":{secs},"UTCMS":{millis},"Name":"{code}{channel}","#,
                    r#""EventID":{id},"RegionName":["Region{channel}"],"ObjectType":"Human"}}}}]}},"#,
                    r#""session":{session}}}"#
                ),
                id = id,
                serial = me.serial_json,
                action = action,
                code = code,
                index = index,
                time = locale_time(secs),
                secs = secs,
                millis = millis,
                channel = channel,
                session = conn.session,
            );
            json_frame(variant, conn, id, &json)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_time_matches_known_dates() {
        assert_eq!(locale_time(0), "1970-01-01 00:00:00");
        assert_eq!(locale_time(1_706_389_858), "2024-01-27 21:10:58");
        assert_eq!(locale_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(locale_time(4_107_542_399), "2100-02-28 23:59:59");
    }

    fn identity() -> Identity<'static> {
        Identity {
            serial: "SIM000001",
            serial_json: "\"SIM000001\"",
            ip: Ipv4Addr::new(198, 18, 0, 1),
            host: "127.0.0.1:15002",
        }
    }

    #[test]
    fn json_event_is_a_realistic_size() {
        let me = identity();
        let mut conn = Conn {
            session: 123_456,
            next_id: 1000,
        };
        let event = AlarmEvent {
            slot: 1,
            index: 2,
            start: true,
        };
        let frame = alarm(Variant::Dhip, &me, &mut conn, &event, 0);
        assert!((300..=400).contains(&frame.len()), "{}", frame.len());
        let json: serde_json::Value = serde_json::from_slice(&frame[32..]).unwrap();
        assert_eq!(json["params"]["eventList"][0]["Code"], "CrossLineDetection");
        assert_eq!(json["params"]["SerialNo"], "SIM000001");
    }

    #[test]
    fn http_requests_carry_the_event_and_the_identity() {
        use alarm_center_proto::{Decoder, Kind, Protocol, Session};

        let me = identity();
        let mut conn = Conn {
            session: 1,
            next_id: 1,
        };
        let event = AlarmEvent {
            slot: 0,
            index: 2,
            start: false,
        };
        let mut bytes = alarm(Variant::Http, &me, &mut conn, &event, 0);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("POST /cgi-bin/NotifyEvent HTTP/1.1\r\nHost: 127.0.0.1:15002\r\n"),
            "{text}"
        );
        let body: serde_json::Value =
            serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        assert_eq!(body["Code"], "VideoMotion");
        assert_eq!(body["Action"], "Stop");
        assert_eq!(body["Index"], 2);
        assert_eq!(body["Data"]["IP"], "198.18.0.1");
        assert_eq!(body.get("SerialNo"), None);
        bytes.extend(keepalive(Variant::Http, &me, &mut conn, 10));

        let mut decoder = Decoder::default();
        let mut session = Session::new();
        let frames: Vec<_> = decoder.feed(&bytes).collect();
        assert_eq!(frames.len(), 2);
        let decoded: Vec<_> = frames.iter().map(|f| session.decode(f)).collect();
        assert!(frames.iter().all(|f| f.protocol == Protocol::Http));
        assert_eq!(
            decoded.iter().map(|d| d.kind).collect::<Vec<_>>(),
            [Kind::Alarm, Kind::Keepalive]
        );
        for d in &decoded {
            assert_eq!(d.error, None);
            assert_eq!(d.device.serial.as_deref(), Some("SIM000001"));
        }
        assert_eq!(decoded[0].device.ip.as_deref(), Some("198.18.0.1"));
        let e = &decoded[0].events[0];
        assert_eq!(
            (&*e.code, e.action.as_str(), e.index),
            ("VideoMotion", "stop", Some(2))
        );
    }
}
