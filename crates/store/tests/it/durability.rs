//! Issue 9 on a real SQLite file: ids are never reused, a version 2 store is upgraded, cursors ahead of
//! the log are repaired, dead letters have their own retention, a size limit never empties the log and
//! counts the write-ahead log, frame lists never read the blobs, damage is found.

use std::io::{Seek, SeekFrom, Write};

use alarm_center_store::{
    Batch, Db, DeviceUpdate, EventQuery, FrameQuery, NewFrame, Retention, SinkCounts, SyncMode,
    SIZE_KEEPS_DEAD_LETTERS, SIZE_KEEPS_EVENTS, SIZE_KEEPS_FRAMES,
};

use crate::common::{event, logged};

fn frame(at: i64, len: usize) -> NewFrame {
    NewFrame {
        received_at: at,
        device: Some("SN1".into()),
        connection: 1,
        stream_offset: 0,
        protocol: "junk",
        command: None,
        kind: "unknown",
        body_format: "binary",
        error: None,
        bytes: (0..len)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into(),
    }
}

/// What a sink reads next: the events after its cursor, in log order.
fn unread(db: &Db, sink: &str) -> Vec<i64> {
    let position = db.sink_cursor(sink).unwrap().unwrap().position;
    db.events(&EventQuery {
        after_id: Some(position),
        ascending: true,
        limit: Some(10_000),
        ..Default::default()
    })
    .unwrap()
    .iter()
    .map(|e| e.id)
    .collect()
}

#[test]
fn event_and_frame_ids_are_never_reused_after_retention_empties_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let written = db
        .write(&Batch {
            frames: (0..100).map(|i| frame(i, 40)).collect(),
            events: (0..100)
                .map(|i| event(i, "VideoMotion", Some(i as usize)))
                .collect(),
            ..Default::default()
        })
        .unwrap();
    let (old_event, old_frame) = (written.event_ids[99], written.frame_ids[99]);
    // The sink delivered everything; then retention deletes everything.
    db.save_sink_cursor("mqtt", old_event, SinkCounts::default(), None, 0)
        .unwrap();
    let everything_old = Retention {
        events_max_age_ms: Some(1),
        frames_max_age_ms: Some(1),
        keep_events_after: Some(old_event),
        ..Default::default()
    };
    db.apply_retention(&everything_old, 1_000_000).unwrap();
    assert_eq!(
        (db.event_count().unwrap(), db.frame_count().unwrap()),
        (0, 0)
    );
    assert_eq!(
        db.last_event_id().unwrap(),
        old_event,
        "lag stays 0, not negative"
    );

    let next = db
        .write(&Batch {
            frames: vec![frame(2_000_000, 40)],
            events: vec![event(2_000_000, "VideoMotion", Some(0))],
            ..Default::default()
        })
        .unwrap();
    assert!(next.event_ids[0] > old_event, "{next:?} after {old_event}");
    assert!(next.frame_ids[0] > old_frame, "{next:?} after {old_frame}");
    assert_eq!(
        unread(&db, "mqtt"),
        next.event_ids,
        "the sink sees the new event"
    );

    // Also across a restart.
    db.save_sink_cursor("mqtt", next.event_ids[0], SinkCounts::default(), None, 0)
        .unwrap();
    db.apply_retention(
        &Retention {
            keep_events_after: Some(next.event_ids[0]),
            ..everything_old
        },
        3_000_000,
    )
    .unwrap();
    drop(db);
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    assert_eq!(db.event_count().unwrap(), 0);
    let last = db
        .write(&Batch {
            events: vec![event(4_000_000, "VideoMotion", None)],
            ..Default::default()
        })
        .unwrap();
    assert!(last.event_ids[0] > next.event_ids[0]);
    assert_eq!(unread(&db, "mqtt"), last.event_ids);
}

/// The schema of version 2 as released (V1 and V2 of `schema.rs` before version 3).
const SCHEMA_V2: &str = "
CREATE TABLE devices (id TEXT PRIMARY KEY, name TEXT, serial TEXT, mac TEXT, domain TEXT, ip TEXT, peer TEXT,
    protocol TEXT, state TEXT NOT NULL, state_since INTEGER NOT NULL, first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL, keepalive_period INTEGER, first_frame INTEGER);
CREATE TABLE connections (id INTEGER PRIMARY KEY, device TEXT, peer TEXT NOT NULL, opened_at INTEGER NOT NULL,
    closed_at INTEGER, close_reason TEXT, frames INTEGER, bytes INTEGER);
CREATE TABLE frames (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, device TEXT, connection INTEGER,
    stream_offset INTEGER NOT NULL, protocol TEXT NOT NULL, command INTEGER, kind TEXT NOT NULL,
    body_format TEXT NOT NULL, error TEXT, bytes BLOB NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, device TEXT NOT NULL, code TEXT NOT NULL, action TEXT NOT NULL,
    idx INTEGER, channel INTEGER, channel_name TEXT, kind TEXT NOT NULL, device_time TEXT,
    received_at INTEGER NOT NULL, frame_id INTEGER, data TEXT, synthetic TEXT);
CREATE INDEX events_device ON events(device, id);
CREATE TABLE sink_cursors (sink TEXT PRIMARY KEY, position INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
    filtered INTEGER NOT NULL DEFAULT 0, dead_letters INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_error_at INTEGER, updated_at INTEGER NOT NULL);
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, sink TEXT NOT NULL, event_id INTEGER NOT NULL,
    at INTEGER NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL, request TEXT);
PRAGMA user_version = 2;
";

/// A version 2 store after the bug: retention had emptied the log, the ids started again from 1 (5
/// events now), and the `mqtt` cursor stayed at 21. Frames 1–3 exist; an event points at frame 40
/// and a device at frame 42, both deleted long ago.
fn version_2_store(dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(dir.join(alarm_center_store::DB_FILE)).unwrap();
    conn.execute_batch(SCHEMA_V2).unwrap();
    crate::common::old_frames(&conn);
    for id in 1..=5 {
        conn.execute(
            "INSERT INTO events (id, device, code, action, kind, received_at, frame_id, data)
             VALUES (?1, 'SN1', 'Code' || ?1, 'start', 'alarm', ?1, ?2, '{\"i\":' || ?1 || '}')",
            [id, if id == 5 { 40 } else { id.min(3) }],
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO devices (id, state, state_since, first_seen, last_seen, first_frame)
             VALUES ('SN1', 'online', 1, 1, 5, 42);
         INSERT INTO sink_cursors (sink, position, updated_at) VALUES ('mqtt', 21, 0), ('webhook:a', 3, 0);
         INSERT INTO dead_letters (sink, event_id, at, attempts, error) VALUES ('webhook:a', 2, 2, 5, 'HTTP 500');",
    )
    .unwrap();
}

#[test]
fn a_version_2_store_is_upgraded_keeping_its_rows_and_its_cursors_are_repaired_loudly() {
    let dir = tempfile::tempdir().unwrap();
    version_2_store(dir.path());
    let (db, log) = logged(|| Db::open(dir.path(), SyncMode::Normal).unwrap());
    let mut db = db;
    assert!(
        log.contains("ERROR")
            && log.contains("sink=mqtt ")
            && log.contains("cursor=21")
            && log.contains("last_event_id=5")
            && !log.contains("webhook:a"),
        "{log}"
    );
    drop(db);
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    // Version 4: the index on events (device, id) gave way to `device_events`, filled from the log.
    let indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'events_device'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    let indexed: Vec<(String, i64)> = conn
        .prepare("SELECT device, id FROM device_events ORDER BY device, id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        indexed,
        (1..=5).map(|i| ("SN1".to_owned(), i)).collect::<Vec<_>>()
    );
    let upto: i64 = conn
        .query_row("SELECT upto FROM device_index", [], |r| r.get(0))
        .unwrap();
    assert_eq!(upto, 5);
    drop(conn);
    db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    assert_eq!(db.integrity_problem().unwrap(), None);

    // Every row kept, as it was.
    let events = db
        .events(&EventQuery {
            ascending: true,
            ..Default::default()
        })
        .unwrap();
    let summary: Vec<(i64, String, Option<i64>, String)> = events
        .iter()
        .map(|e| {
            let data = e.event.data.as_deref().unwrap().to_owned();
            (e.id, e.event.code.clone(), e.frame_id, data)
        })
        .collect();
    assert_eq!(
        summary,
        (1..=5)
            .map(|i| (
                i,
                format!("Code{i}"),
                Some(if i == 5 { 40 } else { i.min(3) }),
                format!(r#"{{"i":{i}}}"#)
            ))
            .collect::<Vec<_>>()
    );
    let frames = db.frames(&FrameQuery::default()).unwrap();
    let lengths: Vec<(i64, usize)> = frames.iter().map(|f| (f.id, f.length)).collect();
    assert_eq!(lengths, [(3, 30), (2, 20), (1, 10)]);
    assert_eq!(db.frame(2).unwrap().unwrap().bytes, vec![0; 20]);
    assert_eq!(db.dead_letters("webhook:a").unwrap().len(), 1);

    // The cursor that was ahead now delivers the 5 events it never saw; the other is untouched.
    assert_eq!(unread(&db, "mqtt"), [1, 2, 3, 4, 5]);
    assert_eq!(unread(&db, "webhook:a"), [4, 5]);
    // New ids continue above everything a sink or an event ever referred to.
    let next = db
        .write(&Batch {
            frames: vec![frame(10, 5)],
            events: vec![event(10, "VideoMotion", Some(0))],
            ..Default::default()
        })
        .unwrap();
    assert!(next.event_ids[0] > 21, "{next:?}");
    assert!(next.frame_ids[0] > 42, "{next:?}");
    assert_eq!(unread(&db, "mqtt"), [1, 2, 3, 4, 5, next.event_ids[0]]);
    assert!(db.last_event_id().unwrap() >= db.sink_cursor("mqtt").unwrap().unwrap().position);
}

#[test]
fn a_cursor_ahead_of_the_log_is_repaired_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let ids = db
        .write(&Batch {
            events: (0..10).map(|i| event(i, "VideoMotion", None)).collect(),
            ..Default::default()
        })
        .unwrap()
        .event_ids;
    db.save_sink_cursor("webhook:x", 1_000, SinkCounts::default(), None, 0)
        .unwrap();
    drop(db);
    let (db, log) = logged(|| Db::open(dir.path(), SyncMode::Normal).unwrap());
    let mut db = db;
    assert!(
        log.contains("sink=webhook:x ")
            && log.contains("cursor=1000")
            && log.contains("last_event_id=10"),
        "{log}"
    );
    assert_eq!(unread(&db, "webhook:x"), ids);
    let next = db
        .write(&Batch {
            events: vec![event(20, "VideoMotion", None)],
            ..Default::default()
        })
        .unwrap();
    assert!(next.event_ids[0] > 1_000, "{next:?}");
    // Nothing to repair the next time: no error.
    drop(db);
    let (_db, log) = logged(|| Db::open(dir.path(), SyncMode::Normal).unwrap());
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_read_only_open_of_an_old_schema_says_how_to_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    version_2_store(dir.path());
    let err = Db::open_read_only(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("older") && err.contains("alarm-center serve"),
        "{err}"
    );
}

fn add_dead_letters(db: &Db, n: i64, request_len: usize) {
    let request = "r".repeat(request_len);
    for i in 0..n {
        db.add_dead_letter("webhook:a", i, i * 1_000, 5, "HTTP 500", Some(&request))
            .unwrap();
    }
}

#[test]
fn dead_letters_are_pruned_by_age_and_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    add_dead_letters(&db, 50, 10);
    // Recorded at 0 s, 1 s, … 49 s; at 50 s, older than 20 s means before 30 s.
    let report = db
        .apply_retention(
            &Retention {
                dead_letters_max_age_ms: Some(20_000),
                ..Default::default()
            },
            50_000,
        )
        .unwrap();
    assert_eq!(report.dead_letters, 30);
    let report = db
        .apply_retention(
            &Retention {
                dead_letters_max_count: Some(5),
                ..Default::default()
            },
            50_000,
        )
        .unwrap();
    assert_eq!(report.dead_letters, 15);
    let left: Vec<i64> = db
        .dead_letters("webhook:a")
        .unwrap()
        .iter()
        .map(|d| d.event_id)
        .collect();
    assert_eq!(left, [45, 46, 47, 48, 49], "the newest stay");
}

#[test]
fn a_size_limit_never_empties_the_log_and_says_why_it_cannot_be_met() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let total_events = SIZE_KEEPS_EVENTS as i64 + 2_000;
    db.write(&Batch {
        frames: (0..300).map(|i| frame(i, 1_024)).collect(),
        events: (0..total_events)
            .map(|i| event(i, "VideoMotion", None))
            .collect(),
        ..Default::default()
    })
    .unwrap();
    // The failing-webhook case: dead letters alone are over the limit.
    add_dead_letters(&db, 2_000, 4_096);
    let max = 1024 * 1024;
    assert!(db.size_bytes().unwrap() > 8 * max);
    let report = db
        .apply_retention(
            &Retention {
                max_bytes: Some(max),
                ..Default::default()
            },
            1_000_000,
        )
        .unwrap();
    assert_eq!(db.event_count().unwrap(), SIZE_KEEPS_EVENTS as i64);
    assert_eq!(db.frame_count().unwrap(), SIZE_KEEPS_FRAMES as i64);
    assert_eq!(
        db.dead_letters("webhook:a").unwrap().len() as u64,
        SIZE_KEEPS_DEAD_LETTERS
    );
    let newest = db
        .events(&EventQuery {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        newest[0].event.received_at,
        total_events - 1,
        "the newest events stay"
    );
    let unmet = report.size_unmet.expect("the limit cannot be met");
    assert_eq!(unmet.max_bytes, max);
    assert!(unmet.size_bytes > max);
    assert!(
        unmet.reason.contains("newest 10000 events") && unmet.reason.contains("left: 10000 events"),
        "{}",
        unmet.reason
    );
    assert_eq!(report.events, 2_000);
}

#[test]
fn the_write_ahead_log_counts_in_the_size_and_is_given_back_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    db.disable_auto_checkpoint().unwrap();
    db.write(&Batch {
        events: (0..1_000).map(|i| event(i, "VideoMotion", None)).collect(),
        ..Default::default()
    })
    .unwrap();
    // Two thousand small commits: the log grows by a page or two each, the database hardly at all.
    for i in 0..2_000 {
        db.write(&Batch {
            devices: vec![DeviceUpdate {
                id: "SN1".into(),
                last_seen: i,
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
    }
    let wal = std::fs::metadata(db.wal_path()).unwrap().len();
    let used = db.used_bytes().unwrap();
    assert!(wal > 4 * used, "wal {wal} used {used}");
    assert_eq!(db.size_bytes().unwrap(), used + wal);
    let max = used + wal / 4;
    let report = db
        .apply_retention(
            &Retention {
                max_bytes: Some(max),
                ..Default::default()
            },
            1_000_000,
        )
        .unwrap();
    assert_eq!(report.deleted(), 0, "the log was the excess: {report:?}");
    assert_eq!(report.size_unmet, None);
    let wal_after = std::fs::metadata(db.wal_path()).map_or(0, |m| m.len());
    assert!(
        db.used_bytes().unwrap() + wal_after <= max,
        "wal {wal_after} used {} max {max}",
        db.used_bytes().unwrap()
    );
    assert_eq!(db.event_count().unwrap(), 1_000);
}

#[test]
fn frame_lists_carry_the_length_but_never_read_the_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let junk = frame(1, 64 * 1024);
    db.write(&Batch {
        frames: vec![junk.clone(); 20],
        ..Default::default()
    })
    .unwrap();
    let list = db
        .frames(&FrameQuery {
            limit: Some(20),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(list.len(), 20);
    assert!(
        list.iter()
            .all(|f| f.length == 64 * 1024 && f.bytes.is_empty()),
        "{:?}",
        list.iter()
            .map(|f| (f.length, f.bytes.len()))
            .collect::<Vec<_>>()
    );
    let one = db.frame(list[0].id).unwrap().unwrap();
    assert_eq!((one.length, &one.bytes[..]), (64 * 1024, &junk.bytes[..]));
}

#[test]
fn quick_check_finds_a_page_damaged_inside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Db::quick_check(dir.path()).unwrap(), None, "no store yet");
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    db.write(&Batch {
        events: (0..5_000).map(|i| event(i, "VideoMotion", None)).collect(),
        ..Default::default()
    })
    .unwrap();
    drop(db); // the last connection checkpoints the log into the file
    assert_eq!(Db::quick_check(dir.path()).unwrap(), None);
    let path = dir.path().join(alarm_center_store::DB_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
    file.write_all(&[0xA5; 3 * 4096]).unwrap();
    drop(file);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len,
        "not truncated"
    );
    let problem = Db::quick_check(dir.path()).unwrap().expect("damage found");
    assert!(!problem.is_empty() && problem != "ok", "{problem}");
}
