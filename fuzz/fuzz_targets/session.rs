//! Decoder + one `Session` over arbitrary bytes, and the JSON output of every frame.
//!
//! Input layout: `[sel, stream...]`; `sel` = 0xFF uses the default maximum frame size (64 KiB), any
//! other value `64 + 16 * sel` bytes.
//!
//! Asserts, for every frame:
//! - its `FrameRecord` (raw bytes included) serialises with serde_json, the output parses back as a
//!   JSON object, and `offset`, `length`, `protocol`, `kind`, `command`, `raw`, `events` and `error`
//!   agree with the frame and its `Decoded`;
//! - a JSON body is output as the JSON value it was decoded from; a mask body as `{"mask": N, ...}`;
//! - every event index of a DVRIP 0x69 frame (mask or text body) lies in `0 .. 32 * 256 + 32`;
//! - a frame with a framing error keeps its bytes as a binary body, has no events and reports the error;
//! - a frame with events is not of kind `unknown`;
//! - the session's mask table has one entry per (alarm type, channel group) and never stores the
//!   self-report type 120.
#![no_main]

use alarm_center_proto::session::{Body, BodyFormat};
use alarm_center_proto::{
    Decoded, Decoder, DecoderConfig, Frame, FrameRecord, Kind, Protocol, Session, DEFAULT_MAX_FRAME,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Largest event index a 0x69 frame can name: bit 31 of channel group 255 + 1 word.
const MAX_EVENT_INDEX: i64 = 32 * 256 + 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(frame: &Frame, decoded: &Decoded) {
    let record = FrameRecord {
        frame,
        decoded,
        stream: None,
        include_raw: true,
    };
    let text = serde_json::to_string(&record)
        .unwrap_or_else(|e| panic!("FrameRecord does not serialise: {e}\nframe: {frame:?}"));
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("FrameRecord output is not valid JSON: {e}\n{text}"));
    let obj = value
        .as_object()
        .unwrap_or_else(|| panic!("FrameRecord output is not an object: {text}"));

    let field = |name: &str| {
        obj.get(name)
            .unwrap_or_else(|| panic!("FrameRecord output has no `{name}`: {text}"))
    };
    assert_eq!(
        field("offset").as_u64(),
        Some(frame.offset),
        "offset: {text}"
    );
    assert_eq!(
        field("length").as_u64(),
        Some(frame.len() as u64),
        "length: {text}"
    );
    assert_eq!(
        field("protocol").as_str(),
        Some(frame.protocol.as_str()),
        "protocol: {text}"
    );
    assert_eq!(
        field("kind").as_str(),
        Some(decoded.kind.as_str()),
        "kind: {text}"
    );
    assert_eq!(
        field("command").as_u64(),
        decoded.command.map(u64::from),
        "command: {text}"
    );
    assert!(field("body_format").is_string(), "body_format: {text}");
    assert!(field("header").is_object(), "header: {text}");
    assert_eq!(
        field("raw").as_str(),
        Some(hex(&frame.bytes).as_str()),
        "raw: {text}"
    );
    assert_eq!(
        obj.get("error").and_then(Value::as_str),
        decoded.error.as_deref(),
        "error: {text}"
    );

    let events = field("events")
        .as_array()
        .unwrap_or_else(|| panic!("events is not an array: {text}"));
    assert_eq!(events.len(), decoded.events.len(), "event count: {text}");
    for (out, event) in events.iter().zip(&decoded.events) {
        assert_eq!(
            out["code"].as_str(),
            Some(&*event.code),
            "event code: {text}"
        );
        assert_eq!(
            out["action"].as_str(),
            Some(event.action.as_str()),
            "event action: {text}"
        );
        assert_eq!(
            out.get("index").and_then(Value::as_i64),
            event.index,
            "event index: {text}"
        );
    }

    match &decoded.body {
        Body::None => assert!(obj.get("body").is_none(), "body of Body::None: {text}"),
        Body::Json(raw) => match serde_json::from_slice::<Value>(raw) {
            Ok(parsed) => assert_eq!(field("body"), &parsed, "JSON body output differs from the body: {text}"),
            // Valid JSON grammar whose numbers serde_json cannot hold (1e999): printed as a string.
            Err(e) if e.to_string().contains("number out of range") => {
                assert!(field("body").is_string(), "out-of-range body not printed as a string: {text}")
            }
            Err(e) => panic!("Body::Json that does not parse ({e}): {frame:?}"),
        },
        Body::Mask { mask, more } => {
            assert_eq!(
                field("body")["mask"].as_u64(),
                Some(u64::from(*mask)),
                "mask: {text}"
            );
            if !more.is_empty() {
                assert_eq!(
                    field("body")["more"].as_array().map(Vec::len),
                    Some(more.len()),
                    "more: {text}"
                );
            }
        }
        Body::Text(_) => assert!(field("body").is_object(), "text body: {text}"),
        Body::Binary(bytes) => assert_eq!(
            field("body")["hex"].as_str(),
            Some(hex(bytes).as_str()),
            "binary body: {text}"
        ),
    }

    if frame.error.is_some() {
        assert!(
            decoded.error.is_some(),
            "framing error not reported: {frame:?}"
        );
        assert!(
            decoded.events.is_empty(),
            "events from a broken frame: {frame:?}"
        );
        assert!(
            matches!(decoded.body_format, BodyFormat::Binary | BodyFormat::None),
            "broken frame interpreted as {:?}",
            decoded.body_format
        );
    }
    if !decoded.events.is_empty() {
        assert_ne!(
            decoded.kind,
            Kind::Unknown,
            "events but kind unknown: {text}"
        );
    }

    let is_alarm_upload = frame.protocol == Protocol::Dvrip && frame.bytes.first() == Some(&0x69);
    if is_alarm_upload && matches!(decoded.body_format, BodyFormat::Mask | BodyFormat::Text) {
        for event in &decoded.events {
            let index = event
                .index
                .unwrap_or_else(|| panic!("0x69 event without index: {text}"));
            assert!(
                (0..MAX_EVENT_INDEX).contains(&index),
                "0x69 event index {index} outside 0..{MAX_EVENT_INDEX}: {text}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let max_frame = if sel == 0xFF {
        DEFAULT_MAX_FRAME
    } else {
        64 + 16 * usize::from(sel)
    };
    let mut decoder = Decoder::new(DecoderConfig { max_frame });
    let mut frames: Vec<Frame> = decoder.feed(stream).collect();
    frames.extend(decoder.finish());

    let mut session = Session::new();
    for frame in &frames {
        let decoded = session.decode(frame);
        check(frame, &decoded);
        let masks = session.masks();
        for (i, (key, _)) in masks.iter().enumerate() {
            assert_ne!(key.0, 120, "self-report stored as a mask");
            assert!(
                !masks[..i].iter().any(|(k, _)| k == key),
                "duplicate mask entry {key:?}"
            );
        }
    }
});
