//! Bounds on what a device's text makes of a message: topic levels and payloads. A code, an action or
//! a data field can be as long as `server.max-frame` allows (up to 16 MiB). Unbounded, a topic level
//! past 65,535 bytes cannot be encoded, and a message past the broker's limit makes it close the
//! connection; either way the sink would resend the same message forever and deliver nothing more.

use alarm_center_store::StoredEvent;
use sha2::{Digest, Sha256};

use super::session::Message;

/// Longest topic level or discovery id made from a device's text, in bytes.
pub(super) const MAX_LEVEL: usize = 100;
/// Hex digits of the hash that keeps two long levels apart.
const LEVEL_HASH: usize = 16;
/// Characters kept of each text field of an event whose message is cut.
const CUT_CHARS: usize = 256;
/// Smallest `max-message`: a cut event always fits (a dozen fields of at most 256 characters, each
/// at most 6 bytes once escaped, would need 18 KiB only if all were escaped control characters).
pub(super) const MIN_MESSAGE: usize = 16 * 1024;

/// A topic level or discovery id made of `[A-Za-z0-9_-]` only, at most [`MAX_LEVEL`] bytes: a longer
/// one keeps its first 83 characters and ends with `-` and a hash of the whole text, so that two long
/// texts still get two levels, the same on every run.
pub(super) fn slug(text: &str) -> String {
    let mut slug: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if slug.len() > MAX_LEVEL {
        // The slug is ASCII: any byte index is a character boundary.
        slug.truncate(MAX_LEVEL - LEVEL_HASH - 1);
        slug.push('-');
        let digest = Sha256::digest(text.as_bytes());
        for byte in &digest[..LEVEL_HASH / 2] {
            slug.push_str(&format!("{byte:02x}"));
        }
    }
    slug
}

/// The event as JSON (what `events --json` prints) when it is at most `max` bytes. A larger one is
/// published without its `data`, each text field cut to 256 characters, and
/// `"truncated": {"bytes": <size of the whole JSON>}`; the store keeps it whole (`GET /api/events/{id}`).
pub(super) fn event_payload(event: &StoredEvent, max: usize) -> Vec<u8> {
    let whole = serde_json::to_vec(event).unwrap_or_default();
    if whole.len() <= max {
        return whole;
    }
    let mut cut = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    cut.remove("data");
    for value in cut.values_mut() {
        if let serde_json::Value::String(text) = value {
            if let Some((at, _)) = text.char_indices().nth(CUT_CHARS) {
                text.truncate(at);
                text.push('…');
            }
        }
    }
    cut.insert(
        "truncated".into(),
        serde_json::json!({ "bytes": whole.len() }),
    );
    serde_json::to_vec(&cut).unwrap_or_default()
}

/// Drops the messages whose payload is larger than `max` bytes (a discovery config or a pulse built
/// from an outsized code or action), with a warning naming the topic's start and the size.
pub(super) fn drop_outsized(messages: &mut Vec<(Message, Option<i64>)>, max: usize) {
    messages.retain(|(message, event)| {
        let fits = message.payload.len() <= max;
        if !fits {
            let topic: String = message.topic.chars().take(120).collect();
            tracing::warn!(
                event,
                topic = %topic.escape_debug(),
                bytes = message.payload.len(),
                max_message = max,
                "MQTT message larger than sinks.mqtt.max-message not published"
            );
        }
        fits
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_levels_are_kept_and_long_ones_are_cut_with_a_hash() {
        assert_eq!(slug("nvr.example.org"), "nvr_example_org");
        let exact = "a".repeat(MAX_LEVEL);
        assert_eq!(slug(&exact), exact);
        let long = "X".repeat(70_000);
        let other = format!("{}Y", "X".repeat(69_999));
        let (a, b) = (slug(&long), slug(&other));
        assert_eq!(a.len(), MAX_LEVEL);
        assert_eq!(b.len(), MAX_LEVEL);
        assert_ne!(a, b, "two long texts with a common start are two levels");
        assert_eq!(a, slug(&long), "the same text gives the same level");
        assert!(a.starts_with(&"X".repeat(83)) && a.as_bytes()[83] == b'-');
        // Multi-byte characters become one `_` each before the length is counted.
        assert_eq!(slug(&"é".repeat(MAX_LEVEL)), "_".repeat(MAX_LEVEL));
    }

    /// An alarm start of "cam" on channel 1 with `data`, as event 7 of frame 3.
    fn event(code: &str, data: Option<String>) -> StoredEvent {
        let mut e = super::super::tests::event("cam", code, "start", Some(1));
        (e.id, e.frame_id, e.event.data) = (7, Some(3), data);
        e
    }

    #[test]
    fn an_event_within_the_bound_is_published_whole() {
        let e = event("VideoMotion", Some(r#"{"Name":"x"}"#.into()));
        assert_eq!(
            event_payload(&e, MIN_MESSAGE),
            serde_json::to_vec(&e).unwrap()
        );
    }

    #[test]
    fn a_larger_event_loses_its_data_and_long_texts_and_says_so() {
        let data = format!(r#"{{"Blob":"{}"}}"#, "\\u0001".repeat(100_000));
        let e = event(&"C".repeat(100_000), Some(data));
        let whole = serde_json::to_vec(&e).unwrap().len();
        let payload = event_payload(&e, MIN_MESSAGE);
        assert!(payload.len() <= MIN_MESSAGE, "{}", payload.len());
        let cut: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(cut["id"], 7);
        assert_eq!(cut["device"], "cam");
        assert_eq!(cut["channel"], 1);
        assert_eq!(cut["action"], "start");
        assert!(cut.get("data").is_none());
        assert_eq!(cut["truncated"]["bytes"], whole);
        let code = cut["code"].as_str().unwrap();
        assert_eq!(code.chars().count(), CUT_CHARS + 1);
        assert!(code.ends_with('…'));
    }

    #[test]
    fn the_worst_cut_event_fits_the_smallest_bound() {
        // Every text field at its cut length of characters that JSON escapes as \u00XX.
        let nasty = "\u{1}".repeat(CUT_CHARS * 4);
        let mut e = event(
            &nasty,
            Some(format!(r#"{{"x":"{}"}}"#, "a".repeat(MIN_MESSAGE))),
        );
        e.event.device = nasty.clone();
        e.event.action = nasty.as_str().into();
        e.event.kind = nasty.as_str().into();
        e.event.channel_name = Some(nasty.clone());
        e.event.device_time = Some(nasty);
        let payload = event_payload(&e, MIN_MESSAGE);
        assert!(payload.len() <= MIN_MESSAGE, "{}", payload.len());
    }
}
