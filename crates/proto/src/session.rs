//! Per-stream interpretation: classification, event extraction and the DVRIP 0x69 mask diff.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::event::{DeviceInfo, Event, JsonText};
use crate::fragment::{self, FragmentInfo, Reassembly, Step};
use crate::frame::{le_u32, Frame, Protocol};
use crate::json_body::{json_facts, key_of, merge, JsonFacts, Key};
use crate::{dhip, dvrip, http, text, xm};

mod masks;

/// What a frame is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr, strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Kind {
    /// Carries alarm events (or a 0x69 alarm state snapshot).
    Alarm,
    /// Proves the device alive and nothing more.
    Keepalive,
    /// DVRIP 0x69 type 120: the scheduled self-report.
    Report,
    /// A JSON-RPC reply (`result` without `method`), a DVRIP 0xB0/0xB1.
    Reply,
    /// A log record the device uploads (XM `"Type": "Log"`): its events are kept, not alarms.
    Log,
    /// A JSON-RPC request or notification that is none of the above.
    Request,
    /// Nothing we understand.
    Unknown,
}

impl BodyFormat {
    /// The lower-case name used in the output.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Kind {
    /// Every kind, in declaration order (`kind as usize` is its position).
    pub const ALL: &'static [Kind] = <Kind as strum::VariantArray>::VARIANTS;

    /// The lower-case name used in the output and in metrics labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How the body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum BodyFormat {
    /// A little-endian u32 bitmask (or several).
    Mask,
    /// `Key:Value` lines.
    Text,
    /// A JSON value.
    Json,
    /// Bytes we do not interpret.
    Binary,
    /// No body.
    None,
}

/// The interpreted body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// No body bytes.
    None,
    /// DVRIP 0x69 format 0: `mask` covers the header's channel group; `more[j]` (rarely present) covers
    /// group + j + 1.
    Mask {
        /// The first 32-bit word, little-endian on the wire.
        mask: u32,
        /// Further words when the body is longer than 4 bytes.
        more: Vec<u32>,
    },
    /// `Key:Value` pairs in order.
    Text(Vec<(String, String)>),
    /// A JSON text that parsed: the body bytes with surrounding whitespace and NUL padding trimmed.
    /// Kept as text so that key order and number spelling survive; [`Body::json_value`] parses it.
    Json(Bytes),
    /// Uninterpreted bytes.
    Binary(Bytes),
}

impl Body {
    /// The JSON value of a JSON body.
    pub fn json_value(&self) -> Option<Value> {
        match self {
            Body::Json(text) => serde_json::from_slice(text).ok(),
            _ => None,
        }
    }
}

/// Header fields of the frame's variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Header {
    /// DVRIP fields.
    Dvrip(dvrip::Header),
    /// DHIP fields.
    Dhip(dhip::Header),
    /// XM fields.
    Xm(xm::Header),
    /// HTTP request line and header fields.
    Http(http::Header),
    /// Bare JSON and junk have no header.
    None,
}

/// Everything the session read from one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// DVRIP command byte or XM message id.
    pub command: Option<u32>,
    /// What the frame is for.
    pub kind: Kind,
    /// How the body was read.
    pub body_format: BodyFormat,
    /// Variant header fields.
    pub header: Header,
    /// The body.
    pub body: Body,
    /// Events found (after the mask diff for 0x69 snapshots).
    pub events: Vec<Event>,
    /// Identity the frame carries.
    pub device: DeviceInfo,
    /// Keep-alive period the device announced, in seconds.
    pub keepalive_period: Option<u32>,
    /// Why the frame or its body could not be read fully.
    pub error: Option<String>,
    /// Set when the frame is one packet of a JSON message split over several.
    pub fragment: Option<FragmentInfo>,
}

impl Decoded {
    fn new(command: Option<u32>, header: Header) -> Decoded {
        Decoded {
            command,
            kind: Kind::Unknown,
            body_format: BodyFormat::None,
            header,
            body: Body::None,
            events: Vec::new(),
            device: DeviceInfo::default(),
            keepalive_period: None,
            error: None,
            fragment: None,
        }
    }

    fn set_binary(&mut self, body: &Bytes) {
        self.body_format = BodyFormat::Binary;
        self.body = Body::Binary(body.clone());
    }
}

/// Per-stream state: the last 0x69 mask per (alarm type, channel group).
#[derive(Debug, Clone, Default)]
pub struct Session {
    masks: Vec<((u8, u8), u32)>,
    reassembly: Reassembly,
}

/// Strips trailing NUL padding and whitespace, and leading whitespace, from a JSON body.
fn trim_json(body: &[u8]) -> &[u8] {
    let end = body
        .iter()
        .rposition(|b| !matches!(b, 0 | b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |p| p + 1);
    let start = body[..end]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(end);
    &body[start..end]
}

impl Session {
    /// A session at the start of a stream (no masks seen).
    pub fn new() -> Session {
        Session::default()
    }

    /// Whether decoding `frame` neither reads nor changes a session's state (the 0x69 masks, the
    /// fragments of a message): every session decodes it alike. True of XM, bare JSON, HTTP and
    /// unrecognised frames, and of frames the decoder marked as errors (only their bytes are kept);
    /// DVRIP and DHIP frames go through the masks or the reassembly.
    pub fn is_stateless(frame: &Frame) -> bool {
        frame.error.is_some()
            || matches!(
                frame.protocol,
                Protocol::Xm | Protocol::Json | Protocol::Http | Protocol::Junk
            )
    }

    /// The active bits of every (alarm type, channel group) seen, as `((type, group), mask)`.
    pub fn masks(&self) -> &[((u8, u8), u32)] {
        &self.masks
    }

    /// Interprets one frame, updating the mask state.
    pub fn decode(&mut self, frame: &Frame) -> Decoded {
        if frame.protocol == Protocol::Http {
            return http_request(frame);
        }
        if let Some((header, body)) = masks::mask_upload(frame) {
            return self.decode_mask(header, body);
        }
        let body_at = frame.header_len.min(frame.bytes.len());
        let mut out = match frame.protocol {
            Protocol::Dvrip => {
                let header = dvrip::Header::parse(frame);
                Decoded::new(
                    frame.bytes.first().map(|&c| u32::from(c)),
                    Header::Dvrip(header),
                )
            }
            Protocol::Dhip => Decoded::new(None, Header::Dhip(dhip::Header::parse(frame))),
            Protocol::Xm => {
                let header = xm::Header::parse(frame);
                Decoded::new(Some(u32::from(header.message_id)), Header::Xm(header))
            }
            Protocol::Json | Protocol::Junk | Protocol::Http => Decoded::new(None, Header::None),
        };
        if let Some(error) = &frame.error {
            // Truncated or unrecognised: keep the bytes, interpret nothing.
            out.error = Some(error.to_string());
            if body_at < frame.bytes.len() {
                out.set_binary(&frame.bytes.slice(body_at..));
            }
            return out;
        }
        if frame.protocol == Protocol::Dvrip && frame.bytes.first() == Some(&dvrip::CMD_ALARM) {
            // Alarm uploads are never fragmented; a mask body is read in place (no `Bytes` handle).
            self.dvrip_alarm(frame, body_at, &mut out);
            return finish(out);
        }
        let body = frame.bytes.slice(body_at..);
        let body = match self.reassemble(frame, &body, &mut out) {
            Some(body) => body,
            None => return out,
        };
        match frame.protocol {
            Protocol::Dvrip => self.dvrip(frame, &body, &mut out),
            Protocol::Json => match frame
                .parsed
                .take(&frame.bytes)
                .filter(|_| frame.header_len == 0)
            {
                // Read by the decoder while it found the object's end: exactly what `json_body` reads.
                Some(facts) => {
                    apply_facts(*facts, &mut out);
                    out.body_format = BodyFormat::Json;
                    out.body = Body::Json(body.slice_ref(trim_json(&body)));
                }
                None => generic_body(&body, &mut out),
            },
            Protocol::Dhip => generic_body(&body, &mut out),
            Protocol::Xm => xm_body(&body, &mut out),
            Protocol::Junk | Protocol::Http => out.set_binary(&body),
        }
        finish(out)
    }

    /// Feeds DHIP and DVRIP 0xF6/0xF4 packets to the reassembly. Returns the body to read (this packet's,
    /// or the joined message on its last packet), or `None` for a packet of a message not yet complete.
    fn reassemble(&mut self, frame: &Frame, body: &Bytes, out: &mut Decoded) -> Option<Bytes> {
        let (request_id, total) = match &out.header {
            Header::Dhip(h) => (h.request_id, h.total_length),
            Header::Dvrip(h) if matches!(out.command, Some(c) if c == u32::from(dvrip::CMD_JSON) || c == u32::from(dvrip::CMD_TEXT)) => {
                (h.request_id.unwrap_or(0), h.total_length.unwrap_or(0))
            }
            _ => return Some(body.clone()),
        };
        match self
            .reassembly
            .push(frame.protocol, request_id, total, body)
        {
            Step::Whole => Some(body.clone()),
            Step::Complete(info, joined) => {
                out.fragment = Some(info);
                Some(joined)
            }
            Step::Partial(info) => {
                out.fragment = Some(info);
                out.set_binary(body);
                None
            }
            Step::TooLong(info) => {
                out.fragment = Some(info);
                out.error = Some(format!(
                    "fragmented message longer than {} bytes abandoned",
                    fragment::MAX_MESSAGE
                ));
                out.set_binary(body);
                None
            }
        }
    }

    /// A DVRIP frame other than an alarm upload.
    fn dvrip(&mut self, frame: &Frame, body: &Bytes, out: &mut Decoded) {
        let cmd = frame.header()[0];
        generic_body(body, out);
        if out.kind == Kind::Unknown || out.body_format != BodyFormat::Json {
            out.kind = match cmd {
                dvrip::CMD_HEARTBEAT => Kind::Keepalive,
                dvrip::CMD_HEARTBEAT_REPLY | dvrip::CMD_LOGIN_REPLY => Kind::Reply,
                dvrip::CMD_LOGIN | dvrip::CMD_ALARM_REQUEST => Kind::Request,
                _ => out.kind,
            };
        }
    }

    /// A DVRIP 0x69 alarm upload: a mask, `Key:Value` text or (later firmware) JSON body. The body is
    /// `frame.bytes[body_at..]`, read in place; a handle on it is taken only to keep it.
    fn dvrip_alarm(&mut self, frame: &Frame, body_at: usize, out: &mut Decoded) {
        let h = frame.header();
        let owned = || frame.bytes.slice(body_at..);
        let body = &frame.bytes[body_at..];
        let alarm_type = h[dvrip::ALARM_TYPE_AT];
        let group = h[dvrip::CHANNEL_GROUP_AT];
        let format = h[dvrip::BODY_FORMAT_AT];
        out.kind = if alarm_type == dvrip::ALARM_TYPE_REPORT {
            Kind::Report
        } else {
            Kind::Alarm
        };
        if body.is_empty() {
            return;
        }
        // Later firmware may put JSON here; a whole number of 32-bit words in format 0 is a mask even
        // when its first byte happens to be `{`.
        let mask_shaped = format == 0 && body.len().is_multiple_of(4);
        if !mask_shaped {
            if let Some(Ok(())) = json_body(&owned(), out) {
                if alarm_type == dvrip::ALARM_TYPE_REPORT {
                    out.kind = Kind::Report;
                }
                return;
            }
            out.error = None;
        }
        match format {
            0 if body.len() >= 4 => {
                // Nearly every mask body is one word: no allocation for up to four.
                let mut few = [0u32; 4];
                let many: Vec<u32>;
                let words: &[u32] = if body.len() / 4 <= few.len() {
                    for (word, bytes) in few.iter_mut().zip(body.chunks_exact(4)) {
                        *word = le_u32(bytes, 0).unwrap_or(0);
                    }
                    &few[..body.len() / 4]
                } else {
                    many = body.chunks_exact(4).filter_map(|w| le_u32(w, 0)).collect();
                    &many
                };
                if !body.len().is_multiple_of(4) {
                    out.error = Some(format!(
                        "mask body of {} bytes is not a whole number of 32-bit words; trailing bytes ignored",
                        body.len()
                    ));
                }
                self.apply_masks(alarm_type, group, words, None, None, &mut out.events);
                out.body_format = BodyFormat::Mask;
                out.body = Body::Mask {
                    mask: words[0],
                    more: words[1..].to_vec(),
                };
            }
            0 => {
                out.error = Some(format!(
                    "mask body of {} bytes is shorter than 4 bytes",
                    body.len()
                ));
                out.set_binary(&owned());
            }
            _ if format == 1 || text::looks_like_text(body) => {
                let pairs = text::parse(body);
                self.text_alarm(alarm_type, group, &pairs, out);
                out.body_format = BodyFormat::Text;
                out.body = Body::Text(pairs);
            }
            _ => out.set_binary(&owned()),
        }
    }

    /// A format-1 body: the decimal `alarm channel` mask updates the same state as a binary mask.
    fn text_alarm(
        &mut self,
        alarm_type: u8,
        group: u8,
        pairs: &[(String, String)],
        out: &mut Decoded,
    ) {
        out.device.domain = text::get(pairs, text::KEY_DOMAIN)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        out.device.ip = text::get(pairs, text::KEY_GLOBAL_IP)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let Some(channels) = text::get(pairs, text::KEY_ALARM_CHANNEL) else {
            return;
        };
        let Ok(mask) = channels.trim().parse::<u64>() else {
            out.error = Some(format!(
                "text body: `alarm channel` value {channels:?} is not a decimal bitmask"
            ));
            return;
        };
        let time = text::get(pairs, text::KEY_TIME).map(Box::from);
        // The other keys, in wire order, first value of a repeated key (as in the body).
        let mut data = String::from("{");
        for (i, (k, v)) in pairs.iter().enumerate() {
            let skip = k.eq_ignore_ascii_case(text::KEY_ALARM_CHANNEL)
                || k.eq_ignore_ascii_case(text::KEY_TIME)
                || pairs[..i].iter().any(|(earlier, _)| earlier == k);
            if !skip {
                if data.len() > 1 {
                    data.push(',');
                }
                data.push_str(&Value::String(k.clone()).to_string());
                data.push(':');
                data.push_str(&Value::String(v.clone()).to_string());
            }
        }
        data.push('}');
        let data = (data.len() > 2).then(|| JsonText::new(&data));
        // The low word, and the high one when it has a bit set.
        let words = [mask as u32, (mask >> 32) as u32];
        let used = if words[1] != 0 { 2 } else { 1 };
        self.apply_masks(
            alarm_type,
            group,
            &words[..used],
            time,
            data,
            &mut out.events,
        );
    }
}

/// The kind rules every decoded frame ends with.
fn finish(mut out: Decoded) -> Decoded {
    if out.kind == Kind::Unknown && !out.events.is_empty() {
        out.kind = Kind::Alarm;
    }
    if !matches!(out.kind, Kind::Keepalive | Kind::Reply) {
        out.keepalive_period = None;
    }
    out
}

/// Reads a body whose framing does not say its format: JSON if it parses, text if it looks like
/// `Key:Value` lines, else binary. Classifies JSON per the kind rules.
fn generic_body(body: &Bytes, out: &mut Decoded) {
    if body.is_empty() {
        return;
    }
    match json_body(body, out) {
        Some(Ok(())) => {}
        Some(Err(())) => out.set_binary(body),
        None if text::looks_like_text(body) => {
            out.body_format = BodyFormat::Text;
            out.body = Body::Text(text::parse(body));
        }
        None => out.set_binary(body),
    }
}

/// Reads a JSON body, classifies it and extracts its events and identity. `None` when the body does
/// not start like JSON; `Err` (with `out.error` set) when it does but does not parse.
fn json_body(body: &Bytes, out: &mut Decoded) -> Option<Result<(), ()>> {
    let text = body.slice_ref(trim_json(body));
    if !matches!(text.first(), Some(b'{' | b'[')) {
        return None;
    }
    // The one-pass reader skips the strings it does not need without checking their UTF-8; checked
    // here once, the reader then takes the text as `str` and does not check the strings it keeps again.
    let utf8 = match std::str::from_utf8(&text) {
        Ok(utf8) => utf8,
        Err(e) => {
            out.error = Some(format!("invalid JSON body: not UTF-8 ({e})"));
            return Some(Err(()));
        }
    };
    let facts = match json_facts(utf8) {
        Ok(facts) => facts,
        Err(err) => {
            out.error = Some(format!("invalid JSON body: {err}"));
            return Some(Err(()));
        }
    };
    apply_facts(facts, out);
    out.body_format = BodyFormat::Json;
    out.body = Body::Json(text);
    Some(Ok(()))
}

/// Classifies a JSON body by what it says and takes its events and identity.
fn apply_facts(facts: JsonFacts, out: &mut Decoded) {
    let keepalive_code = facts.events.iter().any(|e| {
        e.code.eq_ignore_ascii_case("KeepAlive") || e.code.eq_ignore_ascii_case("Heartbeat")
    });
    out.kind = if facts.keepalive_method || keepalive_code {
        Kind::Keepalive
    } else if facts.xm_log {
        Kind::Log
    } else if !facts.events.is_empty() {
        Kind::Alarm
    } else if !facts.has_method && facts.has_result {
        Kind::Reply
    } else if facts.has_method {
        Kind::Request
    } else {
        Kind::Unknown
    };
    // Kept for now; `decode` drops it unless the frame ends up a keepalive or a reply.
    out.keepalive_period = facts.keepalive_period;
    out.events = facts.events;
    merge(&mut out.device, facts.device);
}

/// XM: message 1508 is the alarm-center push, 1006 a keepAlive; every body is JSON in practice.
fn xm_body(body: &Bytes, out: &mut Decoded) {
    generic_body(body, out);
    match out.command.and_then(|c| u16::try_from(c).ok()) {
        Some(xm::MSG_KEEPALIVE) => out.kind = Kind::Keepalive,
        Some(xm::MSG_ALARM_CENTER)
            if out.body_format == BodyFormat::Json
                && !matches!(out.kind, Kind::Keepalive | Kind::Log) =>
        {
            out.kind = Kind::Alarm;
        }
        _ => {}
    }
}

/// An HTTP request: its head, identity in its header fields, and its body read like any JSON body.
/// A body that is not JSON (form-encoded, text) is kept with an error and yields no event.
fn http_request(frame: &Frame) -> Decoded {
    let mut out = Decoded::new(None, Header::None);
    let Some(header) = http::Header::parse(frame.header()) else {
        out.error = Some(frame.error.as_ref().map_or_else(
            || "invalid HTTP request head".to_owned(),
            ToString::to_string,
        ));
        out.set_binary(&frame.bytes);
        return out;
    };
    for (name, value) in &header.headers {
        header_identity(name, value, &mut out.device);
    }
    let raw_body = frame.bytes.slice(frame.header_len.min(frame.bytes.len())..);
    let chunked = header.is_chunked();
    let path_says_keepalive = {
        let path = header.path.to_ascii_lowercase();
        path.contains("keepalive") || path.contains("heartbeat")
    };
    let content_type = header.get("content-type").unwrap_or("").to_owned();
    out.header = Header::Http(header);
    if let Some(error) = &frame.error {
        out.error = Some(error.to_string());
        if !raw_body.is_empty() {
            out.set_binary(&raw_body);
        }
        return out;
    }
    let body = if chunked {
        match http::dechunk(&raw_body) {
            Some(body) => body,
            None => {
                out.error = Some("chunked body does not decode".into());
                out.set_binary(&raw_body);
                return out;
            }
        }
    } else {
        raw_body
    };
    let device = std::mem::take(&mut out.device);
    match json_body(&body, &mut out) {
        Some(Ok(())) => {}
        Some(Err(())) => out.set_binary(&body),
        None if body.iter().all(u8::is_ascii_whitespace) => {}
        None => {
            let form = content_type
                .to_ascii_lowercase()
                .contains("x-www-form-urlencoded");
            if form {
                out.body_format = BodyFormat::Text;
                out.body = Body::Text(
                    form_urlencoded::parse(&body)
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect(),
                );
            } else if text::looks_like_text(&body) {
                out.body_format = BodyFormat::Text;
                out.body = Body::Text(text::parse(&body));
            } else {
                out.set_binary(&body);
            }
            let shown = if content_type.is_empty() {
                "none"
            } else {
                content_type.as_str()
            };
            out.error = Some(format!(
                "HTTP body is not JSON (Content-Type: {shown}): kept, no events read"
            ));
        }
    }
    // Identity in the header fields fills what the body did not say.
    let from_body = std::mem::replace(&mut out.device, device);
    out.device.serial = from_body.serial.or(out.device.serial.take());
    out.device.mac = from_body.mac.or(out.device.mac.take());
    out.device.ip = from_body.ip.or(out.device.ip.take());
    out.device.domain = from_body.domain.or(out.device.domain.take());
    if out.kind == Kind::Unknown {
        if !out.events.is_empty() {
            out.kind = Kind::Alarm;
        } else if path_says_keepalive {
            out.kind = Kind::Keepalive;
        } else if out.body_format == BodyFormat::None {
            out.kind = Kind::Request;
        }
    }
    if !matches!(out.kind, Kind::Keepalive | Kind::Reply) {
        out.keepalive_period = None;
    }
    out
}

/// Serial or MAC in a header field (`X-Serial-Number`, `SerialNo`, `X-MAC`, …).
fn header_identity(name: &str, value: &str, device: &mut DeviceInfo) {
    let mut key = name.to_ascii_lowercase();
    if let Some(rest) = key.strip_prefix("x-") {
        key = rest.to_owned();
    }
    key.retain(|c| c != '-' && c != '_');
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    match key_of(&key) {
        Key::Serial if device.serial.is_none() => device.serial = Some(value.to_owned()),
        Key::Mac if device.mac.is_none() => device.mac = Some(value.to_owned()),
        _ => {}
    }
}
