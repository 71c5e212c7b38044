//! The stable JSON shape of one decoded frame, shared by `alarm-center decode` and the HTTP API.
//! See docs/protocol.md, "Output schema".

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::frame::Frame;
use crate::session::{Body, Decoded, Header};

/// Where a frame came from, when known (pcap, multi-stream hex, a live connection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    /// 1-based number of the stream in its input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Sender `ip:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Receiver `ip:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// Capture or receive time of the packet that completed the frame, RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
}

/// One frame with its interpretation, serialised as one JSON object.
#[derive(Debug, Clone, Copy)]
pub struct FrameRecord<'a> {
    /// The frame as cut from the stream.
    pub frame: &'a Frame,
    /// What the session made of it.
    pub decoded: &'a Decoded,
    /// Its origin, if known.
    pub stream: Option<&'a StreamInfo>,
    /// Also output the frame's bytes as `"raw": "<hex>"`.
    pub include_raw: bool,
}

/// Lower-case hex of `bytes`, no separators.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Serialises a body per the schema: `{"mask":N}`, a text object, the JSON value, `{"hex":…}`.
struct BodyJson<'a>(&'a Body);

impl Serialize for BodyJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Body::None => serializer.serialize_none(),
            Body::Mask { mask, more } => {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("mask", mask)?;
                if !more.is_empty() {
                    map.serialize_entry("more", more)?;
                }
                map.end()
            }
            Body::Text(pairs) => {
                let mut map = serializer.serialize_map(None)?;
                for (i, (key, value)) in pairs.iter().enumerate() {
                    // A repeated key keeps its first value; the raw bytes keep all of them.
                    if !pairs[..i].iter().any(|(k, _)| k == key) {
                        map.serialize_entry(key, value)?;
                    }
                }
                map.end()
            }
            Body::Json(text) => {
                // The body was read as JSON when decoded; a value serde_json cannot hold (a number
                // such as 1e999) is printed as a string rather than failing the whole record.
                if serde_json::from_slice::<serde_json::Value>(text).is_err() {
                    return serializer.serialize_str(&String::from_utf8_lossy(text));
                }
                let minified = crate::event::minify_json(text);
                match serde_json::value::RawValue::from_string(minified) {
                    Ok(raw) => raw.serialize(serializer),
                    Err(_) => serializer.serialize_str(&String::from_utf8_lossy(text)),
                }
            }
            Body::Binary(bytes) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("hex", &hex(bytes))?;
                map.end()
            }
        }
    }
}

impl Serialize for FrameRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (frame, d) = (self.frame, self.decoded);
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("offset", &frame.offset)?;
        map.serialize_entry("length", &frame.len())?;
        map.serialize_entry("protocol", &frame.protocol)?;
        map.serialize_entry("command", &d.command)?;
        map.serialize_entry("kind", &d.kind)?;
        map.serialize_entry("body_format", &d.body_format)?;
        match &d.header {
            Header::None => map.serialize_entry("header", &serde_json::Map::new())?,
            header => map.serialize_entry("header", header)?,
        }
        if !matches!(d.body, Body::None) {
            map.serialize_entry("body", &BodyJson(&d.body))?;
        }
        map.serialize_entry("events", &d.events)?;
        if !d.device.is_empty() {
            map.serialize_entry("device", &d.device)?;
        }
        if let Some(fragment) = &d.fragment {
            map.serialize_entry("fragment", fragment)?;
        }
        if let Some(period) = d.keepalive_period {
            map.serialize_entry("keepalive_period", &period)?;
        }
        if let Some(stream) = self.stream {
            map.serialize_entry("stream", stream)?;
        }
        if let Some(error) = &d.error {
            map.serialize_entry("error", error)?;
        }
        if self.include_raw {
            map.serialize_entry("raw", &hex(&frame.bytes))?;
        }
        map.end()
    }
}
