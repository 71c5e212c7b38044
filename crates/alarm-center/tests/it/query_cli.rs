//! `alarm-center events`, `devices` and `config check` as a user runs them: filters like the API's,
//! `--follow` tailing the store, columns aligned whatever the ids' length.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use alarm_center_store::{Batch, Db, DeviceUpdate, NewEvent, SyncMode};

use crate::common::cli;

const LONG_ID: &str = "192.0.2.5@203.0.113.77-a-long-device-identity";

fn event(device: &str, code: &str, action: &str, kind: &str, at: i64) -> NewEvent {
    NewEvent {
        frame: alarm_center_store::FrameRef::None,
        device: device.into(),
        code: code.into(),
        action: action.into(),
        index: Some(0),
        channel: Some(1),
        channel_name: None,
        kind: kind.into(),
        device_time: None,
        received_at: at,
        data: None,
        synthetic: None,
    }
}

fn write(db: &mut Db, events: Vec<NewEvent>) {
    db.write(&Batch {
        events,
        ..Default::default()
    })
    .unwrap();
}

/// A store with two devices (one with a long id) and events an hour old and new.
fn store(dir: &Path) -> Db {
    let mut db = Db::open(dir, SyncMode::Normal).unwrap();
    let now = alarm_center_server::time::now_ms();
    let hour_ago = now - 3_600_000;
    db.write(&Batch {
        devices: [("CAM1", now), (LONG_ID, now)]
            .into_iter()
            .map(|(id, at)| DeviceUpdate {
                id: id.into(),
                state: Some((alarm_center_store::DeviceState::Online, at)),
                last_seen: at,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
    .unwrap();
    write(
        &mut db,
        vec![
            event("CAM1", "VideoMotion", "start", "alarm", hour_ago),
            event("CAM1", "VideoMotion", "stop", "alarm", hour_ago + 1),
            event(LONG_ID, "DeviceOnline", "pulse", "device", now),
            event(LONG_ID, "CrossLineDetection", "start", "alarm", now),
        ],
    );
    db
}

fn codes(json_lines: &str) -> Vec<String> {
    json_lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                v["code"].as_str().unwrap(),
                v["action"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn events_filter_by_action_kind_and_time_like_the_api() {
    let dir = tempfile::tempdir().unwrap();
    drop(store(dir.path()));
    let run = |extra: &[&str]| codes(&cli(&[&["events", "--json"], extra].concat(), dir.path()));
    assert_eq!(run(&["--action", "stop"]), ["VideoMotion stop"]);
    assert_eq!(run(&["--kind", "device"]), ["DeviceOnline pulse"]);
    assert_eq!(
        run(&["--until", "30m"]),
        ["VideoMotion stop", "VideoMotion start"]
    );
    assert_eq!(
        run(&["--since", "30m", "--action", "start"]),
        ["CrossLineDetection start"]
    );
}

#[test]
fn tables_stay_aligned_with_long_device_ids() {
    let dir = tempfile::tempdir().unwrap();
    drop(store(dir.path()));
    for command in ["events", "devices"] {
        let text = cli(&[command], dir.path());
        let lines: Vec<&str> = text.lines().collect();
        // The column after DEVICE starts at the same place on every line.
        let header = lines[0];
        let (name, next) = match command {
            "events" => ("DEVICE", "CODE"),
            _ => ("DEVICE", "STATE"),
        };
        let column = header.find(next).unwrap();
        assert!(header.find(name).unwrap() < column);
        for line in &lines[1..] {
            let before = &line[..column];
            assert!(
                before.ends_with("  "),
                "{command}: column {next} is not aligned:\n{text}"
            );
            assert!(
                !line[column..].starts_with(' '),
                "{command}: column {next} is not aligned:\n{text}"
            );
        }
        assert!(text.contains(LONG_ID), "{text}");
    }
}

#[test]
fn events_follow_prints_new_events_as_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = store(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(["events", "--follow", "--json", "--limit", "2", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        codes(&line).remove(0)
    };
    // The last two, oldest first, then what is written while it runs.
    assert_eq!(next(), "DeviceOnline pulse");
    assert_eq!(next(), "CrossLineDetection start");
    let now = alarm_center_server::time::now_ms();
    write(
        &mut db,
        vec![event("CAM1", "VideoLoss", "start", "alarm", now)],
    );
    assert_eq!(next(), "VideoLoss start");
    write(
        &mut db,
        vec![event("CAM1", "VideoLoss", "stop", "alarm", now)],
    );
    assert_eq!(next(), "VideoLoss stop");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn config_check_prints_the_listeners_and_sinks_it_would_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"0.0.0.0:15003\"\n[sinks.mqtt]\nurl = \"mqtt://ha:secret@broker.lan:1883\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    for needle in [
        ": OK",
        "devices:  listen 0.0.0.0:15003",
        "web UI:   listen 127.0.0.1:8080 (http://127.0.0.1:8080/)",
        "sinks:    mqtt → mqtt://ha:***@broker.lan:1883",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("secret"), "{text}");
}
