//! A frame as cut from the byte stream by the [`Decoder`](crate::Decoder), before interpretation.

use std::sync::Mutex;

use bytes::Bytes;
use serde::Serialize;

use crate::json_body::JsonFacts;

/// Which wire variant a frame was recognised as.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr, strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Protocol {
    /// Dahua DVRIP: 32-byte binary header, command byte at offset 0, body length at offset 4.
    Dvrip,
    /// Dahua DHIP: `20 00 00 00 'DHIP'`, 32-byte header, JSON-RPC body.
    Dhip,
    /// XM/HiSilicon ("Sofia"): `FF 01`, 20-byte header, JSON body.
    Xm,
    /// A bare JSON object with no binary header.
    Json,
    /// An HTTP/1.x request (Dahua's HTTP Alarm Center mode): the head is the "header", the body follows.
    Http,
    /// Bytes that are no recognisable frame; kept verbatim.
    Junk,
}

impl Protocol {
    /// Every protocol, in declaration order (`protocol as usize` is its position).
    pub const ALL: &'static [Protocol] = <Protocol as strum::VariantArray>::VARIANTS;

    /// The lower-case name used in the JSON output and in metrics labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why a frame is not a clean, whole frame. The bytes are kept in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bytes that start no known frame; decoding resumed at the next plausible frame start.
    #[error("unrecognized bytes")]
    Unrecognized,
    /// The header declared a frame larger than the configured maximum; only the first
    /// `kept` bytes were kept and the rest of the declared length was skipped unread.
    #[error(
        "oversized: declared frame length {declared} bytes exceeds the maximum of {max} bytes"
    )]
    Oversized {
        /// Whole frame length (header + body) declared by the header, in bytes.
        declared: u64,
        /// The configured maximum frame size, in bytes.
        max: usize,
    },
    /// A frame that grew past the maximum without declaring its length (an HTTP head that never ends,
    /// a chunked body): the first `max` bytes are kept; what follows is decoded as whatever it looks like.
    #[error("oversized: longer than the maximum frame of {max} bytes (no length declared)")]
    TooLong {
        /// The configured maximum frame size, in bytes.
        max: usize,
    },
    /// A frame whose framing itself is invalid (an HTTP request head that does not parse, a bad
    /// `Content-Length` or chunk size): the bytes up to where it could be cut are kept.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The stream ended (or had a gap) inside a frame.
    #[error("incomplete: stream ended {}", if *need == 0 { format!("after {have} bytes, before the frame's end") } else { format!("after {have} of {need} bytes") })]
    Incomplete {
        /// Bytes received.
        have: usize,
        /// Bytes the header announced (0 = unknown: a JSON object that never closed, an HTTP request
        /// whose head or chunked body never ended).
        need: usize,
    },
}

impl FrameError {
    /// A short stable label for metrics (`decode_errors_total{cause=…}`).
    pub fn cause(&self) -> &'static str {
        match self {
            FrameError::Unrecognized => "unrecognized",
            FrameError::Oversized { .. } => "oversized",
            FrameError::Incomplete { .. } => "incomplete",
            FrameError::Malformed(_) => "malformed",
            FrameError::TooLong { .. } => "oversized",
        }
    }
}

/// One frame cut from a stream: the exact bytes received plus where its body starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the first byte of this frame in its stream (bytes since the stream began).
    pub offset: u64,
    /// The frame's bytes exactly as received (header and body; truncated for oversized frames).
    pub bytes: Bytes,
    /// The variant the framing recognised.
    pub protocol: Protocol,
    /// Length of the binary header (for HTTP: the request head) in bytes (0 for bare JSON and junk);
    /// the body is `bytes[header_len..]`.
    pub header_len: usize,
    /// Set when the frame is not whole and clean.
    pub error: Option<FrameError>,
    /// What a bare JSON object says, when the decoder read it while finding its end (the session takes
    /// it instead of reading the object a second time).
    pub(crate) parsed: ParsedJson,
}

/// What the decoder read from a bare JSON frame, for the session to take once. Not part of the frame's
/// value: equal whatever it holds, and a clone starts empty (its session reads the bytes itself).
/// What was read is tied to the bytes it was read from (their address and length): a frame whose public
/// fields were changed since gets read again from what it holds now.
#[derive(Default)]
pub(crate) struct ParsedJson(Mutex<Option<(Box<JsonFacts>, usize, usize)>>);

impl ParsedJson {
    pub(crate) fn new(facts: JsonFacts, read_from: &[u8]) -> ParsedJson {
        let at = read_from.as_ptr() as usize;
        ParsedJson(Mutex::new(Some((Box::new(facts), at, read_from.len()))))
    }

    /// Takes what was read, if it is still there and `body` is still the bytes it was read from.
    pub(crate) fn take(&self, body: &[u8]) -> Option<Box<JsonFacts>> {
        let (facts, at, len) = self.0.try_lock().ok()?.take()?;
        (body.as_ptr() as usize == at && body.len() == len).then_some(facts)
    }
}

impl Clone for ParsedJson {
    fn clone(&self) -> Self {
        ParsedJson::default()
    }
}

impl PartialEq for ParsedJson {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ParsedJson {}

impl std::fmt::Debug for ParsedJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedJson")
    }
}

impl Frame {
    /// The body: everything after the binary header.
    pub fn body(&self) -> &[u8] {
        self.bytes.get(self.header_len..).unwrap_or(&[])
    }

    /// The binary header (empty for bare JSON and junk).
    pub fn header(&self) -> &[u8] {
        &self.bytes[..self.header_len.min(self.bytes.len())]
    }

    /// Number of bytes this frame occupies in the stream as kept (may be less than declared when oversized).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for a frame with no bytes (never produced by the decoder).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A whole frame of `protocol` made by hand (tests): `bytes` at offset 0, the first `header_len` of
    /// them its header, no error.
    #[cfg(test)]
    pub(crate) fn whole(protocol: Protocol, bytes: Vec<u8>, header_len: usize) -> Frame {
        Frame {
            offset: 0,
            bytes: bytes.into(),
            protocol,
            header_len,
            error: None,
            parsed: Default::default(),
        }
    }
}

/// Reads a little-endian `u32` at `at`; `None` when out of range.
pub(crate) fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian `u16` at `at`; `None` when out of range.
pub(crate) fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod name_tests {
    use crate::{BodyFormat, Kind, Protocol};

    #[test]
    fn enum_names_match_their_serialised_form() {
        use Protocol::*;
        for p in [Dvrip, Dhip, Xm, Json, Http, Junk] {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        for k in [
            Kind::Alarm,
            Kind::Keepalive,
            Kind::Report,
            Kind::Reply,
            Kind::Log,
            Kind::Request,
            Kind::Unknown,
        ] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        for b in [
            BodyFormat::Mask,
            BodyFormat::Text,
            BodyFormat::Json,
            BodyFormat::Binary,
            BodyFormat::None,
        ] {
            assert_eq!(
                serde_json::to_string(&b).unwrap(),
                format!("\"{}\"", b.as_str())
            );
        }
        assert_eq!(Protocol::Dvrip.as_str(), "dvrip");
        assert_eq!(Kind::Keepalive.as_str(), "keepalive");
    }
}
