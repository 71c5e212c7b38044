//! parse_hex on the project samples and on real xxd / hexdump / tshark outputs.

use crate::common::*;
use alarm_center_capture::{parse_hex, sniff, HexError, InputKind};

fn parse_fixture(name: &str) -> Vec<alarm_center_capture::HexStream> {
    let text = String::from_utf8(read_fixture(name)).unwrap();
    parse_hex(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn samples_match_their_bin_files() {
    // (sample, number of dumps, first data line of the first dump)
    let samples = [
        ("dhip-rpc-replies", 2, 4),
        ("dvrip69-mask-motion-ch1-ch3", 1, 3),
        ("dvrip69-text-alarmlocal", 1, 3),
        ("xm-alarmcenter-humandetect", 1, 4),
    ];
    for (name, count, first_line) in samples {
        let streams = parse_fixture(&format!("sample-{name}.hex"));
        assert_eq!(streams.len(), count, "{name}");
        assert_eq!(streams[0].first_line, first_line, "{name}");
        let all: Vec<u8> = streams.iter().flat_map(|s| s.bytes.clone()).collect();
        assert_eq!(all, read_fixture(&format!("sample-{name}.bin")), "{name}");
    }
    // The two DHIP replies are separate dumps: 0x61 and 0x6f bytes.
    let dhip = parse_fixture("sample-dhip-rpc-replies.hex");
    assert_eq!((dhip[0].bytes.len(), dhip[1].bytes.len()), (0x61, 0x6f));
    assert_eq!(dhip[1].first_line, 12);
}

#[test]
fn sample_without_bin_splits_at_blank_lines() {
    let streams = parse_fixture("sample-dvrip-json-and-heartbeat.hex");
    let shape: Vec<(usize, u8, usize)> = streams
        .iter()
        .map(|s| (s.bytes.len(), s.bytes[0], s.first_line))
        .collect();
    assert_eq!(
        shape,
        [
            (0x7b, 0xf6, 5),
            (0x90, 0xf6, 15),
            (32, 0xa1, 26),
            (32, 0xb1, 30)
        ]
    );
    assert!(streams[0].bytes.ends_with(b"}\n\0"));
}

#[test]
fn real_tool_outputs_round_trip() {
    let input = read_fixture("hexdump/input.bin");
    for name in [
        "input.xxd",
        "input.xxd-g1",
        "input.xxd-p",
        "input.xxd-a",
        "input.hexdump-C",
    ] {
        let streams = parse_fixture(&format!("hexdump/{name}"));
        assert_eq!(streams.len(), 1, "{name}");
        assert_eq!(streams[0].bytes, input, "{name}");
        assert_eq!(streams[0].first_line, 1, "{name}");
    }
}

#[test]
fn tool_outputs_use_the_features_they_are_meant_to_test() {
    let text = |name: &str| String::from_utf8(read_fixture(name)).unwrap();
    let hexdump = text("hexdump/input.hexdump-C");
    assert!(
        hexdump.lines().any(|l| l == "*"),
        "hexdump -C output has a '*' line"
    );
    assert!(hexdump.lines().last().is_some_and(|l| l == "00000175"));
    assert!(text("hexdump/input.xxd-a").lines().any(|l| l == "*"));
    assert!(
        text("hexdump/input.xxd").contains("  deadbeefcafebabe\n"),
        "hex-looking gutter"
    );
}

/// The packet records of a little-endian classic pcap.
fn pcap_records(file: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= file.len() {
        let caplen = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push(&file[at + 16..at + 16 + caplen]);
        at += 16 + caplen;
    }
    out
}

#[test]
fn tshark_hex_dump_matches_the_capture_frames() {
    let streams = parse_fixture("hexdump/loopback-15002.tshark-x");
    let pcap = read_fixture("capture-loopback-15002.pcap");
    let frames = pcap_records(&pcap);
    assert_eq!(streams.len(), 12);
    for (i, (s, f)) in streams.iter().zip(&frames).enumerate() {
        assert_eq!(&s.bytes, f, "packet {}", i + 1);
    }
}

#[test]
fn fixtures_sniff_as_hex_or_binary() {
    for name in [
        "sample-dhip-rpc-replies.hex",
        "hexdump/input.xxd-p",
        "hexdump/input.hexdump-C",
    ] {
        assert_eq!(sniff(&read_fixture(name)), InputKind::Hex, "{name}");
    }
    for name in [
        "sample-dhip-rpc-replies.bin",
        "sample-xm-alarmcenter-humandetect.bin",
        "hexdump/input.bin",
    ] {
        assert_eq!(sniff(&read_fixture(name)), InputKind::Binary, "{name}");
    }
}

/// Applies `edit` to the lines of a fixture and parses the result.
fn edited(name: &str, edit: impl FnOnce(&mut Vec<String>)) -> Result<usize, HexError> {
    let text = String::from_utf8(read_fixture(name)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    parse_hex(&lines.join("\n")).map(|s| s.len())
}

#[test]
fn error_cases_name_line_and_problem() {
    let hd = "hexdump/input.hexdump-C";
    // Dropping the '*' line: offset jumps forward.
    let e = edited(hd, |l| {
        l.remove(4);
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "line 5: offset 0x80 expected 0x40");
    // Dropping a data line.
    let e = edited(hd, |l| {
        l.remove(7);
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "line 8: offset 0xb0 expected 0xa0");
    // An odd number of digits.
    let e = edited("hexdump/input.xxd-p", |l| l[2].push('7')).unwrap_err();
    assert!(matches!(e, HexError::OddDigits { line: 3, .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("line 3: odd number of hex digits"),
        "{e}"
    );
    // A line that is neither comment nor hex.
    let e = edited("sample-dvrip69-mask-motion-ch1-ch3.hex", |l| {
        l.insert(1, "Captured on site".into())
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: not hex data or a comment: \"Captured on site\""
    );
    // '*' at the very end, with no offset after it.
    let e = edited(hd, |l| {
        l.truncate(5);
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "line 5: '*' not followed by an offset line");
    // An offset going back (not to 0).
    let e = edited(hd, |l| l[6] = l[6].replacen("00000090", "00000010", 1)).unwrap_err();
    assert_eq!(e.to_string(), "line 7: offset 0x10 expected 0x90");
    // Empty input and comment-only input.
    assert_eq!(parse_hex("").unwrap_err(), HexError::Empty);
    assert_eq!(
        parse_hex("# nothing\n\n").unwrap_err().to_string(),
        "no hex data found (input is empty, blank or only comments)"
    );
    // Offset back to 0 without a blank line starts a new stream; a blank line does too.
    assert_eq!(
        edited(hd, |l| l.insert(6, "00000000  41 42  |AB|".into()))
            .unwrap_err()
            .line(),
        Some(8)
    );
    assert_eq!(
        edited("sample-dvrip69-mask-motion-ch1-ch3.hex", |l| {
            let again = l[2..].to_vec();
            l.extend(again);
        }),
        Ok(2)
    );
}
