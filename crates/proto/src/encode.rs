//! Encoders for every variant: the exact bytes a device would send. Used by tests, fuzz seeds,
//! benchmarks and the device simulator. All lengths are written little-endian.

use crate::{dhip, dvrip, xm};

/// A DVRIP frame: `command`, `byte3`, the body length, the command-specific header bytes 8–31
/// (`tail`), then `body`.
pub fn dvrip_frame(command: u8, byte3: u8, tail: [u8; 24], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dvrip::HEADER_LEN + body.len());
    out.extend_from_slice(&[command, 0, 0, byte3]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&tail);
    out.extend_from_slice(body);
    out
}

/// Header bytes 8–31 of a 0x69 alarm upload.
fn alarm_tail(alarm_type: u8, group: u8, format: u8) -> [u8; 24] {
    let mut tail = [0u8; 24];
    tail[dvrip::ALARM_TYPE_AT - 8] = alarm_type;
    tail[dvrip::CHANNEL_GROUP_AT - 8] = group;
    tail[dvrip::BODY_FORMAT_AT - 8] = format;
    tail
}

/// DVRIP 0x69, body format 0: the active-channel bitmask of `alarm_type` for channel group `group`.
pub fn dvrip_mask(alarm_type: u8, group: u8, mask: u32) -> Vec<u8> {
    dvrip_frame(
        dvrip::CMD_ALARM,
        0,
        alarm_tail(alarm_type, group, 0),
        &mask.to_le_bytes(),
    )
}

/// DVRIP 0x69, body format 1: `Key:Value\r\n` lines.
pub fn dvrip_text(alarm_type: u8, group: u8, pairs: &[(&str, &str)]) -> Vec<u8> {
    let body: String = pairs.iter().map(|(k, v)| format!("{k}:{v}\r\n")).collect();
    dvrip_frame(
        dvrip::CMD_ALARM,
        0,
        alarm_tail(alarm_type, group, 1),
        body.as_bytes(),
    )
}

/// DVRIP 0xF6 JSON request with `request_id` and `session_id`; a `"\n"` is appended to `json`.
pub fn dvrip_json(request_id: u32, session_id: u32, json: &str) -> Vec<u8> {
    let body = [json.as_bytes(), b"\n"].concat();
    let mut tail = [0u8; 24];
    tail[0..4].copy_from_slice(&request_id.to_le_bytes());
    tail[8..12].copy_from_slice(&(body.len() as u32).to_le_bytes());
    tail[16..20].copy_from_slice(&session_id.to_le_bytes());
    dvrip_frame(dvrip::CMD_JSON, 0, tail, &body)
}

/// DVRIP 0xA1 heartbeat (empty body).
pub fn dvrip_heartbeat() -> Vec<u8> {
    dvrip_frame(dvrip::CMD_HEARTBEAT, 0, [0; 24], &[])
}

/// A DHIP frame carrying `json` plus a trailing `"\n"`.
pub fn dhip(session_id: u32, request_id: u32, json: &str) -> Vec<u8> {
    let body_len = (json.len() + 1) as u32;
    let mut out = Vec::with_capacity(dhip::HEADER_LEN + json.len() + 1);
    out.extend_from_slice(&dhip::MAGIC);
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
    out
}

/// An XM frame (version 1, one packet) with `message_id` carrying `json` plus a trailing `"\n"`.
pub fn xm(message_id: u16, session_id: u32, sequence: u32, json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(xm::HEADER_LEN + json.len() + 1);
    out.extend_from_slice(&[xm::MAGIC, 1, 0, 0]);
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&message_id.to_le_bytes());
    out.extend_from_slice(&((json.len() + 1) as u32).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
    out
}

/// An XM alarm-center push (message 1508) as XM cameras send it. `address` is the device's IPv4.
pub fn xm_alarm(
    serial: &str,
    address: std::net::Ipv4Addr,
    channel: u32,
    event: &str,
    start: bool,
    time: &str,
) -> Vec<u8> {
    let address = format!("0x{:08X}", u32::from_le_bytes(address.octets()));
    let body = serde_json::json!({
        "Address": address, "Channel": channel, "Descrip": "", "Event": event, "SerialID": serial,
        "StartTime": time, "Status": if start { "Start" } else { "Stop" }, "Type": "Alarm",
    });
    xm(xm::MSG_ALARM_CENTER, 0, 0, &body.to_string())
}

/// A bare JSON object followed by `"\n"` (newline-delimited JSON).
pub fn bare_json(json: &str) -> Vec<u8> {
    [json.as_bytes(), b"\n"].concat()
}

/// An HTTP/1.1 request with `Content-Length` (omitted when `body` is empty) after `headers`.
pub fn http_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    [out.as_bytes(), body].concat()
}

/// An HTTP/1.1 request whose body is sent with chunked transfer coding, in chunks of at most `chunk`
/// bytes (at least 1).
pub fn http_chunked(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Transfer-Encoding: chunked\r\n\r\n");
    let mut out = out.into_bytes();
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A Dahua HTTP-mode event: `POST /cgi-bin/NotifyEvent` with the JSON event as its body, and the
/// header fields such a device plausibly sends (`Host`, `Content-Type: application/json`).
pub fn http_event(host: &str, json: &str) -> Vec<u8> {
    http_request(
        "POST",
        crate::http::NOTIFY_PATH,
        &[("Host", host), ("Content-Type", "application/json")],
        json.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_frame_matches_the_sample_layout() {
        let frame = dvrip_mask(2, 0, 5);
        assert_eq!(frame.len(), 36);
        assert_eq!(&frame[..8], &[0x69, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(frame[12], 2);
        assert_eq!(&frame[32..], &[5, 0, 0, 0]);
    }

    #[test]
    fn xm_address_round_trips() {
        let frame = xm_alarm(
            "abc",
            "192.168.1.10".parse().unwrap(),
            0,
            "HumanDetect",
            true,
            "2024-01-27 21:10:58",
        );
        let text = String::from_utf8_lossy(&frame[20..]);
        assert!(text.contains("\"0x0A01A8C0\""), "{text}");
        assert_eq!(
            crate::xm::address_to_ipv4("0x0A01A8C0")
                .unwrap()
                .to_string(),
            "192.168.1.10"
        );
    }
}
