//! `alarm-center decode` run as a real process on the fixtures.
//!
//! Expected outputs live in `tests/fixtures/expected/*.jsonl` and were reviewed by hand; after a
//! deliberate change of the output, regenerate them with `UPDATE_EXPECTED=1 cargo test -p alarm-center`
//! and review the diff.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(args)
        .current_dir(fixtures())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn alarm-center");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Decodes `input` with `args` and compares stdout with `expected/<name>.jsonl`.
fn snapshot(name: &str, args: &[&str]) {
    let output = run(args, None);
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got = String::from_utf8(output.stdout).unwrap();
    let path = fixtures().join("expected").join(format!("{name}.jsonl"));
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "{name}: line {} differs", i + 1);
    }
    assert_eq!(
        got.lines().count(),
        want.lines().count(),
        "{name}: number of frames"
    );
}

#[test]
fn every_sample_decodes_as_documented() {
    for sample in [
        "sample-dhip-rpc-replies.hex",
        "sample-dhip-rpc-replies.bin",
        "sample-dvrip-json-and-heartbeat.hex",
        "sample-dvrip69-mask-motion-ch1-ch3.hex",
        "sample-dvrip69-mask-motion-ch1-ch3.bin",
        "sample-dvrip69-text-alarmlocal.hex",
        "sample-dvrip69-text-alarmlocal.bin",
        "sample-xm-alarmcenter-humandetect.hex",
        "sample-xm-alarmcenter-humandetect.bin",
        "mixed-stream.bin",
        "http-notifyevent.hex",
        "http-notifyevent.bin",
    ] {
        snapshot(sample, &["decode", sample]);
    }
}

#[test]
fn samples_carry_the_documented_meaning() {
    let mask = lines(&run(
        &["decode", "sample-dvrip69-mask-motion-ch1-ch3.bin"],
        None,
    ));
    assert_eq!(mask[0]["events"][0]["code"], "VideoMotion");
    assert_eq!(mask[0]["events"][1]["channel"], 3);
    let xm = lines(&run(
        &["decode", "sample-xm-alarmcenter-humandetect.hex"],
        None,
    ));
    assert_eq!(xm[0]["device"]["ip"], "192.168.1.10");
    assert_eq!(xm[0]["command"], 1508);
    let dvrip = lines(&run(
        &["decode", "sample-dvrip-json-and-heartbeat.hex"],
        None,
    ));
    let kinds: Vec<_> = dvrip
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["request", "reply", "keepalive", "reply"]);
    assert_eq!(dvrip[1]["body"]["error"]["code"], 268_632_080);
}

#[test]
fn pcap_and_pcapng_decode_the_stream_towards_the_port() {
    snapshot(
        "capture-loopback-15002.pcap",
        &["decode", "--port", "15002", "capture-loopback-15002.pcap"],
    );
    for file in [
        "capture-loopback-15002.pcapng",
        "capture-loopback-15002-nano.pcap",
    ] {
        let frames = lines(&run(
            &["decode", "--input", "pcap", "--port", "15002", file],
            None,
        ));
        assert_eq!(frames.len(), 2, "{file}");
        assert_eq!(frames[0]["stream"]["dst"], "127.0.0.1:15002");
        assert_eq!(frames[1]["protocol"], "xm");
    }
    // The other direction carries nothing; without --port both are decoded.
    let reverse = run(
        &["decode", "--port", "1", "capture-loopback-15002.pcap"],
        None,
    );
    assert!(reverse.status.success());
    assert!(reverse.stdout.is_empty());
}

#[test]
fn http_requests_decode_from_a_real_capture_with_the_answers_left_out() {
    // A real loopback capture of an NVR-like client and `alarm-center serve` (make-http-capture.sh):
    // towards port 15002 are the three requests; the other direction holds the server's answers.
    snapshot(
        "capture-http-15002.pcapng",
        &["decode", "--port", "15002", "capture-http-15002.pcapng"],
    );
    let frames = lines(&run(
        &["decode", "--port", "15002", "capture-http-15002.pcapng"],
        None,
    ));
    let codes: Vec<_> = frames
        .iter()
        .map(|f| f["events"][0]["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        ["SmartMotionHuman", "CrossLineDetection", "FaceRecognition"]
    );
    assert_eq!(frames[1]["header"]["headers"][2][1], "chunked");
    assert_eq!(frames[1]["events"][0]["data"]["Name"], "cam1_r1_h_trip");
    assert!(frames[1]["events"][0].get("channel").is_none());
    assert_eq!(
        frames[2]["events"][0]["data"]["Candidates"][0]["Person"]["Name"],
        "Ann Example"
    );
    // Without --port the answers are decoded too: they are no requests, so they are kept as junk.
    let both = lines(&run(&["decode", "capture-http-15002.pcapng"], None));
    assert_eq!(both.iter().filter(|f| f["protocol"] == "http").count(), 3);
    assert!(both.iter().any(|f| f["protocol"] == "junk"));
}

#[test]
fn stdin_and_every_hex_style_give_the_same_frames() {
    let want = lines(&run(&["decode", "hexdump/input.bin"], None));
    assert!(want.len() >= 3, "{want:?}");
    for style in [
        "input.xxd",
        "input.xxd-g1",
        "input.xxd-p",
        "input.xxd-a",
        "input.hexdump-C",
    ] {
        let text = std::fs::read(fixtures().join("hexdump").join(style)).unwrap();
        let got = lines(&run(&["decode", "--input", "hex", "-"], Some(&text)));
        assert_eq!(got, want, "{style}");
    }
    let raw = std::fs::read(fixtures().join("sample-dvrip69-mask-motion-ch1-ch3.bin")).unwrap();
    let got = lines(&run(&["decode", "--input", "bin", "--raw"], Some(&raw)));
    assert_eq!(
        got[0]["raw"],
        "690000000400000000000000020000000000000000000000000000000000000005000000"
    );
}

#[test]
fn unreadable_input_is_one_line_and_a_failure() {
    for (args, stdin, says) in [
        (
            vec!["decode", "--input", "pcap", "-"],
            &b"not a capture"[..],
            "not a pcap",
        ),
        (
            vec!["decode", "--input", "hex", "-"],
            &b"00000000  zz 11\n"[..],
            "line 1",
        ),
        (
            vec!["decode", "--input", "hex", "-"],
            &b"\xff\xfe"[..],
            "UTF-8",
        ),
        (
            vec!["decode", "no-such-file.bin"],
            &b""[..],
            "no-such-file.bin",
        ),
        (
            vec!["decode", "--port", "15002", "--input", "bin", "-"],
            &b"x"[..],
            "--port",
        ),
    ] {
        let output = run(&args, Some(stdin));
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn garbage_is_output_not_fatal() {
    let output = run(
        &["decode", "--input", "bin", "-"],
        Some(b"\x01\x02\x03 hello {\x00"),
    );
    assert!(output.status.success());
    let frames = lines(&output);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["protocol"], "junk");
    assert_eq!(frames[0]["body"]["hex"], "0102032068656c6c6f207b00");
}
