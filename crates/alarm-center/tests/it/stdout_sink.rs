//! `serve --stdout` loses no event when the reader of standard output falls behind: more than the
//! broadcast's 1024 batches are committed while nobody reads the pipe, and every event still comes out,
//! once, in log order.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A pulse of device `SLOW-READER` as bare JSON, numbered `n`.
fn pulse(n: usize) -> Vec<u8> {
    let body = serde_json::json!({"method": "client.notifyEventStream", "params": {
        "SerialNo": "SLOW-READER",
        "eventList": [{"Code": "Probe", "Action": "Pulse", "Index": 0, "Data": {"n": n}}]}});
    format!("{body}\n").into_bytes()
}

#[test]
fn a_reader_that_falls_behind_still_gets_every_event_in_order() {
    const EVENTS: usize = 2500;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args([
            "serve",
            "--stdout",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("ALARM_CENTER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The device port, from the log.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(at) = line.find("listen=") {
                let _ = tx.send(line[at + 7..].trim().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    // Nobody reads standard output yet: its pipe fills after a few hundred lines.
    let mut device = TcpStream::connect(&addr).unwrap();
    for n in 0..EVENTS {
        device.write_all(&pulse(n)).unwrap();
        // One event per commit, mostly: far more than 1024 batches go by the blocked sink.
        std::thread::sleep(Duration::from_micros(500));
    }
    // Everything is committed before anyone reads.
    let deadline = Instant::now() + Duration::from_secs(60);
    let db = loop {
        if let Ok(db) = alarm_center_store::Db::open_read_only(dir.path()) {
            if db.event_count().unwrap() as usize > EVENTS {
                break db;
            }
        }
        assert!(Instant::now() < deadline, "events not committed");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(db);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut ids = Vec::new();
    let mut probes = Vec::new();
    // A line missing makes the wait time out instead of hanging.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        ids.push(event["id"].as_i64().unwrap());
        if event["code"] == "Probe" {
            probes.push(event["data"]["n"].as_u64().unwrap() as usize);
        }
        if probes.len() == EVENTS {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        probes,
        (0..EVENTS).collect::<Vec<_>>(),
        "events missing or out of order"
    );
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids not consecutive"
    );
}
