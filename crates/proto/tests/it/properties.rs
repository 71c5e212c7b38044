//! Property tests: chunking invariance, encode→decode round trips, and arbitrary input.

use alarm_center_proto::session::{Body, Header};
use alarm_center_proto::{encode, Decoder, DecoderConfig, Frame, FrameError, Protocol, Session};
use proptest::prelude::*;

/// Decodes `stream` fed in pieces cut at `cuts` (sorted, deduplicated offsets).
fn decode_chunked(stream: &[u8], cuts: &[usize], config: DecoderConfig) -> Vec<Frame> {
    let mut decoder = Decoder::new(config);
    let mut frames = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let cut = cut.clamp(last, stream.len());
        frames.extend(decoder.feed(&stream[last..cut]));
        assert!(
            decoder.buffered() <= 2 * decoder.max_frame(),
            "buffer bound exceeded"
        );
        last = cut;
    }
    frames.extend(decoder.finish());
    frames
}

fn json_text() -> impl Strategy<Value = String> {
    ("[A-Za-z]{1,12}", any::<u8>(), prop::sample::select(vec!["Start", "Stop", "Pulse"]), "[ -~&&[^\"\\\\]]{0,40}")
        .prop_map(|(code, index, action, note)| {
            serde_json::json!({"Code": code, "Action": action, "Index": index, "Data": {"Note": note, "Nested": {"x": "}{"}}})
                .to_string()
        })
}

/// One frame of any variant, or junk.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(t, g, m)| encode::dvrip_mask(t, g, m)),
        ("[a-z ]{1,10}", "[0-9]{1,10}").prop_map(|(k, v)| encode::dvrip_text(
            1,
            0,
            &[("alarm channel", &v), (&k, "x")]
        )),
        (any::<u32>(), any::<u32>(), json_text())
            .prop_map(|(r, s, j)| encode::dvrip_json(r, s, &j)),
        Just(encode::dvrip_heartbeat()),
        (any::<u32>(), any::<u32>(), json_text()).prop_map(|(s, r, j)| encode::dhip(s, r, &j)),
        (any::<u16>(), any::<u32>(), json_text()).prop_map(|(m, q, j)| encode::xm(m, 0, q, &j)),
        json_text().prop_map(|j| encode::bare_json(&j)),
        json_text().prop_map(|j| encode::http_event("127.0.0.1:15002", &j)),
        (json_text(), 1usize..20).prop_map(|(j, c)| encode::http_chunked(
            "POST",
            "/cgi-bin/NotifyEvent",
            &[("Content-Type", "application/json")],
            j.as_bytes(),
            c
        )),
        // junk: bytes that cannot start a frame
        prop::collection::vec(
            prop::sample::select(vec![0x01u8, 0x02, 0x30, 0x41, 0x7f, 0x90, 0xc3]),
            1..40
        ),
    ]
}

fn summary(frames: &[Frame]) -> Vec<(u64, Vec<u8>, Protocol, Option<FrameError>)> {
    frames
        .iter()
        .map(|f| (f.offset, f.bytes.to_vec(), f.protocol, f.error.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_chunking_gives_the_same_frames(
        frames in prop::collection::vec(any_frame(), 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let stream = frames.concat();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let config = DecoderConfig::default();
        let whole = decode_chunked(&stream, &[], config);
        let chunked = decode_chunked(&stream, &cuts, config);
        prop_assert_eq!(summary(&whole), summary(&chunked));
        // byte-at-a-time too
        let every: Vec<usize> = (1..stream.len()).collect();
        prop_assert_eq!(summary(&whole), summary(&decode_chunked(&stream, &every, config)));
    }

    #[test]
    fn well_formed_frames_decode_one_to_one(frames in prop::collection::vec(any_frame(), 1..12)) {
        // Junk pieces glued together are one junk frame; count the frame boundaries expected.
        let mut expected = 0;
        let mut last_junk = false;
        for f in &frames {
            let junk = !matches!(f[0], 0x69 | 0xF6 | 0xA1 | 0x20 | 0xFF | b'{' | b'P');
            if !(junk && last_junk) { expected += 1; }
            last_junk = junk;
        }
        let decoded = decode_chunked(&frames.concat(), &[], DecoderConfig::default());
        prop_assert_eq!(decoded.len(), expected);
        let mut session = Session::new();
        for frame in &decoded {
            if frame.protocol != Protocol::Junk {
                prop_assert_eq!(&frame.error, &None);
                let d = session.decode(frame);
                prop_assert!(d.error.is_none(), "{:?}", d.error);
            }
        }
    }

    #[test]
    fn mask_round_trip(t in any::<u8>(), g in any::<u8>(), m in any::<u32>()) {
        let frames = decode_chunked(&encode::dvrip_mask(t, g, m), &[], DecoderConfig::default());
        prop_assert_eq!(frames.len(), 1);
        let d = Session::new().decode(&frames[0]);
        prop_assert_eq!(d.body, Body::Mask { mask: m, more: vec![] });
        let Header::Dvrip(h) = d.header else { panic!("not dvrip") };
        prop_assert_eq!((h.alarm_type, h.channel_group, h.body_format_byte), (Some(t), Some(g), Some(0)));
        if t != 120 && t != 6 {
            prop_assert_eq!(d.events.len() as u32, m.count_ones());
            for e in &d.events {
                let bit = e.index.unwrap() - 32 * i64::from(g);
                prop_assert!(m & (1 << bit) != 0);
            }
        }
    }

    /// A bare JSON object is read by the decoder while it finds the object's end; a clone of the frame
    /// carries only the bytes, so its session reads them itself: both must say the same.
    #[test]
    fn bare_json_read_by_the_decoder_decodes_like_the_bytes(
        frames in prop::collection::vec(prop_oneof![
            any_frame(),
            json_text().prop_map(|j| encode::bare_json(&j)),
            "\\{[ -~]{0,30}\\}\n".prop_map(String::into_bytes),
            (json_text(), "[\"A-Za-z:,{}\\[\\]\\\\é ]{0,12}").prop_map(|(j, s)| format!("{{\"K\":{j},\"T\":\"{s}\"}}").into_bytes()),
            Just(br#"{"method":"client.keepAlive","params":{"timeout":30},"SerialNo":"ABC","id":2}"#.to_vec()),
            Just(br#"{"Event":"HumanDetect","Status":"Start","Type":"Log","Channel":1}"#.to_vec()),
            Just(b"{\"a\":\"\xff\"}".to_vec()),
        ], 1..8),
        cuts in prop::collection::vec(0usize..2000, 0..4),
    ) {
        let stream = frames.concat();
        let mut cuts = cuts;
        cuts.sort_unstable();
        cuts.dedup();
        let decoded = decode_chunked(&stream, &cuts, DecoderConfig::default());
        let mut one_pass = Session::new();
        let mut two_pass = Session::new();
        for frame in &decoded {
            let copy = frame.clone();
            prop_assert_eq!(one_pass.decode(frame), two_pass.decode(&copy));
        }
    }

    #[test]
    fn json_round_trip_every_framing(s in any::<u32>(), r in any::<u32>(), json in json_text()) {
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for bytes in [encode::dvrip_json(r, s, &json), encode::dhip(s, r, &json), encode::xm(1508, s, r, &json), encode::bare_json(&json)] {
            let frames = decode_chunked(&bytes, &[], DecoderConfig::default());
            prop_assert_eq!(frames.len(), 1);
            let d = Session::new().decode(&frames[0]);
            prop_assert_eq!(d.body.json_value(), Some(value.clone()));
            prop_assert_eq!(d.events.len(), 1);
            match d.header {
                Header::Dhip(h) => prop_assert_eq!((h.session_id, h.request_id), (s, r)),
                Header::Xm(h) => prop_assert_eq!((h.session_id, h.sequence, h.message_id), (s, r, 1508)),
                Header::Dvrip(h) => prop_assert_eq!((h.session_id, h.request_id), (Some(s), Some(r))),
                Header::None => prop_assert_eq!(frames[0].protocol, Protocol::Json),
                Header::Http(_) => unreachable!("no HTTP encoding in this loop"),
            }
        }
    }

    #[test]
    fn http_round_trip(json in json_text(), chunk in 0usize..30, path in "/[a-zA-Z/]{0,20}", method in prop::sample::select(vec!["POST", "PUT"])) {
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let headers = [("Host", "nvr"), ("Content-Type", "application/json"), ("X-Serial-Number", "ABC123")];
        let bytes = if chunk == 0 {
            encode::http_request(method, &path, &headers, json.as_bytes())
        } else {
            encode::http_chunked(method, &path, &headers, json.as_bytes(), chunk)
        };
        let frames = decode_chunked(&bytes, &[], DecoderConfig::default());
        prop_assert_eq!(frames.len(), 1);
        prop_assert_eq!(frames[0].protocol, Protocol::Http);
        let d = Session::new().decode(&frames[0]);
        prop_assert!(d.error.is_none(), "{:?}", d.error);
        prop_assert_eq!(d.body.json_value(), Some(value));
        prop_assert_eq!(d.events.len(), 1);
        prop_assert_eq!(d.device.serial.as_deref(), Some("ABC123"));
        let Header::Http(h) = d.header else { panic!("not http") };
        prop_assert_eq!((h.method.as_str(), h.path.as_str()), (method, path.as_str()));
    }

    #[test]
    fn arbitrary_http_fragments_never_panic_and_every_byte_is_accounted_for(
        pieces in prop::collection::vec(prop::sample::select(vec![
            "POST /cgi-bin/NotifyEvent HTTP/1.1\r\n", "GET / HTTP/1.0\r\n", "HEAD /x HTTP/1.1\n", "Content-Length: 7\r\n",
            "Content-Length: 99999\r\n", "Content-Length: x\r\n", "Transfer-Encoding: chunked\r\n", "\r\n", "\n", "0\r\n",
            "5\r\n", "ffffffffffffffffff\r\n", "{\"Code\":\"A\"}", "abcde", "POS", " ", "\u{1}",
        ]), 0..60),
        max in 64usize..600,
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let stream: Vec<u8> = pieces.concat().into_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        check_accounted(&stream, &cuts, max)?;
        // chunking invariance
        let whole = decode_chunked(&stream, &[], DecoderConfig { max_frame: max });
        let split = decode_chunked(&stream, &cuts, DecoderConfig { max_frame: max });
        prop_assert_eq!(summary(&whole), summary(&split));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_every_byte_is_accounted_for(
        stream in prop::collection::vec(prop_oneof![any::<u8>(), prop::sample::select(vec![0x69u8, 0, b'{', b'}', b'"', 0xFF, 0x20, 0x01])], 0..3000),
        max in 64usize..600,
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        check_accounted(&stream, &cuts, max)?;
    }
}

/// Decodes `stream` cut at `cuts`: no panic, the buffer bound holds, frames do not overlap, and every
/// byte is in a frame, padding, or the skipped rest of a declared oversized frame.
fn check_accounted(stream: &[u8], cuts: &[usize], max: usize) -> Result<(), TestCaseError> {
    let frames = decode_chunked(stream, cuts, DecoderConfig { max_frame: max });
    let mut session = Session::new();
    let mut covered = 0u64;
    for frame in &frames {
        prop_assert!(frame.len() <= max.max(64));
        prop_assert!(frame.offset >= covered, "frames overlap");
        // the bytes between frames are padding only
        for &b in &stream[covered as usize..frame.offset as usize] {
            prop_assert!(
                matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0),
                "byte {b:#x} lost"
            );
        }
        let at = frame.offset as usize;
        prop_assert_eq!(&frame.bytes[..], &stream[at..at + frame.len()]);
        covered = match &frame.error {
            Some(FrameError::Oversized { declared, .. }) => {
                (frame.offset + declared).min(stream.len() as u64)
            }
            _ => frame.offset + frame.len() as u64,
        };
        let _ = session.decode(frame);
    }
    for &b in &stream[covered as usize..] {
        prop_assert!(
            matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0),
            "trailing byte {b:#x} lost"
        );
    }
    Ok(())
}
