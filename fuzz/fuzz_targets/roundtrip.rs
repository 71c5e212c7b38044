//! Encode → decode → interpret round trip over a stream of frames built with `encode::*` from
//! fuzzer-chosen fields, separated by fuzzer-chosen padding.
//!
//! Frames: DVRIP 0x69 mask (type, group, mask), DVRIP 0x69 text (type, group, optional `alarm channel`,
//! `Key:Value` pairs), DVRIP 0xF6 JSON, DHIP, XM and bare JSON (a JSON object built from fuzzer bytes
//! and serialised by serde_json, so it is valid), DVRIP heartbeat, and HTTP requests (`POST` or `PUT`,
//! a path, header fields from token / visible-ASCII alphabets, optionally `X-Serial-Number`, a JSON
//! body built like the bare JSON, sent with `Content-Length` or chunked in fuzzer-chosen chunk sizes).
//!
//! Asserts:
//! - the decoder returns exactly the encoded frames: offset, bytes (bare JSON without its trailing
//!   newline), protocol, header length (for HTTP: the request head), no error;
//! - the session reads back every header field that was encoded (exact `Header` structs; for HTTP the
//!   method, path, version and the header fields in order, including the `Content-Length` or
//!   `Transfer-Encoding` field the encoder adds), the command, the body (mask, text pairs, JSON text
//!   byte-for-byte and as a value; for chunked HTTP the de-chunked JSON), and no error;
//! - an HTTP request's events, kind, keep-alive period and identity are those of the same JSON sent as
//!   a bare JSON frame, except that a path naming keepalive/heartbeat makes an `unknown` request a
//!   keepalive and identity header fields (`X-Serial-Number`, `SerialNo`, `X-MAC`, …) fill what the
//!   body does not say;
//! - 0x69 events follow a model of the per-(type, group) mask state: start/stop per changed bit in bit
//!   order, index = bit + 32 × group, no events and no state for the self-report (type 120), disk full
//!   (type 6) as a boolean, a 64-bit text mask spilling into group + 1;
//! - kinds: 0x69 → alarm (report for type 120), heartbeat and XM 1006 → keepalive, frames with
//!   events are alarm or keepalive.
#![no_main]

use std::collections::HashMap;

use alarm_center_proto::session::{Body, BodyFormat, Header};
use alarm_center_proto::{
    dhip, dvrip, encode, http, xm, Action, Decoded, Decoder, DecoderConfig, Frame, Kind, Protocol,
    Session,
};
use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};

const MAX_FRAME: usize = 1 << 22;
const MAX_ITEMS: usize = 24;
const MAX_DEPTH: u32 = 4;

const KEYS: &[&str] = &[
    "Code",
    "Action",
    "Index",
    "Data",
    "method",
    "params",
    "eventList",
    "result",
    "Event",
    "Status",
    "Channel",
    "SerialID",
    "Address",
    "Time",
    "LocaleTime",
    "StartTime",
    "timeout",
    "KeepAliveInterval",
    "MAC",
    "IP",
    "Domain",
    "id",
    "session",
];
const WORDS: &[&str] = &[
    "Start",
    "Stop",
    "Pulse",
    "State",
    "VideoMotion",
    "AlarmLocal",
    "HumanDetect",
    "KeepAlive",
    "client.notifyEventStream",
    "global.keepAlive",
    "0x0A01A8C0",
    "2024-01-27 21:10:58",
    "",
];
const PADDING: &[u8] = b" \t\r\n\0";

/// HTTP request targets; others are `/` + visible ASCII.
const PATHS: &[&str] = &[
    http::NOTIFY_PATH,
    "/",
    "/cgi-bin/KeepAlive",
    "/heartbeat?id=1",
    "*",
    "http://192.0.2.1:15002/cgi-bin/NotifyEvent?a=b&c=%20",
];
/// HTTP header field names; others are built from `TOKEN`.
const HEADER_NAMES: &[&str] = &[
    "Host",
    "Content-Type",
    "X-Serial-Number",
    "SerialNo",
    "X-MAC",
    "X-Device-SN",
    "Connection",
    "Expect",
    "Authorization",
    "User-Agent",
];
/// `tchar` of RFC 9110: the bytes of a header field name.
const TOKEN: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn text(u: &mut Unstructured<'_>, known: &[&str]) -> Result<String> {
    if u.ratio(1, 2)? {
        Ok((*u.choose(known)?).to_owned())
    } else {
        String::arbitrary(u)
    }
}

fn json_value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let top = if depth >= MAX_DEPTH { 5 } else { 7 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        2 => Value::from(i64::arbitrary(u)?),
        3 => Value::from(u64::arbitrary(u)?),
        4 => Number::from_f64(f64::arbitrary(u)?).map_or(Value::Null, Value::Number),
        5 => Value::String(text(u, WORDS)?),
        6 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| json_value(u, depth + 1))
                    .collect::<Result<_>>()?,
            )
        }
        _ => Value::Object(json_object(u, depth + 1)?),
    })
}

fn json_object(u: &mut Unstructured<'_>, depth: u32) -> Result<Map<String, Value>> {
    let n = u.int_in_range(0..=6)?;
    let mut map = Map::new();
    for _ in 0..n {
        let key = text(u, KEYS)?;
        let value = json_value(u, depth)?;
        map.insert(key, value);
    }
    Ok(map)
}

/// A JSON object text, valid by construction.
fn json_text(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(Value::Object(json_object(u, 0)?).to_string())
}

/// Up to `max` bytes of `alphabet`, at least `min`.
fn from_alphabet(
    u: &mut Unstructured<'_>,
    alphabet: &[u8],
    min: usize,
    max: usize,
) -> Result<String> {
    let n = u.int_in_range(min..=max)?;
    (0..n)
        .map(|_| u.choose(alphabet).map(|&b| char::from(b)))
        .collect()
}

/// Visible ASCII and spaces, without leading or trailing space (a header field value as sent).
fn visible_text(u: &mut Unstructured<'_>, max: usize) -> Result<String> {
    const VISIBLE: &[u8] = b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
    Ok(from_alphabet(u, VISIBLE, 0, max)?
        .trim_matches(' ')
        .to_owned())
}

fn http_item(u: &mut Unstructured<'_>) -> Result<Item> {
    let method = *u.choose(&["POST", "PUT"])?;
    let path = if u.ratio(1, 2)? {
        (*u.choose(PATHS)?).to_owned()
    } else {
        // `!`..=`~`: what httparse accepts in a request target (no space)
        let visible: Vec<u8> = (b'!'..=b'~').collect();
        format!("/{}", from_alphabet(u, &visible, 0, 32)?)
    };
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let mut name = if u.ratio(1, 2)? {
            (*u.choose(HEADER_NAMES)?).to_owned()
        } else {
            from_alphabet(u, TOKEN, 1, 16)?
        };
        // The encoder adds the framing field itself.
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            name.insert_str(0, "X-");
        }
        let value = if u.ratio(1, 2)? {
            (*u.choose(WORDS)?).to_owned()
        } else {
            visible_text(u, 40)?
        };
        headers.push((name, value));
    }
    if u.ratio(1, 3)? {
        let serial = from_alphabet(u, b"0123456789ABCDEFabcdef-", 1, 20)?;
        let at = u.int_in_range(0..=headers.len())?;
        headers.insert(at, ("X-Serial-Number".to_owned(), serial));
    }
    let json = json_text(u)?;
    let chunk = match u.int_in_range(0..=2)? {
        0 => None,
        1 => Some(u.int_in_range(1..=16)?),
        _ => Some(usize::from(u16::arbitrary(u)?) + 1),
    };
    Ok(Item::Http {
        method,
        path,
        headers,
        json,
        chunk,
    })
}

#[derive(Debug)]
enum Item {
    Mask {
        alarm_type: u8,
        group: u8,
        mask: u32,
    },
    Text {
        alarm_type: u8,
        group: u8,
        channel: Option<String>,
        pairs: Vec<(String, String)>,
    },
    DvripJson {
        request_id: u32,
        session_id: u32,
        json: String,
    },
    Dhip {
        session_id: u32,
        request_id: u32,
        json: String,
    },
    Xm {
        message_id: u16,
        session_id: u32,
        sequence: u32,
        json: String,
    },
    Bare {
        json: String,
    },
    Heartbeat,
    Http {
        method: &'static str,
        path: String,
        headers: Vec<(String, String)>,
        json: String,
        /// `None`: `Content-Length`; `Some(n)`: chunked in chunks of at most `n` bytes.
        chunk: Option<usize>,
    },
}

fn alarm_type(u: &mut Unstructured<'_>) -> Result<u8> {
    // Favour the types with special rules: 6 disk full (boolean), 120 report, known codes.
    Ok(match u.int_in_range(0..=3)? {
        0 => 6,
        1 => 120,
        2 => u.int_in_range(1..=11)?,
        _ => u8::arbitrary(u)?,
    })
}

fn group(u: &mut Unstructured<'_>) -> Result<u8> {
    Ok(if u.ratio(1, 2)? {
        u.int_in_range(0..=2)?
    } else {
        u8::arbitrary(u)?
    })
}

fn item(u: &mut Unstructured<'_>) -> Result<Item> {
    Ok(match u.int_in_range(0..=6)? {
        0 => Item::Mask {
            alarm_type: alarm_type(u)?,
            group: group(u)?,
            mask: u32::arbitrary(u)?,
        },
        1 => {
            let channel = if u.ratio(3, 4)? {
                let mask = if u.ratio(1, 2)? {
                    u64::from(u32::arbitrary(u)?)
                } else {
                    u64::arbitrary(u)?
                };
                let pad = if bool::arbitrary(u)? { " " } else { "" };
                Some(format!("{pad}{mask}{pad}"))
            } else {
                None
            };
            let n = u.int_in_range(0..=4)?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                let key: String = text(
                    u,
                    &["Time", "Domain name", "Global IP", "DeAlarm index", "x"],
                )?
                .chars()
                .filter(|c| !matches!(c, ':' | '\r' | '\n'))
                .collect();
                let value: String = text(u, WORDS)?
                    .chars()
                    .filter(|c| !matches!(c, '\r' | '\n'))
                    .collect();
                pairs.push((key, value));
            }
            Item::Text {
                alarm_type: alarm_type(u)?,
                group: group(u)?,
                channel,
                pairs,
            }
        }
        2 => Item::DvripJson {
            request_id: u32::arbitrary(u)?,
            session_id: u32::arbitrary(u)?,
            json: json_text(u)?,
        },
        3 => Item::Dhip {
            session_id: u32::arbitrary(u)?,
            request_id: u32::arbitrary(u)?,
            json: json_text(u)?,
        },
        4 => Item::Xm {
            message_id: match u.int_in_range(0..=2)? {
                0 => xm::MSG_ALARM_CENTER,
                1 => xm::MSG_KEEPALIVE,
                _ => u16::arbitrary(u)?,
            },
            session_id: u32::arbitrary(u)?,
            sequence: u32::arbitrary(u)?,
            json: json_text(u)?,
        },
        5 => Item::Bare {
            json: json_text(u)?,
        },
        // One more choice here (not a wider range above), so that inputs written before the HTTP
        // item keep their meaning; a heartbeat at the end of the input stays a heartbeat.
        _ => match u.int_in_range(0..=2)? {
            0 => Item::Heartbeat,
            _ => http_item(u)?,
        },
    })
}

/// The text pairs as encoded: `alarm channel` first when present.
fn text_pairs(channel: &Option<String>, pairs: &[(String, String)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = channel
        .iter()
        .map(|c| ("alarm channel".to_owned(), c.clone()))
        .collect();
    all.extend(pairs.iter().cloned());
    // A body whose first non-blank byte is `{` or `[` is read as JSON first; keep text bodies text.
    if let Some((key, _)) = all.first_mut() {
        if matches!(
            key.trim_start_matches(|c: char| c.is_ascii_whitespace())
                .as_bytes()
                .first(),
            Some(b'{' | b'[')
        ) {
            key.insert(0, 'k');
        }
    }
    all
}

fn encode_item(item: &Item) -> Vec<u8> {
    match item {
        Item::Mask {
            alarm_type,
            group,
            mask,
        } => encode::dvrip_mask(*alarm_type, *group, *mask),
        Item::Text {
            alarm_type,
            group,
            channel,
            pairs,
        } => {
            let all = text_pairs(channel, pairs);
            let refs: Vec<(&str, &str)> =
                all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            encode::dvrip_text(*alarm_type, *group, &refs)
        }
        Item::DvripJson {
            request_id,
            session_id,
            json,
        } => encode::dvrip_json(*request_id, *session_id, json),
        Item::Dhip {
            session_id,
            request_id,
            json,
        } => encode::dhip(*session_id, *request_id, json),
        Item::Xm {
            message_id,
            session_id,
            sequence,
            json,
        } => encode::xm(*message_id, *session_id, *sequence, json),
        Item::Bare { json } => encode::bare_json(json),
        Item::Heartbeat => encode::dvrip_heartbeat(),
        Item::Http {
            method,
            path,
            headers,
            json,
            chunk,
        } => {
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match chunk {
                None => encode::http_request(method, path, &refs, json.as_bytes()),
                Some(n) => encode::http_chunked(method, path, &refs, json.as_bytes(), *n),
            }
        }
    }
}

/// The header fields of an encoded HTTP item in wire order: the item's, then the framing field.
fn http_fields(
    headers: &[(String, String)],
    json: &str,
    chunk: Option<usize>,
) -> Vec<(String, String)> {
    let mut fields = headers.to_vec();
    fields.push(match chunk {
        None => ("Content-Length".to_owned(), json.len().to_string()),
        Some(_) => ("Transfer-Encoding".to_owned(), "chunked".to_owned()),
    });
    fields
}

/// Serial and MAC named by header fields: the first non-blank value of a field whose name, lower-cased,
/// without an `x-` prefix and without `-`/`_`, is a serial or MAC key of the JSON bodies.
fn header_identity(fields: &[(String, String)]) -> (Option<String>, Option<String>) {
    const SERIAL: &[&str] = &[
        "serialno",
        "serialnumber",
        "serialid",
        "serial",
        "deviceserial",
        "devicesn",
        "sn",
    ];
    const MAC: &[&str] = &["mac", "macaddress", "macaddr"];
    let (mut serial, mut mac) = (None, None);
    for (name, value) in fields {
        let mut key = name.to_ascii_lowercase();
        if let Some(rest) = key.strip_prefix("x-") {
            key = rest.to_owned();
        }
        key.retain(|c| c != '-' && c != '_');
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if SERIAL.contains(&key.as_str()) && serial.is_none() {
            serial = Some(value.to_owned());
        } else if MAC.contains(&key.as_str()) && mac.is_none() {
            mac = Some(value.to_owned());
        }
    }
    (serial, mac)
}

/// What a fresh session makes of `json` sent as a bare JSON frame.
fn bare_reference(json: &str) -> Decoded {
    let mut decoder = Decoder::new(DecoderConfig {
        max_frame: MAX_FRAME,
    });
    let mut frames: Vec<Frame> = decoder.feed(json.as_bytes()).collect();
    frames.extend(decoder.finish());
    assert_eq!(frames.len(), 1, "bare reference of {json}: {frames:?}");
    Session::new().decode(&frames[0])
}

/// Model of the session's 0x69 mask state.
#[derive(Default)]
struct Model {
    masks: HashMap<(u8, u8), u32>,
}

impl Model {
    /// Expected (code, action, index) of the events of `words` for `(alarm_type, group)`.
    fn apply(&mut self, alarm_type: u8, group: u8, words: &[u32]) -> Vec<(String, Action, i64)> {
        let mut out = Vec::new();
        if alarm_type == dvrip::ALARM_TYPE_REPORT {
            return out;
        }
        let code = dvrip::alarm_code(alarm_type)
            .map_or_else(|| format!("DvripAlarmType{alarm_type}"), str::to_owned);
        for (j, &word) in words.iter().enumerate() {
            let g = usize::from(group) + j;
            if g > 255 {
                break;
            }
            let g = g as u8;
            let new = if alarm_type == dvrip::ALARM_TYPE_DISK_FULL {
                u32::from(word != 0)
            } else {
                word
            };
            let old = self.masks.insert((alarm_type, g), new).unwrap_or(0);
            for bit in 0..32 {
                if (old ^ new) >> bit & 1 == 1 {
                    let action = if new >> bit & 1 == 1 {
                        Action::Start
                    } else {
                        Action::Stop
                    };
                    out.push((code.clone(), action, i64::from(bit) + 32 * i64::from(g)));
                }
            }
        }
        out
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

fn alarm_header(alarm_type: u8, group: u8, format: u8, body_length: u32) -> dvrip::Header {
    dvrip::Header {
        byte3: 0,
        body_length,
        alarm_type: Some(alarm_type),
        channel_group: Some(group),
        body_format_byte: Some(format),
        request_id: None,
        flags: None,
        total_length: None,
        session_id: None,
        other: None,
    }
}

fn check_json_body(i: usize, decoded: &alarm_center_proto::Decoded, json: &str) {
    match &decoded.body {
        Body::Json(text) => assert!(
            text[..] == *json.as_bytes(),
            "item {i}: JSON body text {:?} differs from the encoded {json:?}",
            String::from_utf8_lossy(text)
        ),
        other => panic!(
            "item {i}: JSON body decoded as {other:?} (error {:?}): {json}",
            decoded.error
        ),
    }
    assert_eq!(
        decoded.body_format,
        BodyFormat::Json,
        "item {i}: body_format"
    );
    let expected: Value = serde_json::from_str(json).expect("serde_json output parses");
    assert_eq!(
        decoded.body.json_value(),
        Some(expected),
        "item {i}: JSON value"
    );
    if !decoded.events.is_empty() {
        assert!(
            matches!(decoded.kind, Kind::Alarm | Kind::Keepalive),
            "item {i}: events but kind {:?}",
            decoded.kind
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut items = Vec::new();
    let mut stream = Vec::new();
    // (offset, frame bytes, protocol, header_len) expected of each item
    let mut expected = Vec::new();
    while !u.is_empty() && items.len() < MAX_ITEMS {
        let Ok(item) = item(&mut u) else { break };
        let bytes = encode_item(&item);
        let (protocol, header_len, frame_len) = match &item {
            Item::Mask { .. } | Item::Text { .. } | Item::DvripJson { .. } | Item::Heartbeat => {
                (Protocol::Dvrip, dvrip::HEADER_LEN, bytes.len())
            }
            Item::Dhip { .. } => (Protocol::Dhip, dhip::HEADER_LEN, bytes.len()),
            Item::Xm { .. } => (Protocol::Xm, xm::HEADER_LEN, bytes.len()),
            // the trailing newline is padding, not part of the frame
            Item::Bare { .. } => (Protocol::Json, 0, bytes.len() - 1),
            // the head ends at the first blank line: no field value holds CR or LF
            Item::Http { .. } => {
                let head = bytes
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .expect("encoded HTTP head ends with a blank line")
                    + 4;
                (Protocol::Http, head, bytes.len())
            }
        };
        if bytes.len() > MAX_FRAME {
            return;
        }
        expected.push((
            stream.len() as u64,
            bytes[..frame_len].to_vec(),
            protocol,
            header_len,
        ));
        stream.extend_from_slice(&bytes);
        items.push(item);
        let pad = u.int_in_range(0..=3).unwrap_or(0);
        for _ in 0..pad {
            stream.push(*u.choose(PADDING).unwrap_or(&b'\n'));
        }
    }

    let mut decoder = Decoder::new(DecoderConfig {
        max_frame: MAX_FRAME,
    });
    let mut frames: Vec<Frame> = decoder.feed(&stream).collect();
    frames.extend(decoder.finish());
    assert_eq!(
        frames.len(),
        items.len(),
        "frame count: items {items:?}\nframes {frames:?}"
    );
    for (i, (frame, (offset, bytes, protocol, header_len))) in
        frames.iter().zip(&expected).enumerate()
    {
        assert_eq!(frame.offset, *offset, "item {i}: offset ({:?})", items[i]);
        assert!(
            frame.bytes[..] == bytes[..],
            "item {i}: bytes ({:?}): {frame:?}",
            items[i]
        );
        assert_eq!(
            frame.protocol, *protocol,
            "item {i}: protocol ({:?})",
            items[i]
        );
        assert_eq!(
            frame.header_len, *header_len,
            "item {i}: header_len ({:?})",
            items[i]
        );
        assert_eq!(frame.error, None, "item {i}: error ({:?})", items[i]);
    }

    let mut session = Session::new();
    let mut model = Model::default();
    for (i, (item, frame)) in items.iter().zip(&frames).enumerate() {
        let decoded = session.decode(frame);
        let mut expected_events = None;
        match item {
            Item::Mask {
                alarm_type,
                group,
                mask,
            } => {
                assert_eq!(
                    decoded.command,
                    Some(u32::from(dvrip::CMD_ALARM)),
                    "item {i}: command"
                );
                assert_eq!(
                    decoded.header,
                    Header::Dvrip(alarm_header(*alarm_type, *group, 0, 4)),
                    "item {i}: header"
                );
                assert_eq!(
                    decoded.body,
                    Body::Mask {
                        mask: *mask,
                        more: vec![]
                    },
                    "item {i}: body"
                );
                assert_eq!(
                    decoded.body_format,
                    BodyFormat::Mask,
                    "item {i}: body_format"
                );
                assert_eq!(decoded.error, None, "item {i}: error");
                let kind = if *alarm_type == dvrip::ALARM_TYPE_REPORT {
                    Kind::Report
                } else {
                    Kind::Alarm
                };
                assert_eq!(decoded.kind, kind, "item {i}: kind");
                expected_events = Some(model.apply(*alarm_type, *group, &[*mask]));
            }
            Item::Text {
                alarm_type,
                group,
                channel,
                pairs,
            } => {
                let all = text_pairs(channel, pairs);
                let body_len = all
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 3)
                    .sum::<usize>();
                assert_eq!(
                    decoded.command,
                    Some(u32::from(dvrip::CMD_ALARM)),
                    "item {i}: command"
                );
                assert_eq!(
                    decoded.header,
                    Header::Dvrip(alarm_header(*alarm_type, *group, 1, body_len as u32)),
                    "item {i}: header"
                );
                let kind = if *alarm_type == dvrip::ALARM_TYPE_REPORT {
                    Kind::Report
                } else {
                    Kind::Alarm
                };
                assert_eq!(decoded.kind, kind, "item {i}: kind");
                let trimmed: Vec<(String, String)> = all
                    .iter()
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                if all.is_empty() {
                    assert_eq!(decoded.body, Body::None, "item {i}: empty text body");
                    expected_events = Some(vec![]);
                } else {
                    assert_eq!(
                        decoded.body,
                        Body::Text(trimmed.clone()),
                        "item {i}: text pairs"
                    );
                    assert_eq!(
                        decoded.body_format,
                        BodyFormat::Text,
                        "item {i}: body_format"
                    );
                    let mut events = vec![];
                    let mut error = false;
                    if let Some(value) = lookup(&trimmed, "alarm channel") {
                        match value.trim().parse::<u64>() {
                            Ok(mask) => {
                                let mut words = vec![mask as u32];
                                if mask >> 32 != 0 {
                                    words.push((mask >> 32) as u32);
                                }
                                events = model.apply(*alarm_type, *group, &words);
                            }
                            Err(_) => error = true,
                        }
                    }
                    assert_eq!(
                        decoded.error.is_some(),
                        error,
                        "item {i}: error {:?}",
                        decoded.error
                    );
                    if !events.is_empty() {
                        let time = lookup(&trimmed, "Time");
                        for event in &decoded.events {
                            assert_eq!(event.device_time.as_deref(), time, "item {i}: device_time");
                        }
                    }
                    expected_events = Some(events);
                }
            }
            Item::DvripJson {
                request_id,
                session_id,
                json,
            } => {
                let len = json.len() as u32 + 1;
                assert_eq!(
                    decoded.command,
                    Some(u32::from(dvrip::CMD_JSON)),
                    "item {i}: command"
                );
                assert_eq!(
                    decoded.header,
                    Header::Dvrip(dvrip::Header {
                        byte3: 0,
                        body_length: len,
                        alarm_type: None,
                        channel_group: None,
                        body_format_byte: None,
                        request_id: Some(*request_id),
                        flags: Some(0),
                        total_length: Some(len),
                        session_id: Some(*session_id),
                        other: None,
                    }),
                    "item {i}: header"
                );
                assert_eq!(decoded.error, None, "item {i}: error");
                check_json_body(i, &decoded, json);
            }
            Item::Dhip {
                session_id,
                request_id,
                json,
            } => {
                let len = json.len() as u32 + 1;
                assert_eq!(decoded.command, None, "item {i}: command");
                assert_eq!(
                    decoded.header,
                    Header::Dhip(dhip::Header {
                        session_id: *session_id,
                        request_id: *request_id,
                        body_length: len,
                        total_length: len,
                        reserved_20: None,
                        reserved_28: None,
                    }),
                    "item {i}: header"
                );
                assert_eq!(decoded.error, None, "item {i}: error");
                check_json_body(i, &decoded, json);
            }
            Item::Xm {
                message_id,
                session_id,
                sequence,
                json,
            } => {
                assert_eq!(
                    decoded.command,
                    Some(u32::from(*message_id)),
                    "item {i}: command"
                );
                assert_eq!(
                    decoded.header,
                    Header::Xm(xm::Header {
                        version: 1,
                        session_id: *session_id,
                        sequence: *sequence,
                        total_packets: 0,
                        current_packet: 0,
                        message_id: *message_id,
                        body_length: json.len() as u32 + 1,
                    }),
                    "item {i}: header"
                );
                assert_eq!(decoded.error, None, "item {i}: error");
                check_json_body(i, &decoded, json);
                if *message_id == xm::MSG_KEEPALIVE {
                    assert_eq!(decoded.kind, Kind::Keepalive, "item {i}: XM 1006 kind");
                }
            }
            Item::Bare { json } => {
                assert_eq!(decoded.command, None, "item {i}: command");
                assert_eq!(decoded.header, Header::None, "item {i}: header");
                assert_eq!(decoded.error, None, "item {i}: error");
                check_json_body(i, &decoded, json);
            }
            Item::Heartbeat => {
                assert_eq!(
                    decoded.command,
                    Some(u32::from(dvrip::CMD_HEARTBEAT)),
                    "item {i}: command"
                );
                assert_eq!(decoded.kind, Kind::Keepalive, "item {i}: kind");
                assert_eq!(decoded.body, Body::None, "item {i}: body");
                assert_eq!(
                    decoded.body_format,
                    BodyFormat::None,
                    "item {i}: body_format"
                );
                assert_eq!(decoded.error, None, "item {i}: error");
                assert!(decoded.events.is_empty(), "item {i}: events");
            }
            Item::Http {
                method,
                path,
                headers,
                json,
                chunk,
            } => {
                let fields = http_fields(headers, json, *chunk);
                assert_eq!(decoded.command, None, "item {i}: command");
                assert_eq!(
                    decoded.header,
                    Header::Http(http::Header {
                        method: (*method).to_owned(),
                        path: path.clone(),
                        version: "HTTP/1.1".to_owned(),
                        headers: fields.clone(),
                    }),
                    "item {i}: header"
                );
                assert_eq!(decoded.error, None, "item {i}: error");
                // The body as sent with Content-Length, or de-chunked.
                check_json_body(i, &decoded, json);
                let reference = bare_reference(json);
                assert_eq!(
                    decoded.events, reference.events,
                    "item {i}: HTTP events differ from the same JSON as bare JSON ({item:?})"
                );
                let path_says_keepalive = {
                    let p = path.to_ascii_lowercase();
                    p.contains("keepalive") || p.contains("heartbeat")
                };
                let kind = match reference.kind {
                    Kind::Unknown if path_says_keepalive => Kind::Keepalive,
                    kind => kind,
                };
                assert_eq!(decoded.kind, kind, "item {i}: kind ({item:?})");
                if kind == reference.kind {
                    assert_eq!(
                        decoded.keepalive_period, reference.keepalive_period,
                        "item {i}: keepalive_period"
                    );
                }
                let (serial, mac) = header_identity(&fields);
                let mut device = reference.device.clone();
                device.serial = device.serial.or(serial);
                device.mac = device.mac.or(mac);
                assert_eq!(decoded.device, device, "item {i}: device ({item:?})");
            }
        }
        if let Some(expected_events) = expected_events {
            let got: Vec<(String, Action, i64)> = decoded
                .events
                .iter()
                .map(|e| {
                    (
                        e.code.to_string(),
                        e.action.clone(),
                        e.index.unwrap_or(i64::MIN),
                    )
                })
                .collect();
            assert_eq!(got, expected_events, "item {i}: 0x69 events ({item:?})");
        }
    }
});
