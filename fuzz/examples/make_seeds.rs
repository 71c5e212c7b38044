//! Writes the seed corpora under `fuzz/seeds/<target>/` from the sample captures in
//! `tests/fixtures/sample-*.bin`, the HTTP requests in `tests/fixtures/http-notifyevent.bin` and frames
//! built with `alarm_center_proto::encode`.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`.

use std::fs;
use std::path::Path;

use alarm_center_proto::{encode, http};

/// `decoder_chunks` parameters: `[mode, m0, m1, m2, c0, c1, c2, c3]`.
const CHUNK_PARAMS: &[(&str, [u8; 8])] = &[
    // max_frame 64 + 0 = 64, one-byte feeds with empty feeds between them
    ("max64-bytewise", [0, 0, 0, 0, 1, 0, 1, 0]),
    // max_frame 64 + 192 = 256, chunks of 7, 13, 1 and 38 bytes
    ("max256-chunks", [1, 192, 0, 0, 7, 13, 1, 0x81]),
    // max_frame 65600 (mode 3: 64 + 0x010000 % 69937), big and small chunks
    ("max65600-mixed", [3, 0, 0, 1, 0xff, 3, 0x90, 2]),
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fixtures = root.join("tests/fixtures");
    let seeds = root.join("fuzz/seeds");

    let mut streams: Vec<(String, Vec<u8>)> = Vec::new();
    let mut names: Vec<_> = fs::read_dir(&fixtures)
        .expect("tests/fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("sample-") && name.ends_with(".bin")
        })
        .collect();
    names.sort();
    for path in names {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        streams.push((name, fs::read(&path).unwrap()));
    }
    // Three HTTP Alarm Center requests on one connection (Content-Length, chunked, Content-Length).
    streams.push((
        "http-notifyevent".into(),
        fs::read(fixtures.join("http-notifyevent.bin")).unwrap(),
    ));

    let motion = r#"{"method":"client.notifyEventStream","params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":0,"Data":{"Name":"cam 1"}}]}}"#;
    let encoded: Vec<(&str, Vec<u8>)> = vec![
        ("enc-dvrip-mask", encode::dvrip_mask(2, 0, 5)),
        (
            "enc-dvrip-mask-diskfull",
            encode::dvrip_mask(6, 1, 0x8000_0001),
        ),
        (
            "enc-dvrip-text",
            encode::dvrip_text(
                1,
                0,
                &[
                    ("alarm channel", "5"),
                    ("Time", "2023-01-16 10:00:00"),
                    ("Domain name", "nvr.example.org"),
                ],
            ),
        ),
        ("enc-dvrip-json", encode::dvrip_json(7, 0x1234, motion)),
        ("enc-dvrip-heartbeat", encode::dvrip_heartbeat()),
        (
            "enc-dhip-keepalive",
            encode::dhip(
                1,
                2,
                r#"{"method":"global.keepAlive","params":{"timeout":60},"id":2}"#,
            ),
        ),
        ("enc-dhip-event", encode::dhip(3, 4, motion)),
        (
            "enc-xm-alarm",
            encode::xm_alarm(
                "abc123",
                "192.168.1.10".parse().unwrap(),
                0,
                "HumanDetect",
                true,
                "2024-01-27 21:10:58",
            ),
        ),
        (
            "enc-xm-keepalive",
            encode::xm(
                1006,
                5,
                6,
                r#"{"Name":"KeepAlive","SessionID":"0x00000005"}"#,
            ),
        ),
        (
            "enc-bare-json",
            encode::bare_json(r#"{"Code":"AlarmLocal","Action":"Stop","Index":3}"#),
        ),
    ];
    let mut mixed = Vec::new();
    for (i, (_, frame)) in encoded.iter().enumerate() {
        mixed.extend_from_slice(frame);
        mixed.extend_from_slice([b"\r\n" as &[u8], b"", b"\0\0", b" "][i % 4]);
    }
    mixed.extend_from_slice(b"\x01garbage{\"a\":}");
    streams.push(("enc-mixed".into(), mixed));
    // A DVRIP header declaring a 100000-byte body: oversized for every small max_frame.
    let mut oversized = encode::dvrip_frame(0xF6, 0, [0; 24], &[b'x'; 300]);
    oversized[4..8].copy_from_slice(&100_000u32.to_le_bytes());
    oversized.extend_from_slice(&encode::dvrip_heartbeat());
    streams.push(("enc-oversized".into(), oversized));
    for (name, frame) in encoded {
        streams.push((name.into(), frame));
    }

    // HTTP Alarm Center mode: requests built with `encode::http_*`, kept out of `enc-mixed` so that the
    // seeds written before them stay as they were.
    let serial = [
        ("Host", "192.0.2.1:15002"),
        ("X-Serial-Number", "4L0123456789ABC"),
        ("Content-Type", "application/json"),
    ];
    let http: Vec<(&str, Vec<u8>)> = vec![
        (
            "enc-http-event",
            encode::http_event("192.0.2.1:15002", motion),
        ),
        (
            "enc-http-chunked",
            encode::http_chunked("POST", http::NOTIFY_PATH, &serial, motion.as_bytes(), 16),
        ),
        (
            "enc-http-put-keepalive",
            encode::http_request(
                "PUT",
                "/cgi-bin/KeepAlive",
                &[("X-MAC", "00:11:22:33:44:55"), ("Connection", "keep-alive")],
                br#"{"method":"global.keepAlive","params":{"timeout":60}}"#,
            ),
        ),
        (
            "enc-http-empty",
            encode::http_request("POST", "/heartbeat", &[("Host", "x")], b""),
        ),
        (
            "enc-http-form",
            encode::http_request(
                "POST",
                http::NOTIFY_PATH,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                b"Code=VideoMotion&Action=Start&Index=0",
            ),
        ),
    ];
    let mut http_mixed = Vec::new();
    for (i, (_, frame)) in http.iter().enumerate() {
        http_mixed.extend_from_slice(frame);
        // another variant between the requests
        http_mixed.extend_from_slice(&match i % 3 {
            0 => encode::dvrip_mask(2, 0, 5),
            1 => encode::bare_json(r#"{"Code":"AlarmLocal","Action":"Stop","Index":3}"#),
            _ => encode::dhip(3, 4, motion),
        });
        http_mixed.extend_from_slice([b"\r\n" as &[u8], b"", b"\0", b" "][i % 4]);
    }
    // Broken requests: a bad chunk size, a bad Content-Length, a control byte in the head, a head that
    // never ends.
    http_mixed.extend_from_slice(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    );
    http_mixed.extend_from_slice(b"PUT / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n");
    http_mixed.extend_from_slice(b"POST /\x01 HTTP/1.1\r\n\r\n");
    http_mixed.extend_from_slice(&encode::dvrip_heartbeat());
    http_mixed.extend_from_slice(b"POST /cgi-bin/NotifyEvent HTTP/1.1\r\nHost: x\r\n");
    streams.push(("enc-http-mixed".into(), http_mixed));
    // A request declaring a 100000-byte body, then a heartbeat: oversized for every small max_frame.
    let mut http_oversized = encode::http_request(
        "POST",
        http::NOTIFY_PATH,
        &[("Content-Length", "100000")],
        b"",
    );
    http_oversized.extend_from_slice(&[b'x'; 300]);
    http_oversized.extend_from_slice(&encode::dvrip_heartbeat());
    streams.push(("enc-http-oversized".into(), http_oversized));
    for (name, frame) in http {
        streams.push((name.into(), frame));
    }

    for target in ["decoder_chunks", "session", "roundtrip"] {
        let dir = seeds.join(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, stream) in &streams {
            match target {
                "decoder_chunks" => {
                    for (i, (pname, params)) in CHUNK_PARAMS.iter().enumerate() {
                        // every stream with the first parameter set, the samples and the mixed streams
                        // with all of them
                        let all = name.starts_with("sample-")
                            || matches!(
                                &name[..],
                                "enc-mixed" | "http-notifyevent" | "enc-http-mixed"
                            );
                        if i > 0 && !all {
                            continue;
                        }
                        fs::write(
                            dir.join(format!("{name}.{pname}")),
                            [&params[..], stream].concat(),
                        )
                        .unwrap();
                    }
                }
                "session" => {
                    fs::write(
                        dir.join(format!("{name}.default")),
                        [&[0xFF][..], stream].concat(),
                    )
                    .unwrap();
                    if matches!(
                        &name[..],
                        "enc-oversized" | "enc-mixed" | "enc-http-oversized" | "enc-http-mixed"
                    ) {
                        fs::write(
                            dir.join(format!("{name}.max64")),
                            [&[0][..], stream].concat(),
                        )
                        .unwrap();
                    }
                }
                _ => {
                    // Raw bytes: roundtrip reads its input as choices (arbitrary::Unstructured).
                    if name.starts_with("sample-")
                        || matches!(
                            &name[..],
                            "enc-mixed" | "http-notifyevent" | "enc-http-mixed"
                        )
                    {
                        fs::write(dir.join(name), stream).unwrap();
                    }
                }
            }
        }
        if target == "roundtrip" {
            // One of every item kind in turn, then the same with more bytes per choice.
            let counting: Vec<u8> = (0u8..=255).collect();
            fs::write(dir.join("counting"), &counting).unwrap();
            let items: Vec<u8> = (0u8..7)
                .flat_map(|k| [k, 0x41, 0x42, 3, 0, 0, 0, 0x11])
                .collect();
            fs::write(dir.join("each-item"), items).unwrap();
            // HTTP items (item choice 6, then 1 or 2 for a request rather than a heartbeat), with
            // varying method, path, header, body and chunking choices.
            let http_items: Vec<u8> = (0u8..8)
                .flat_map(|k| {
                    [
                        6,
                        1 + k % 2,
                        k,
                        k % 2,
                        2,
                        1,
                        k,
                        5,
                        0x41,
                        3,
                        0x7b,
                        k % 3,
                        2,
                        5,
                        0,
                    ]
                })
                .collect();
            fs::write(dir.join("http-items"), http_items).unwrap();
        }
    }
}
