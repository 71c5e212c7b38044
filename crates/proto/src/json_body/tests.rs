//! The readers against each other (the strict reader against serde's), and against hostile bodies.

use super::keys::key_of_bytes;
use super::scan::scan_data;
use super::serde_read::data_found;
use super::*;
use crate::event::JsonText;

thread_local! {
    /// Bytes [`Strict::span`] has checked as UTF-8 on this thread.
    pub(super) static UTF8_CHECKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A byte that is not UTF-8 early in a window, then many strings whose text the reader keeps: the
/// reader reads on past the first (an event's `Data` is checked, its time and identity strings
/// kept when they are text), and the prefix known to be UTF-8 cannot grow past the bad byte, so
/// every later string must not check the window again from its start (quadratic in the window).
#[test]
fn a_window_with_a_byte_that_is_not_utf8_is_checked_once() {
    for bad in [&b"\"k\xff\":1"[..], b"\"Other\":\"\xff\""] {
        let mut window = br#"{"Code":"x","Data":{"#.to_vec();
        window.extend_from_slice(bad);
        for _ in 0..5000 {
            window.extend_from_slice(br#","Time":"t""#);
        }
        window.extend_from_slice(b"}}");
        UTF8_CHECKED.with(|c| c.set(0));
        assert_eq!(bare_object(&window), serde_bare(&window));
        assert_eq!(bare_object(&window), None);
        let checked = UTF8_CHECKED.with(std::cell::Cell::get);
        assert!(
            checked <= 4 * window.len(),
            "{checked} bytes checked for a window of {}",
            window.len()
        );
    }
}

/// What serde's reading of a whole body says.
fn serde_body(text: &str) -> Result<JsonFacts, String> {
    serde_json::from_str::<MaybeObject<'_>>(text)
        .map(facts_of)
        .map_err(|e| e.to_string())
}

/// What serde's stream reading of a window's first object says.
fn serde_bare(window: &[u8]) -> Option<(usize, JsonFacts)> {
    let mut stream = serde_json::Deserializer::from_slice(window).into_iter::<MaybeObject<'_>>();
    let top = stream.next()?.ok()?;
    let len = stream.byte_offset();
    std::str::from_utf8(window.get(..len)?).ok()?;
    Some((len, facts_of(top)))
}

/// The strict reader reads only what serde reads, and reads it the same way.
/// Applies byte edits `(at, byte, op)`: op 0 inserts `byte` at `at`, 1 removes the byte there, 2
/// replaces it (`at` taken modulo the length + 1).
fn edit(bytes: &mut Vec<u8>, edits: &[(usize, u8, u8)]) {
    for &(at, byte, op) in edits {
        let at = at % (bytes.len() + 1);
        match op {
            0 => bytes.insert(at, byte),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ if at < bytes.len() => bytes[at] = byte,
            _ => {}
        }
    }
}

fn check_strict(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Some(top) = Strict::body(text) {
            assert_eq!(
                Ok(facts_of(MaybeObject(Some(top)))),
                serde_body(text),
                "{text}"
            );
        }
        assert_eq!(
            json_facts(text).map_err(|e| e.to_string()),
            serde_body(text),
            "{text}"
        );
    }
    assert_eq!(
        bare_object(bytes),
        serde_bare(bytes),
        "{}",
        String::from_utf8_lossy(bytes)
    );
}

/// A JSON value built from the keys and values that matter to the reading.
fn json_value() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let leaf = proptest::sample::select(vec![
        r#""Start""#,
        r#""VideoMotion""#,
        r#""""#,
        r#""a\"b""#,
        r#""\ud800""#,
        r#""\u00e9""#,
        r#""0x0A01A8C0""#,
        r#""2024-05-01 10:00:00""#,
        r#"" 7 ""#,
        "0",
        "-0",
        "1",
        "-1",
        "7.5",
        "1e999",
        "-1E-5",
        "123456789012345678",
        "1234567890123456789",
        "99999999999999999999",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        r#""é""#,
    ])
    .prop_map(str::to_owned);
    leaf.prop_recursive(5, 48, 6, |inner| {
        let key = proptest::sample::select(vec![
            "method",
            "Method",
            "result",
            "params",
            "PARAMS",
            "eventList",
            "Code",
            "Action",
            "Index",
            "Data",
            "LocaleTime",
            "Time",
            "StartTime",
            "Event",
            "Status",
            "Channel",
            "SerialNo",
            "mac",
            "IP",
            "Address",
            "Domain",
            "KeepAlive",
            "Type",
            "id",
            "x",
            r"Co\u0064e",
            r"\ud800",
            "",
        ]);
        let ws = proptest::sample::select(vec!["", " ", "\n\t", "\r "]);
        prop_oneof![
            proptest::collection::vec((key, ws, inner.clone()), 0..6).prop_map(|entries| {
                let body: Vec<String> = entries
                    .iter()
                    .map(|(k, ws, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
            proptest::collection::vec(inner, 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
        ]
    })
}

/// An event notification (DHIP style or XM style) whose objects carry extra entries.
fn event_body() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let extra = || {
        proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "Code",
                    "code",
                    "Action",
                    "Index",
                    "Data",
                    "LocaleTime",
                    "Time",
                    "SerialNo",
                    "mac",
                    "Address",
                    "Status",
                    "Channel",
                    "Type",
                    "Name",
                    "id",
                    "session",
                    "KeepAlive",
                    "result",
                ]),
                json_value(),
            ),
            0..4,
        )
        .prop_map(|entries| {
            entries
                .iter()
                .map(|(k, v)| format!(",\"{k}\":{v}"))
                .collect::<String>()
        })
    };
    prop_oneof![
        (extra(), extra(), extra(), json_value()).prop_map(|(top, params, event, data)| {
            format!(
                r#"{{"method":"client.notifyEventStream"{top},"params":{{"SID":1{params},"eventList":[{{"Code":"VideoMotion","Action":"Start","Index":0,"Data":{data}{event}}}]}}}}"#
            )
        }),
        (extra(), json_value()).prop_map(|(more, v)| {
            format!(r#"{{"Event":"HumanDetect","Status":"Start","Channel":1,"X":{v}{more}}}"#)
        }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn strict_reading_of_events_matches_serde(
        value in event_body(),
        edits in proptest::collection::vec((0usize..1000, 0u8..=255, 0u8..3), 0..3),
        cuts in proptest::collection::vec(0usize..1000, 3),
    ) {
        let mut bytes = value.into_bytes();
        check_strict(&bytes);
        // Cut by the end of a read.
        for cut in cuts {
            check_strict(&bytes[..cut % (bytes.len() + 1)]);
        }
        edit(&mut bytes, &edits);
        check_strict(&bytes);
    }

    #[test]
    fn strict_reading_matches_serde(
        value in json_value(),
        edits in proptest::collection::vec((0usize..1000, 0u8..=255, 0u8..3), 0..3),
        tail in proptest::sample::select(vec!["", " ", "\n{\"a\":1}", "x", "\0"]),
    ) {
        let mut bytes = format!("{value}{tail}").into_bytes();
        check_strict(&bytes);
        edit(&mut bytes, &edits);
        check_strict(&bytes);
    }
}

/// Every reader of a body, on any bytes: none may panic (debug builds check overflow) or fail to
/// end. The readers that expect text serde has accepted (`scan_data`, `data_found`,
/// `Strict::others_of`) are fed anything too: they must be safe, if not right (`scan`'s tests feed
/// the byte scanners).
fn read_every_way(bytes: &[u8]) {
    let _ = bare_object(bytes);
    let _ = key_of_bytes(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = json_facts(text);
        let _ = Strict::body(text);
        let _ = scan_data(text);
        let _ = data_found(text);
        let _ = Strict::others_of(text);
    }
    // Through the decoder and the session, in every framing that carries JSON.
    let text = String::from_utf8_lossy(bytes);
    let mut alarm_tail = [0u8; 24];
    alarm_tail[crate::dvrip::BODY_FORMAT_AT - 8] = 2;
    for stream in [
        bytes.to_vec(),
        crate::encode::dvrip_json(1, 2, &text),
        crate::encode::dvrip_frame(crate::dvrip::CMD_ALARM, 0, alarm_tail, bytes),
        crate::encode::dhip(1, 2, &text),
        crate::encode::xm(1508, 1, 2, &text),
        crate::encode::http_request("POST", "/", &[], bytes),
    ] {
        let mut decoder = crate::Decoder::default();
        let mut frames: Vec<_> = decoder.feed(&stream).collect();
        frames.extend(decoder.finish());
        let mut session = crate::Session::new();
        for frame in &frames {
            let _ = session.decode(frame);
        }
    }
}

/// A body to break: a generated one, deep nesting of each kind the readers count (closed or not),
/// or bytes from the JSON alphabet and beyond.
fn hostile_body() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let deep = (
        proptest::sample::select(vec![
            r#"{"params":"#,
            r#"{"eventList":["#,
            "[",
            r#"{"Data":"#,
            r#"{"x":"#,
            r#"{"Code":"c","Data":{"Time":"#,
            r#"{"Event":"E","Z":"#,
        ]),
        0usize..300,
        any::<bool>(),
    )
        .prop_map(|(open, n, close)| {
            let mut text = open.repeat(n);
            text.push('1');
            if close {
                for c in open.bytes().rev().filter(|c| matches!(c, b'{' | b'[')) {
                    text.extend(std::iter::repeat_n(if c == b'{' { '}' } else { ']' }, n));
                }
            }
            text.into_bytes()
        });
    let bytes = proptest::collection::vec(
        prop_oneof![
            any::<u8>(),
            proptest::sample::select(b"{}[]\":,\\u0123456789eE.-+ \t\n\rtfnalsx".to_vec()),
        ],
        0..300,
    );
    prop_oneof![
        event_body().prop_map(String::into_bytes),
        json_value().prop_map(String::into_bytes),
        deep,
        bytes,
    ]
}

/// Hostile bodies: one from [`hostile_body`], then the same after each of up to eight insertions,
/// deletions or overwrites of pieces that matter (bytes that are not UTF-8, escapes, a lone surrogate,
/// brackets, 1e999, NUL, a form feed, a BOM).
pub(super) fn hostile_bodies() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
    use proptest::prelude::*;
    let edits = proptest::collection::vec(
        (
            0usize..4000,
            proptest::sample::select(vec![
                &b"\xff"[..],
                b"\xc3",
                b"\xe2\x82",
                b"\\u",
                b"\\ud800",
                b"\"",
                b"\\",
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b":",
                b"-",
                b"0",
                b"1e999",
                b"\0",
                b"\x0c",
                b"\xef\xbb\xbf",
            ]),
            0u8..3,
        ),
        0..8,
    );
    (hostile_body(), edits).prop_map(|(mut bytes, edits)| {
        let mut bodies = vec![bytes.clone()];
        for (at, piece, op) in edits {
            let at = at % (bytes.len() + 1);
            let end = (at + piece.len()).min(bytes.len());
            match op {
                0 => drop(bytes.splice(at..at, piece.iter().copied())),
                1 => drop(bytes.drain(at..end)),
                _ => drop(bytes.splice(at..end, piece.iter().copied())),
            }
            bodies.push(bytes.clone());
        }
        bodies
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    #[test]
    fn hostile_bodies_never_panic(bodies in hostile_bodies()) {
        for bytes in bodies {
            read_every_way(&bytes);
        }
    }
}

#[test]
fn strict_reading_edge_cases() {
    let deep = |n: usize| {
        format!(
            r#"{{"method":"m",{}"Code":"c"{}}}"#,
            r#""params":{"#.repeat(n),
            "}".repeat(n)
        )
    };
    let deep_skip = format!(
        r#"{{"x":{}1{},"Code":"c"}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    for text in [
        deep(10),
        deep(40),
        deep(200),
        deep_skip.clone(),
        r#"{"params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":0,"Data":{"LocaleTime":"t"}}]}}"#.into(),
        r#"{"Code":"x","Index":01}"#.into(),
        r#"{"Code":"x","Index":1.}"#.into(),
        r#"{"Code":"x",}"#.into(),
        r#"{"Code":"x" "Index":1}"#.into(),
        r#"{"Code":"x","Data":[1,]}"#.into(),
        r#"{"Code":"x","Data":"\x"}"#.into(),
        r#"{"Code":"x","Data":"\u12G4"}"#.into(),
        "{\"Code\":\"a\tb\"}".into(),
        "{\"Code\":\"x\",\"Data\":\"a\u{1}b\"}".into(),
        r#"{"Code":"x"} "#.into(),
        r#"{"Code":"x"}{}"#.into(),
        r#"{"Code":"x","Index":1e999}"#.into(),
        r#"{"Code":"x","Data":1e999}"#.into(),
        r#"{"Code":"x","Index":tru}"#.into(),
        r#"{"Event":"HumanDetect","Type":"Log","Status":"Start","Channel":3}"#.into(),
        r#"{"Event":"HumanDetect","Type":"Alarm","SerialID":"s","Address":"0x0A01A8C0"}"#.into(),
        // XM objects below the top level: their other values are listed from their text.
        r#"{"eventList":[{"A":1,"Event":"HumanDetect","Type":"x","Status":"Start","Z":{"a":[1,"\u00e9"]},"B":"y"}]}"#.into(),
        r#"{"params":{"A":[{"b":{}}],"Event":"HumanDetect","Channel":2,"Q":null}}"#.into(),
        // Duplicate keys: each entry is read in order, by both readers (no error; the last
        // `Code`/`params`/`Data`/`eventList` wins, the first identity and period win).
        r#"{"Code":"a","Code":"b","Index":1,"Index":"2","SerialNo":"s1","SerialNo":"s2"}"#.into(),
        r#"{"Code":"a","Data":{"Time":"t1"},"Data":{"Time":"t2","Time":"t0"},"Data":{"LocaleTime":"t3"}}"#.into(),
        r#"{"Code":"a","Data":{"Time":"t1"},"Data":null}"#.into(),
        r#"{"params":{"Code":"a"},"params":7,"KeepAlive":5,"KeepAlive":9}"#.into(),
        r#"{"eventList":[{"Code":"a"}],"eventList":{"Code":"b"},"Event":"E","Type":"Log","Type":"x"}"#.into(),
        // Numbers: -0, leading zeros, the longest integer kept, one past it, past i64 and u64.
        r#"{"Code":"x","Index":-0}"#.into(),
        r#"{"Code":"x","Index":-01}"#.into(),
        r#"{"Code":"x","Index":00}"#.into(),
        r#"{"Code":"x","Index":999999999999999999}"#.into(),
        r#"{"Code":"x","Index":-99999999999999999}"#.into(),
        r#"{"Code":"x","Index":-999999999999999999}"#.into(),
        r#"{"Code":"x","Index":9223372036854775808}"#.into(),
        r#"{"Code":"x","Index":18446744073709551616}"#.into(),
        r#"{"Code":"x","Index":1.0}"#.into(),
        // Whitespace JSON does not allow, a BOM, NUL after the object.
        "{\"Code\":\"x\",\u{c}\"Index\":1}".into(),
        "{\"Code\":\"x\",\u{b}\"Index\":1}".into(),
        "{\"Code\":\"x\",\u{a0}\"Index\":1}".into(),
        "\u{feff}{\"Code\":\"x\"}".into(),
        "{\"Code\":\"x\"}\0".into(),
    ] {
        check_strict(text.as_bytes());
    }
    for bytes in [
        &b"\xef\xbb\xbf{\"Code\":\"x\"}"[..],
        b"{\"Code\":\"x\xff\"}",
        b"{\"x\xff\":1}",
    ] {
        check_strict(bytes);
    }
    // An XM object read at depth 2 whose values nest as deep as the strict reader goes: listing its
    // other values again must not give up where the first reading did not.
    let deepest = format!(
        r#"{{"params":{{"Event":"HumanDetect","A":1,{}"Z":{}0{}{}}}}}"#,
        r#""params":{"#.repeat(28),
        "[".repeat(60),
        "]".repeat(60),
        "}".repeat(28)
    );
    assert!(Strict::body(&deepest).is_some());
    check_strict(deepest.as_bytes());
    let facts = json_facts(&deepest).unwrap();
    assert!(facts.events[0]
        .data
        .as_ref()
        .unwrap()
        .as_str()
        .starts_with(r#"{"A":1}"#));
    let nested = json_facts(
        r#"{"eventList":[{"A":1,"Event":"HumanDetect","Status":"Start","Z":{"a":[1]},"B":"y"}]}"#,
    )
    .unwrap();
    assert_eq!(
        nested.events[0].data.as_ref().map(JsonText::as_str),
        Some(r#"{"A":1,"Z":{"a":[1]},"B":"y"}"#)
    );
    // Past serde's recursion limit: serde rejects it, so the strict reader must have given up.
    assert!(json_facts(&deep(200)).is_err());
    assert!(Strict::body(&deep(200)).is_none());
    // Deep skipped values: serde accepts them (no limit there); the strict reader hands them over.
    assert!(json_facts(&deep_skip).is_ok());
    // The common bodies are read by the strict reader.
    assert!(Strict::body(&deep(10)).is_some());
}

#[test]
fn the_decoder_reads_whole_bare_objects_once() {
    let event = br#"{"method":"client.notifyEventStream","params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":0}]}}"#;
    let stream = [&event[..], b"\n", &event[..60]].concat();
    let mut decoder = crate::Decoder::default();
    let frames: Vec<_> = decoder.feed(&stream).collect();
    assert_eq!(frames.len(), 1);
    let copy = frames[0].clone();
    let facts = frames[0]
        .parsed
        .take(&frames[0].bytes)
        .expect("read by the decoder");
    assert_eq!(facts.events.len(), 1);
    assert!(
        frames[0].parsed.take(&frames[0].bytes).is_none(),
        "taken once"
    );
    assert!(copy.parsed.take(&copy.bytes).is_none());
    // The rest of the second object arrives later: framed by brace matching, read by the session.
    let frames: Vec<_> = decoder.feed(&event[60..]).collect();
    assert_eq!(frames.len(), 1);
    assert!(frames[0].parsed.take(&frames[0].bytes).is_none());
    assert_eq!(crate::Session::new().decode(&frames[0]).events.len(), 1);
}

/// The strict reader gives up on floats and long integers because serde_json, as built here, reads them
/// as `f64` (an out-of-range float is an error). With serde_json's `arbitrary_precision` feature
/// (enabled by any crate in the build) serde would read them as text instead and the two readings
/// could differ: this fails first.
#[test]
fn serde_json_reads_numbers_as_the_strict_reader_assumes() {
    assert!(serde_json::from_str::<serde_json::Value>("1e999").is_err());
    let big: serde_json::Value = serde_json::from_str("123456789012345678901234567890").unwrap();
    assert!(big.is_f64(), "{big:?}");
}

/// An XM event's data lists the keys we do not read with their values, in order: keys written with
/// escapes (read by serde's reader, which decodes them) are escaped again, the others kept as written.
#[test]
fn an_xm_events_data_keeps_its_other_keys_escaped_as_json() {
    let body = r#"{"Event":"HumanDetect","Status":"Start","Ty\"pe":"A","Na\\me":1,"Plain":[1, 2],"Uni\u00e9":{"x":null}}"#;
    let facts = json_facts(body).unwrap();
    let data = facts.events[0].data.as_ref().unwrap().as_str();
    assert_eq!(
        data,
        r#"{"Ty\"pe":"A","Na\\me":1,"Plain":[1, 2],"Unié":{"x":null}}"#
    );
    let plain = json_facts(r#"{"Event":"HumanDetect","Type":"Alarm","Descrip":""}"#).unwrap();
    assert_eq!(
        plain.events[0].data.as_ref().unwrap().as_str(),
        r#"{"Type":"Alarm","Descrip":""}"#
    );
}
