//! Schema creation and upgrades on real files: a new store, version 1 stores (as released, and from the
//! early builds without `events.channel_name`) upgraded to the current schema in one transaction, and
//! stores this build cannot use refused without being touched.

use std::path::Path;

use alarm_center_store::{Batch, Db, EventQuery, NewEvent, StoreError, SyncMode};

use crate::common::logged;

/// The schema version this build writes.
const CURRENT: i64 = 4;

/// Version 1 as released (`V1` of `schema.rs`), without `events.channel_name` when `channel_name` is
/// false (the early builds of version 1), or without `events.synthetic` when `synthetic` is false (no
/// build made that: a store the upgrade must fail on).
fn version_1_schema(channel_name: bool, synthetic: bool) -> String {
    format!(
        "
CREATE TABLE devices (id TEXT PRIMARY KEY, name TEXT, serial TEXT, mac TEXT, domain TEXT, ip TEXT, peer TEXT,
    protocol TEXT, state TEXT NOT NULL, state_since INTEGER NOT NULL, first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL, keepalive_period INTEGER, first_frame INTEGER);
CREATE TABLE connections (id INTEGER PRIMARY KEY, device TEXT, peer TEXT NOT NULL, opened_at INTEGER NOT NULL,
    closed_at INTEGER, close_reason TEXT, frames INTEGER, bytes INTEGER);
CREATE TABLE frames (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, device TEXT, connection INTEGER,
    stream_offset INTEGER NOT NULL, protocol TEXT NOT NULL, command INTEGER, kind TEXT NOT NULL,
    body_format TEXT NOT NULL, error TEXT, bytes BLOB NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, device TEXT NOT NULL, code TEXT NOT NULL, action TEXT NOT NULL,
    idx INTEGER, channel INTEGER, {} kind TEXT NOT NULL, device_time TEXT,
    received_at INTEGER NOT NULL, frame_id INTEGER, data TEXT {});
CREATE INDEX events_device ON events(device, id);
PRAGMA user_version = 1;
",
        if channel_name { "channel_name TEXT," } else { "" },
        if synthetic { ", synthetic TEXT" } else { "" },
    )
}

/// A version 1 store with 3 frames (1–3, of 10, 20 and 30 bytes), 4 events (ids 1–4, event 4 on frame
/// 3) and a device whose first frame is 7, deleted long ago.
fn version_1_store(dir: &Path, channel_name: bool, synthetic: bool) {
    let conn = rusqlite::Connection::open(dir.join(alarm_center_store::DB_FILE)).unwrap();
    conn.execute_batch(&version_1_schema(channel_name, synthetic))
        .unwrap();
    crate::common::old_frames(&conn);
    for id in 1..=4 {
        conn.execute(
            "INSERT INTO events (id, device, code, action, kind, received_at, frame_id)
             VALUES (?1, 'SN1', 'Code' || ?1, 'start', 'alarm', ?1, ?2)",
            rusqlite::params![id, (id == 4).then_some(3)],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO devices (id, state, state_since, first_seen, last_seen, first_frame)
         VALUES ('SN1', 'online', 1, 1, 4, 7)",
        [],
    )
    .unwrap();
}

fn open_file(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(alarm_center_store::DB_FILE)).unwrap()
}

fn user_version(dir: &Path) -> i64 {
    open_file(dir)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// Every table and index with, for tables, each column's name, type, NOT NULL, default and key
/// position, in column order; and whether ids of the table are never reused (AUTOINCREMENT).
fn shape(dir: &Path) -> Vec<String> {
    let conn = open_file(dir);
    let mut stmt = conn
        .prepare(
            "SELECT type, name, tbl_name, instr(upper(sql), 'AUTOINCREMENT') > 0 FROM sqlite_master
             WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .unwrap();
    let objects: Vec<(String, String, String, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut shape = Vec::new();
    for (kind, name, table, autoincrement) in objects {
        shape.push(format!(
            "{kind} {name} on {table} autoincrement={autoincrement}"
        ));
        if kind == "table" {
            let mut columns = conn
                .prepare(
                    "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)",
                )
                .unwrap();
            let columns = columns
                .query_map([&name], |r| {
                    Ok(format!(
                        "  {} {} notnull={} default={:?} pk={}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?
                    ))
                })
                .unwrap();
            for column in columns {
                shape.push(column.unwrap());
            }
        }
    }
    shape
}

fn fresh_shape() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    drop(Db::open(dir.path(), SyncMode::Normal).unwrap());
    shape(dir.path())
}

fn event(at: i64, channel_name: &str) -> NewEvent {
    NewEvent {
        frame: alarm_center_store::FrameRef::None,
        device: "SN1".into(),
        code: "VideoMotion".into(),
        action: "start".into(),
        index: Some(0),
        channel: Some(1),
        channel_name: Some(channel_name.into()),
        kind: "alarm".into(),
        device_time: None,
        received_at: at,
        data: None,
        synthetic: None,
    }
}

#[test]
fn a_new_store_is_created_at_the_current_version_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = logged(|| Db::open(dir.path(), SyncMode::Normal).unwrap());
    drop(db);
    assert!(!log.contains("upgrad"), "{log}");
    assert_eq!(user_version(dir.path()), CURRENT);
    let shape = shape(dir.path());
    for table in ["events", "frames"] {
        let line = format!("table {table} on {table} autoincrement=true");
        assert!(shape.contains(&line), "{shape:#?}");
    }
    for table in ["devices", "connections", "sink_cursors", "dead_letters"] {
        let line = format!("table {table} on {table} autoincrement=false");
        assert!(shape.contains(&line), "{shape:#?}");
    }
    // Version 4: the per-device index is a table the writer fills in bulk, not an index on events.
    assert!(
        shape.contains(&"table device_events on device_events autoincrement=false".to_owned())
            && shape.contains(&"table device_index on device_index autoincrement=false".to_owned())
            && !shape.iter().any(|line| line.contains("events_device")),
        "{shape:#?}"
    );
}

#[test]
fn version_1_stores_are_upgraded_to_the_new_stores_schema_keeping_their_rows() {
    let fresh = fresh_shape();
    for channel_name in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        version_1_store(dir.path(), channel_name, true);
        let (db, log) = logged(|| Db::open(dir.path(), SyncMode::Normal).unwrap());
        let mut db = db;
        assert!(
            log.contains("upgrading the store's schema")
                && log.contains("from=1 to=4")
                && log.contains("store schema upgraded")
                && log.contains("took="),
            "channel_name={channel_name}: {log}"
        );
        assert_eq!(shape(dir.path()), fresh, "channel_name={channel_name}");
        assert_eq!(user_version(dir.path()), CURRENT);

        let events = db
            .events(&EventQuery {
                ascending: true,
                ..Default::default()
            })
            .unwrap();
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.id,
                    e.event.code.clone(),
                    e.frame_id,
                    e.event.channel_name.clone(),
                )
            })
            .collect();
        let expected: Vec<_> = (1..=4)
            .map(|i| (i, format!("Code{i}"), (i == 4).then_some(3), None))
            .collect();
        assert_eq!(rows, expected, "channel_name={channel_name}");
        let frames = db.frames(&Default::default()).unwrap();
        let lengths: Vec<(i64, usize)> = frames.iter().map(|f| (f.id, f.length)).collect();
        assert_eq!(lengths, [(3, 30), (2, 20), (1, 10)]);

        // The column is there to write, and new ids continue above every id ever referred to.
        let written = db
            .write(&Batch {
                events: vec![event(10, "Door")],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(written.event_ids, [5]);
        let last = db
            .events(&EventQuery {
                after_id: Some(4),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].event.channel_name.as_deref(), Some("Door"));
        let next_frame: i64 = open_file(dir.path())
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'frames'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(next_frame, 7, "above the device's first frame");

        // Upgraded once: the next open has nothing to do.
        drop(db);
        let (_db, log) = logged(|| Db::open(dir.path(), SyncMode::Normal).unwrap());
        assert!(!log.contains("upgrad"), "{log}");
    }
}

#[test]
fn a_failed_upgrade_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    // Without `synthetic`, the rebuild of the events table (version 3) fails after version 2's steps.
    version_1_store(dir.path(), false, false);
    let before = shape(dir.path());
    let err = Db::open(dir.path(), SyncMode::Normal).unwrap_err();
    assert!(
        matches!(err, StoreError::Sqlite(_)) && err.to_string().contains("synthetic"),
        "{err}"
    );
    assert_eq!(user_version(dir.path()), 1);
    assert_eq!(
        shape(dir.path()),
        before,
        "nothing of versions 2 and 3 kept"
    );
}

#[test]
fn an_old_store_opened_read_only_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    version_1_store(dir.path(), false, true);
    let before = shape(dir.path());
    let err = Db::open_read_only(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooOld {
                found: 1,
                known: CURRENT
            }
        ),
        "{err}"
    );
    assert_eq!(user_version(dir.path()), 1);
    assert_eq!(shape(dir.path()), before);
}

#[test]
fn a_store_newer_than_this_build_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    drop(Db::open(dir.path(), SyncMode::Normal).unwrap());
    open_file(dir.path())
        .execute_batch("PRAGMA user_version = 5; CREATE TABLE later (x);")
        .unwrap();
    let before = shape(dir.path());
    for read_only in [false, true] {
        let err = if read_only {
            Db::open_read_only(dir.path()).unwrap_err()
        } else {
            Db::open(dir.path(), SyncMode::Normal).unwrap_err()
        };
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 5,
                    known: CURRENT
                }
            ),
            "read_only={read_only}: {err}"
        );
        assert_eq!(user_version(dir.path()), 5);
        assert_eq!(shape(dir.path()), before);
    }
}
