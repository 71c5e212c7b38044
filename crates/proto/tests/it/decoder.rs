//! Decoder and session behaviour on hand-made streams.

use alarm_center_proto::session::{Body, Header};
use alarm_center_proto::{
    encode, Action, BodyFormat, Decoder, DecoderConfig, FrameError, Kind, Protocol, Session,
};

fn decode_all(bytes: &[u8]) -> Vec<alarm_center_proto::Frame> {
    let mut decoder = Decoder::default();
    let mut frames: Vec<_> = decoder.feed(bytes).collect();
    frames.extend(decoder.finish());
    frames
}

#[test]
fn mask_diff_gives_start_then_stop() {
    let mut stream = encode::dvrip_mask(2, 0, 0b101);
    stream.extend(encode::dvrip_mask(2, 0, 0b110));
    stream.extend(encode::dvrip_mask(2, 1, 0b1));
    stream.extend(encode::dvrip_mask(2, 0, 0b110));
    let frames = decode_all(&stream);
    assert_eq!(frames.len(), 4);
    let mut session = Session::new();
    let got: Vec<Vec<(String, Action, Option<i64>)>> = frames
        .iter()
        .map(|f| {
            let d = session.decode(f);
            assert_eq!(d.kind, Kind::Alarm);
            assert_eq!(d.body_format, BodyFormat::Mask);
            d.events
                .into_iter()
                .map(|e| (e.code.into_owned(), e.action, e.index))
                .collect()
        })
        .collect();
    let motion = |a, i| ("VideoMotion".to_owned(), a, Some(i));
    assert_eq!(
        got[0],
        vec![motion(Action::Start, 0), motion(Action::Start, 2)]
    );
    assert_eq!(
        got[1],
        vec![motion(Action::Stop, 0), motion(Action::Start, 1)]
    );
    assert_eq!(
        got[2],
        vec![motion(Action::Start, 32)],
        "group 1 covers indexes 32..63"
    );
    assert!(got[3].is_empty(), "an unchanged snapshot is no event");
}

#[test]
fn disk_full_is_boolean_and_unknown_types_keep_their_number() {
    let mut session = Session::new();
    let frames = decode_all(
        &[
            encode::dvrip_mask(6, 0, 0x8000),
            encode::dvrip_mask(42, 0, 1),
        ]
        .concat(),
    );
    let full = session.decode(&frames[0]);
    assert_eq!(full.events.len(), 1);
    assert_eq!(full.events[0].code, "StorageLowSpace");
    assert_eq!(full.events[0].index, Some(0));
    let odd = session.decode(&frames[1]);
    assert_eq!(odd.events[0].code, "DvripAlarmType42");
}

#[test]
fn text_body_updates_the_same_mask_state() {
    let mut stream = encode::dvrip_text(
        1,
        0,
        &[
            ("alarm channel", "5"),
            ("Time", "2023-01-16 10:00:00"),
            ("Domain name", "nvr.example.org"),
        ],
    );
    stream.extend(encode::dvrip_mask(1, 0, 1));
    let frames = decode_all(&stream);
    let mut session = Session::new();
    let text = session.decode(&frames[0]);
    assert_eq!(text.body_format, BodyFormat::Text);
    assert_eq!(text.device.domain.as_deref(), Some("nvr.example.org"));
    let starts: Vec<_> = text
        .events
        .iter()
        .map(|e| (e.action.clone(), e.index, e.device_time.clone()))
        .collect();
    let time: Option<Box<str>> = Some("2023-01-16 10:00:00".into());
    assert_eq!(
        starts,
        vec![
            (Action::Start, Some(0), time.clone()),
            (Action::Start, Some(2), time)
        ]
    );
    let mask = session.decode(&frames[1]);
    assert_eq!(mask.events.len(), 1);
    assert_eq!(
        (mask.events[0].action.clone(), mask.events[0].index),
        (Action::Stop, Some(2))
    );
}

#[test]
fn report_type_120_is_a_report_without_events() {
    let frames = decode_all(&encode::dvrip_text(
        120,
        0,
        &[("Global IP", "203.0.113.5"), ("Domain name", "x.example")],
    ));
    let d = Session::new().decode(&frames[0]);
    assert_eq!(d.kind, Kind::Report);
    assert!(d.events.is_empty());
    assert_eq!(d.device.ip.as_deref(), Some("203.0.113.5"));
}

#[test]
fn json_variants_are_classified() {
    let keepalive =
        r#"{"id":3,"method":"global.keepAlive","params":{"timeout":30,"active":true},"session":1}"#;
    let events = r#"{"id":4,"method":"client.notifyEventStream","params":{"SerialNo":"ABC123","eventList":[{"Action":"Start","Code":"VideoMotion","Index":1,"Data":{"LocaleTime":"2024-05-01 10:00:00"}},{"Action":"Pulse","Code":"CrossLineDetection","Index":0}]}}"#;
    let reply = r#"{"id":8,"params":{"SID":513},"result":true,"session":1604224811}"#;
    let request = r#"{"id":9,"method":"magicBox.getSystemInfo","params":null}"#;
    let heartbeat = r#"{"Code":"Heartbeat","Action":"Pulse","Index":0}"#;
    let stream = [
        encode::dhip(1, 3, keepalive),
        encode::dvrip_json(4, 1, events),
        encode::bare_json(reply),
        encode::dhip(1, 9, request),
        encode::bare_json(heartbeat),
        encode::dvrip_heartbeat(),
    ]
    .concat();
    let frames = decode_all(&stream);
    let protocols: Vec<_> = frames.iter().map(|f| f.protocol).collect();
    use Protocol::*;
    assert_eq!(protocols, vec![Dhip, Dvrip, Json, Dhip, Json, Dvrip]);
    let mut session = Session::new();
    let decoded: Vec<_> = frames.iter().map(|f| session.decode(f)).collect();
    let kinds: Vec<_> = decoded.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::Keepalive,
            Kind::Alarm,
            Kind::Reply,
            Kind::Request,
            Kind::Keepalive,
            Kind::Keepalive
        ]
    );
    assert_eq!(decoded[0].keepalive_period, Some(30));
    let e = &decoded[1].events;
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0].code.as_ref(), e[0].index, e[0].channel()),
        ("VideoMotion", Some(1), Some(2))
    );
    assert_eq!(e[0].device_time.as_deref(), Some("2024-05-01 10:00:00"));
    assert_eq!(e[1].action, Action::Pulse);
    assert_eq!(decoded[1].device.serial.as_deref(), Some("ABC123"));
    assert_eq!(decoded[1].command, Some(0xF6));
}

#[test]
fn xm_alarm_center_push() {
    let frame = encode::xm_alarm(
        "cdf680a9a0279bf8",
        "192.168.1.10".parse().unwrap(),
        0,
        "HumanDetect",
        false,
        "2024-01-27 21:10:58",
    );
    let frames = decode_all(&frame);
    let d = Session::new().decode(&frames[0]);
    assert_eq!(d.command, Some(1508));
    assert_eq!(d.kind, Kind::Alarm);
    assert_eq!(d.device.serial.as_deref(), Some("cdf680a9a0279bf8"));
    assert_eq!(d.device.ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(d.events[0].action, Action::Stop);
    assert_eq!(d.events[0].channel(), Some(1));
    assert!(matches!(d.header, Header::Xm(_)));
}

#[test]
fn junk_is_kept_and_decoding_resumes() {
    let mut stream = b"GET / HTTP/1.1\r\n\x01\x02{not json\x00".to_vec();
    stream.extend(encode::dvrip_mask(2, 0, 1));
    stream.extend(b"\xde\xad\xbe\xef");
    stream.extend(encode::bare_json(
        r#"{"Code":"VideoLoss","Action":"Start","Index":3}"#,
    ));
    let frames = decode_all(&stream);
    let protocols: Vec<_> = frames.iter().map(|f| f.protocol).collect();
    // The request line is an HTTP frame cut at the control byte that proves it malformed.
    assert_eq!(
        protocols,
        vec![
            Protocol::Http,
            Protocol::Junk,
            Protocol::Dvrip,
            Protocol::Junk,
            Protocol::Json
        ]
    );
    assert_eq!(&frames[0].bytes[..], b"GET / HTTP/1.1\r\n");
    assert!(matches!(frames[0].error, Some(FrameError::Malformed(_))));
    assert_eq!(&frames[1].bytes[..], b"\x01\x02{not json\x00");
    assert_eq!(frames[1].error, Some(FrameError::Unrecognized));
    let total: usize = frames.iter().map(|f| f.len()).sum();
    assert_eq!(
        total,
        stream.len() - 1,
        "only the newline after the JSON is padding"
    );
    let mut session = Session::new();
    let junk = session.decode(&frames[0]);
    assert_eq!(junk.body_format, BodyFormat::Binary);
    assert!(matches!(junk.body, Body::Binary(_)));
}

#[test]
fn oversized_frame_is_truncated_and_skipped_without_buffering() {
    let body = vec![b'x'; 10_000];
    let mut stream = encode::dvrip_frame(0xF6, 0, [0; 24], &body);
    stream.extend(encode::dvrip_mask(2, 0, 1));
    let mut decoder = Decoder::new(DecoderConfig { max_frame: 1024 });
    let mut frames = Vec::new();
    for chunk in stream.chunks(100) {
        frames.extend(decoder.feed(chunk));
        assert!(decoder.buffered() <= 2048);
    }
    frames.extend(decoder.finish());
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].len(), 1024);
    assert_eq!(
        frames[0].error,
        Some(FrameError::Oversized {
            declared: 10_032,
            max: 1024
        })
    );
    assert_eq!(frames[1].offset, 10_032);
    assert_eq!(frames[1].protocol, Protocol::Dvrip);
}

#[test]
fn implausible_length_is_junk_not_a_skip() {
    let mut stream = vec![0x69, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f];
    stream.extend([0u8; 24]);
    stream.extend(encode::dvrip_heartbeat());
    let frames = decode_all(&stream);
    assert_eq!(frames[0].protocol, Protocol::Junk);
    assert_eq!(frames.last().unwrap().protocol, Protocol::Dvrip);
}

#[test]
fn incomplete_frame_at_end_is_reported() {
    let full = encode::dvrip_json(1, 2, r#"{"method":"global.keepAlive"}"#);
    let frames = decode_all(&full[..40]);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        frames[0].error,
        Some(FrameError::Incomplete {
            have: 40,
            need: full.len()
        })
    );
    let unfinished = decode_all(br#"{"a":{"b":1}"#);
    assert_eq!(unfinished[0].protocol, Protocol::Json);
    assert!(matches!(
        unfinished[0].error,
        Some(FrameError::Incomplete { .. })
    ));
}

#[test]
fn braces_in_garbage_cost_linear_time() {
    // 60k opening braces then a control byte: each candidate must not rescan the rest.
    let mut stream = vec![b'{'; 60_000];
    stream.push(1);
    stream.extend(encode::dvrip_heartbeat());
    let frames = decode_all(&stream);
    assert_eq!(frames.last().unwrap().protocol, Protocol::Dvrip);
    assert!(frames
        .iter()
        .rev()
        .skip(1)
        .all(|f| f.protocol == Protocol::Junk));
}

#[test]
fn fragments_of_invalid_json_in_a_dvrip_body_are_reported() {
    let frames = decode_all(&encode::dvrip_frame(0xF6, 0, [0; 24], b"{\"id\":1,"));
    let d = Session::new().decode(&frames[0]);
    assert!(
        d.error.as_deref().unwrap().starts_with("invalid JSON body"),
        "{:?}",
        d.error
    );
    assert_eq!(d.body_format, BodyFormat::Binary);
}

#[test]
fn login_requests_may_carry_a_value_in_byte_1() {
    let mut login = encode::dvrip_frame(0xA0, 0, [0; 24], b"");
    login[1] = 0x05;
    let frames = decode_all(&login);
    assert_eq!(frames[0].protocol, Protocol::Dvrip);
    assert_eq!(Session::new().decode(&frames[0]).kind, Kind::Request);
    let mut other = encode::dvrip_heartbeat();
    other[1] = 0x05;
    assert_eq!(decode_all(&other)[0].protocol, Protocol::Junk);
}

/// Inputs found by `cargo fuzz` (fuzz/regressions/), kept as plain tests.
#[test]
fn fuzz_regressions() {
    // F1: a JSON object closing past max_frame was accepted when more bytes were buffered.
    let mut text = vec![0u8, 0, 0, 0, 1, 0, 0, 0, b'{'];
    text.extend([b' '; 63]);
    text.push(b'}');
    for max in [64usize, 65, 100] {
        let mut decoder = Decoder::new(DecoderConfig { max_frame: max });
        let mut frames: Vec<_> = decoder.feed(&text).collect();
        frames.extend(decoder.finish());
        assert!(
            frames.iter().all(|f| f.len() <= max),
            "max {max}: {frames:?}"
        );
    }
    // F2: a number serde_json cannot hold must not break the output record.
    let frames = decode_all(br#"{"n":1e999}"#);
    let d = Session::new().decode(&frames[0]);
    let record = alarm_center_proto::FrameRecord {
        frame: &frames[0],
        decoded: &d,
        stream: None,
        include_raw: true,
    };
    let line = serde_json::to_string(&record).unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_ok(),
        "{line}"
    );
    // F3: an index of i64::MAX has no channel instead of overflowing.
    let frames = decode_all(br#"{"Code":"VideoMotion","Index":9223372036854775807}"#);
    let d = Session::new().decode(&frames[0]);
    assert_eq!(d.events[0].channel(), None);
    // F5: invalid UTF-8 inside a string the reader skips is an invalid body, not JSON.
    let frames = decode_all(b"{\"method\":[{\"Data\":{\"Name\":\"c\x8bm\"}}]}");
    let d = Session::new().decode(&frames[0]);
    assert_eq!(d.body_format, BodyFormat::Binary);
    assert!(
        d.error.as_deref().unwrap().contains("UTF-8"),
        "{:?}",
        d.error
    );
    // F6: a method whose last nine bytes split a multi-byte character.
    let frames = decode_all("{\"method\":\"typeޭlarm\"}".as_bytes());
    assert_eq!(Session::new().decode(&frames[0]).kind, Kind::Request);
    // F7, F8: HTTP framing looked past max_frame into what else was buffered, so the frames depended
    // on how the stream was cut (head end, control byte, chunk-size line, trailer just past the limit).
    for name in [
        "decoder_chunks-http-head-past-max",
        "decoder_chunks-http-invalid-byte-at-max",
        "decoder_chunks-http-chunk-size-past-max",
        "decoder_chunks-http-trailer-whole-vs-chunked",
        "decoder_chunks-http-trailer-frame-over-max",
    ] {
        let path = format!(
            "{}/../../fuzz/regressions/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let input = std::fs::read(&path).unwrap();
        // The fuzz target's layout: 8 parameter bytes (max_frame 64 for these), then the stream.
        let stream = &input[8..];
        let config = DecoderConfig { max_frame: 64 };
        let whole = {
            let mut decoder = Decoder::new(config);
            let mut frames: Vec<_> = decoder.feed(stream).collect();
            frames.extend(decoder.finish());
            frames
        };
        let bytewise = {
            let mut decoder = Decoder::new(config);
            let mut frames = Vec::new();
            for byte in stream {
                frames.extend(decoder.feed(std::slice::from_ref(byte)));
            }
            frames.extend(decoder.finish());
            frames
        };
        assert_eq!(whole, bytewise, "{name}");
        assert!(whole.iter().all(|f| f.len() <= 64), "{name}: {whole:?}");
    }
    // F4: escapes in bare JSON strings.
    let frames = decode_all(b"{\"a\":\"\\n\"}\n{\"b\":1}");
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames
        .iter()
        .all(|f| f.protocol == Protocol::Json && f.error.is_none()));
}

/// An event notification (`json`) split into two DHIP packets of one message (session 9, request 5),
/// and the message's length.
fn fragmented_json() -> (&'static str, [Vec<u8>; 2], u32) {
    let json = r#"{"id":5,"method":"client.notifyEventStream","params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":3}]}}"#;
    let body = format!("{json}\n");
    let (a, b) = body.as_bytes().split_at(40);
    let total = body.len() as u32;
    let dhip_piece = |piece: &[u8]| {
        let mut f = encode::dhip(9, 5, "");
        f.truncate(32);
        f[16..20].copy_from_slice(&(piece.len() as u32).to_le_bytes());
        f[24..28].copy_from_slice(&total.to_le_bytes());
        f.extend_from_slice(piece);
        f
    };
    (json, [dhip_piece(a), dhip_piece(b)], total)
}

#[test]
fn fragmented_json_messages_are_joined() {
    let (json, [a, b], total) = fragmented_json();
    let frames = decode_all(&[a, encode::dvrip_heartbeat(), b].concat());
    assert_eq!(frames.len(), 3);
    let mut session = Session::new();
    let first = session.decode(&frames[0]);
    assert_eq!(first.kind, Kind::Unknown);
    assert_eq!(
        first.fragment.map(|f| (f.index, f.received, f.total)),
        Some((1, 40, total))
    );
    assert!(first.events.is_empty() && first.error.is_none());
    assert_eq!(
        session.decode(&frames[1]).kind,
        Kind::Keepalive,
        "other frames pass between pieces"
    );
    let last = session.decode(&frames[2]);
    assert_eq!(
        last.fragment.map(|f| (f.index, f.received)),
        Some((2, total))
    );
    assert_eq!(last.kind, Kind::Alarm);
    assert_eq!(last.events[0].channel(), Some(4));
    // 0xF6 the same way.
    let mut f6 = encode::dvrip_json(5, 1, json);
    f6[16..20].copy_from_slice(&(total * 2).to_le_bytes());
    let frames = decode_all(&f6);
    let d = Session::new().decode(&frames[0]);
    assert!(d.events.is_empty() && d.fragment.is_some(), "{d:?}");
}

#[test]
fn xm_video_loss_and_blind_are_alarms_and_log_uploads_are_logs() {
    for code in ["LossDetect", "BlindDetect"] {
        let frame = encode::xm_alarm(
            "cdf680a9a0279bf8",
            "192.168.1.10".parse().unwrap(),
            2,
            code,
            true,
            "2024-01-27 21:10:58",
        );
        let d = Session::new().decode(&decode_all(&frame)[0]);
        assert_eq!(d.kind, Kind::Alarm, "{code}");
        assert_eq!(d.events[0].code, code);
        assert_eq!(
            (d.events[0].action.clone(), d.events[0].channel()),
            (Action::Start, Some(3))
        );
    }
    // The same message with the "Log" upload type: a log record, not an alarm.
    let log = r#"{"Address":"0x0A01A8C0","Channel":0,"Descrip":"","Event":"LossDetect","SerialID":"cdf680a9a0279bf8","StartTime":"2024-01-27 21:10:58","Status":"Start","Type":"Log"}"#;
    let d = Session::new().decode(&decode_all(&encode::xm(1508, 0, 0, log))[0]);
    assert_eq!(d.kind, Kind::Log);
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].code, "LossDetect");
}

#[test]
fn keepalive_period_announced_as_keepalive_or_nkeepalive() {
    for key in ["timeout", "KeepAlive", "nKeepAlive"] {
        let json = format!(r#"{{"id":1,"method":"global.keepAlive","params":{{"{key}":45}}}}"#);
        let d = Session::new().decode(&decode_all(&encode::dhip(1, 1, &json))[0]);
        assert_eq!(d.kind, Kind::Keepalive, "{key}");
        assert_eq!(d.keepalive_period, Some(45), "{key}");
    }
}

/// A bare JSON frame carries the decoder's reading to the session; a frame whose bytes were replaced
/// since is read from what it holds now, never from the reading of its old bytes.
#[test]
fn a_bare_json_frame_with_new_bytes_is_read_from_them() {
    let mut decoder = Decoder::default();
    let mut frames: Vec<alarm_center_proto::Frame> = decoder
        .feed(br#"{"method":"client.keepAlive","params":{"timeout":30}}"#)
        .collect();
    assert_eq!(frames.len(), 1);
    let alarm =
        br#"{"params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":3}]},"x":1}"#;
    frames[0].bytes = bytes::Bytes::from_static(alarm);
    let decoded = Session::new().decode(&frames[0]);
    assert_eq!(decoded.events.len(), 1, "{decoded:?}");
    assert_eq!(decoded.events[0].code, "VideoMotion");
}

/// A long event list is not attached to its frame (a read's frames wait together for the writer), and
/// decodes all the same.
#[test]
fn a_long_bare_json_event_list_decodes_whole() {
    let events: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"Code":"VideoMotion","Action":"Start","Index":{i}}}"#))
        .collect();
    let text = format!(r#"{{"params":{{"eventList":[{}]}}}}"#, events.join(","));
    let mut decoder = Decoder::default();
    let frames: Vec<alarm_center_proto::Frame> = decoder.feed(text.as_bytes()).collect();
    assert_eq!(frames.len(), 1);
    assert_eq!(Session::new().decode(&frames[0]).events.len(), 100);
}

/// A frame `Session::is_stateless` calls stateless decodes alike in a fresh session and in one with
/// masks and a message half reassembled, and leaves the latter as it was (its next mask and the rest
/// of its message decode as if the frame had not come); the frames it does not call stateless are
/// the DVRIP and DHIP ones that are not errors.
#[test]
fn a_stateless_frame_decodes_alike_in_every_session_and_changes_none() {
    let (_, [a, b], _) = fragmented_json();
    let setup = decode_all(&[encode::dvrip_mask(2, 0, 0b101), a].concat());
    let after = decode_all(&[encode::dvrip_mask(2, 0, 0b110), b].concat());
    let dirty = || {
        let mut session = Session::new();
        for frame in &setup {
            session.decode(frame);
        }
        session
    };
    let mut truncated = encode::dhip(1, 2, r#"{"Code":"X"}"#);
    truncated.truncate(truncated.len() - 3);
    let candidates = decode_all(
        &[
            encode::xm_alarm(
                "SN1",
                "192.168.1.10".parse().unwrap(),
                0,
                "HumanDetect",
                true,
                "2026-12-01 10:00:00",
            ),
            encode::bare_json(r#"{"Code":"VideoMotion","Action":"Start","Index":0}"#),
            encode::http_request("POST", "/alarm", &[], br#"{"Code":"VideoMotion"}"#),
            b"\x00junk bytes\x01".to_vec(),
            encode::dhip(1, 2, r#"{"Code":"VideoMotion","Action":"Start","Index":0}"#),
            encode::dvrip_json(1, 2, r#"{"Name":"AlarmInfo"}"#),
            encode::dvrip_mask(2, 0, 0b111),
            encode::dvrip_heartbeat(),
            truncated,
        ]
        .concat(),
    );
    let mut stateless = Vec::new();
    for frame in &candidates {
        if !Session::is_stateless(frame) {
            assert!(
                matches!(frame.protocol, Protocol::Dvrip | Protocol::Dhip) && frame.error.is_none(),
                "{frame:?}"
            );
            continue;
        }
        stateless.push(frame.protocol);
        let mut session = dirty();
        assert_eq!(
            Session::new().decode(frame),
            session.decode(frame),
            "{frame:?}"
        );
        assert_eq!(session.masks(), dirty().masks());
        for next in &after {
            assert_eq!(session.decode(next), dirty().decode(next), "{frame:?}");
        }
    }
    for protocol in [Protocol::Xm, Protocol::Json, Protocol::Http, Protocol::Junk] {
        assert!(
            stateless.contains(&protocol),
            "{protocol:?} in {stateless:?}"
        );
    }
    assert!(
        candidates
            .iter()
            .any(|f| f.error.is_some() && Session::is_stateless(f)),
        "a frame with an error"
    );
}
