//! The store on a real SQLite file.

use alarm_center_store::{
    Batch, Db, DeviceRemoval, DeviceState, DeviceUpdate, EventQuery, FrameRef, NewEvent, NewFrame,
    Retention, SyncMode,
};

use crate::common::event;

fn frame(at: i64) -> NewFrame {
    NewFrame {
        received_at: at,
        device: Some("SN1".into()),
        connection: 1,
        stream_offset: 0,
        protocol: "dvrip",
        command: Some(0x69),
        kind: "alarm",
        body_format: "mask",
        error: None,
        bytes: vec![0x69; 36].into(),
    }
}

#[test]
fn batches_commit_atomically_and_query_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let batch = Batch {
        frames: vec![frame(1_000), frame(2_000)],
        events: vec![
            event(1_000, "VideoMotion", Some(0)),
            event(2_000, "VideoLoss", Some(1)),
        ],
        devices: vec![DeviceUpdate {
            id: "SN1".into(),
            serial: Some("SN1".into()),
            state: Some((DeviceState::Online, 1_000)),
            last_seen: 2_000,
            first_frame: FrameRef::InBatch(0),
            ..Default::default()
        }],
        ..Default::default()
    };
    let ids = db.write(&batch).unwrap();
    assert_eq!(ids.event_ids.len(), 2);
    assert!(ids.event_ids[0] < ids.event_ids[1]);
    let reader = Db::open_read_only(dir.path()).unwrap();
    let all = reader.events(&EventQuery::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].event.code, "VideoLoss", "newest first");
    assert_eq!(all[1].frame_id, Some(ids.frame_ids[0]));
    assert_eq!(all[1].event.data.as_deref().unwrap(), r#"{"a":1}"#);
    let motion = reader
        .events(&EventQuery {
            code: Some("VideoMotion".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(motion.len(), 1);
    let devices = reader.devices().unwrap();
    assert_eq!(devices[0].state, DeviceState::Online);
    assert_eq!(devices[0].last_seen, "1970-01-01T00:00:02.000Z");
    assert_eq!(reader.integrity_problem().unwrap(), None);
}

/// Frames and events go in several rows per statement (32, then 16, 8, 4, 2 and 1 for the rest): every
/// id returned must be the row written from the same place in the batch, across statements of every
/// size and several batches.
#[test]
fn ids_match_their_rows_across_multi_row_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    for (round, n) in [(0, 70), (1, 33), (2, 5), (3, 63), (4, 1)] {
        let base = round * 1_000;
        let frames: Vec<NewFrame> = (0..n)
            .map(|i| NewFrame {
                stream_offset: (base + i) as u64,
                ..frame(base + i)
            })
            .collect();
        // Events point at the frames in reverse, and one in three at none.
        let events: Vec<NewEvent> = (0..n)
            .map(|i| {
                let carrier = (i % 3 != 0).then_some((n - 1 - i) as usize);
                event(base + i, &format!("Code{}", base + i), carrier)
            })
            .collect();
        let ids = db
            .write(&Batch {
                frames,
                events,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids.frame_ids.len(), n as usize);
        assert_eq!(ids.event_ids.len(), n as usize);
        assert!(ids.event_ids.windows(2).all(|w| w[0] < w[1]));
        for (i, &id) in ids.frame_ids.iter().enumerate() {
            let stored = db.frame(id).unwrap().unwrap();
            assert_eq!(
                stored.stream_offset,
                base + i as i64,
                "frame {i} of round {round}"
            );
        }
        let stored = db
            .events(&EventQuery {
                ascending: true,
                limit: Some(1_000),
                ..Default::default()
            })
            .unwrap();
        for (i, &id) in ids.event_ids.iter().enumerate() {
            let e = stored.iter().find(|e| e.id == id).unwrap();
            assert_eq!(
                e.event.code,
                format!("Code{}", base + i as i64),
                "event {i} of round {round}"
            );
            let carrier = (i % 3 != 0).then(|| ids.frame_ids[n as usize - 1 - i]);
            assert_eq!(e.frame_id, carrier, "event {i} of round {round}");
        }
    }
}

#[test]
fn device_updates_keep_what_they_do_not_say() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let first = DeviceUpdate {
        id: "d".into(),
        mac: Some("aa:bb".into()),
        state: Some((DeviceState::Online, 5)),
        last_seen: 5,
        ..Default::default()
    };
    db.write(&Batch {
        devices: vec![first],
        ..Default::default()
    })
    .unwrap();
    let later = DeviceUpdate {
        id: "d".into(),
        last_seen: 9,
        ..Default::default()
    };
    db.write(&Batch {
        devices: vec![later],
        ..Default::default()
    })
    .unwrap();
    let row = &db.devices().unwrap()[0];
    assert_eq!(row.mac.as_deref(), Some("aa:bb"));
    assert_eq!(row.state, DeviceState::Online);
    assert_eq!(row.last_seen, "1970-01-01T00:00:00.009Z");
    assert_eq!(db.device_state("d").unwrap(), Some(DeviceState::Online));
}

/// A `last_seen`-only update (the periodic flush of keepAlives) takes a narrow path: it never moves
/// `last_seen` back, leaves the other columns, and still creates a row that is missing.
#[test]
fn last_seen_updates_move_forward_only_and_create_a_missing_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let first = DeviceUpdate {
        serial: Some("S1".into()),
        state: Some((DeviceState::Online, 5)),
        keepalive_period: Some(30),
        ..only_seen("d", 5)
    };
    db.write(&Batch {
        devices: vec![
            first,
            only_seen("d", 20),
            only_seen("d", 12),
            only_seen("new", 7),
        ],
        ..Default::default()
    })
    .unwrap();
    let rows = db.devices().unwrap();
    let d = rows.iter().find(|r| r.id == "d").unwrap();
    assert_eq!(d.last_seen, "1970-01-01T00:00:00.020Z");
    assert_eq!(d.serial.as_deref(), Some("S1"));
    assert_eq!(d.keepalive_period, Some(30));
    assert_eq!(d.state, DeviceState::Online);
    let new = rows
        .iter()
        .find(|r| r.id == "new")
        .expect("a missing row is created");
    assert_eq!(new.last_seen, "1970-01-01T00:00:00.007Z");
    assert_eq!(new.first_seen, "1970-01-01T00:00:00.007Z");
    assert_eq!(new.state, DeviceState::Online);
}

/// A batch of `last_seen`-only updates for many devices: every device gets its own time, a device
/// twice in the batch keeps the later, a device without a row gets one.
#[test]
fn last_seen_updates_of_many_devices_each_reach_their_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let ids: Vec<String> = (0..69).map(|i| format!("dev{i:02}")).collect();
    let created = ids
        .iter()
        .map(|id| DeviceUpdate {
            id: id.clone(),
            state: Some((DeviceState::Online, 1)),
            last_seen: 1,
            ..Default::default()
        })
        .collect();
    db.write(&Batch {
        devices: created,
        ..Default::default()
    })
    .unwrap();
    let mut updates: Vec<DeviceUpdate> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| only_seen(id, 1_000 + i as i64))
        .collect();
    updates.insert(45, only_seen("dev40", 5));
    updates.insert(50, only_seen("unknown", 777));
    db.write(&Batch {
        devices: updates,
        ..Default::default()
    })
    .unwrap();
    let rows = db.devices().unwrap();
    assert_eq!(rows.len(), 70);
    for row in rows {
        let expected = match row.id.as_str() {
            "unknown" => 777,
            id => 1_000 + id[3..].parse::<i64>().unwrap(),
        };
        assert_eq!(row.last_seen_ms, expected, "{}", row.id);
    }
}

/// A long batch of `last_seen`-only updates with a device twice (an older time after its own, or
/// before it) ends with every device at its later time, whichever comes first (a batched statement
/// would update the row from either of its two values: tried and rejected, docs/benchmarks.md §22).
#[test]
fn a_device_twice_among_many_last_seen_updates_keeps_its_later_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let ids: Vec<String> = (0..200).map(|i| format!("dev{i:03}")).collect();
    db.write(&Batch {
        devices: ids.iter().map(|id| seen(id, 1)).collect(),
        ..Default::default()
    })
    .unwrap();
    for (round, base) in [(0, 1_000), (1, 2_000)] {
        let mut updates: Vec<DeviceUpdate> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| only_seen(id, base + i as i64))
            .collect();
        // An older time of dev005, after its own in the first round, before it in the second; and
        // one of dev150 in the third statement.
        updates.insert(if round == 0 { 40 } else { 2 }, only_seen("dev005", 3));
        updates.insert(170, only_seen("dev150", 4));
        db.write(&Batch {
            devices: updates,
            ..Default::default()
        })
        .unwrap();
        let rows = db.devices().unwrap();
        assert_eq!(rows.len(), 200);
        for row in rows {
            let i: i64 = row.id[3..].parse().unwrap();
            assert_eq!(row.last_seen_ms, base + i, "round {round}: {}", row.id);
        }
    }
}

/// An update that says nothing but `last_seen` (the periodic flush's).
fn only_seen(id: &str, at: i64) -> DeviceUpdate {
    DeviceUpdate {
        id: id.into(),
        last_seen: at,
        ..Default::default()
    }
}

fn seen(id: &str, at: i64) -> DeviceUpdate {
    DeviceUpdate {
        id: id.into(),
        state: Some((DeviceState::Online, at)),
        last_seen: at,
        ..Default::default()
    }
}

fn device_ids(db: &Db) -> Vec<String> {
    db.devices().unwrap().into_iter().map(|d| d.id).collect()
}

#[test]
fn expired_device_rows_go_but_their_events_stay_and_a_device_heard_since_keeps_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    db.write(&Batch {
        frames: vec![frame(1_000)],
        devices: vec![
            seen("SN1", 1_000),
            seen("back", 1_000),
            seen("other", 1_000),
        ],
        events: vec![event(1_000, "VideoMotion", Some(0))],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(db.devices().unwrap()[0].last_seen_ms, 1_000);
    // In one batch: "back" is heard again (its row rewritten) before its removal, queued earlier with
    // an older cutoff, is written; SN1 and "other" stay silent.
    db.write(&Batch {
        devices: vec![seen("back", 9_000)],
        removed_devices: vec![
            DeviceRemoval {
                id: "SN1".into(),
                silent_since: 5_000,
            },
            DeviceRemoval {
                id: "back".into(),
                silent_since: 5_000,
            },
        ],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(device_ids(&db), ["back", "other"]);
    assert!(
        !db.delete_device("other", 999).unwrap(),
        "heard after the cutoff"
    );
    assert!(db.delete_device("other", 1_000).unwrap());
    assert!(!db.delete_device("other", 1_000).unwrap(), "already gone");
    assert_eq!(device_ids(&db), ["back"]);
    let events = db
        .events(&EventQuery {
            device: Some("SN1".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(events.len(), 1, "the events of a removed device stay");
    assert_eq!(db.frame_count().unwrap(), 1, "and so do its frames");
}

#[test]
fn retention_by_age_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let frames: Vec<_> = (0..20_000).map(frame).collect();
    let events: Vec<_> = (0..20_000).map(|i| event(i, "VideoMotion", None)).collect();
    db.write(&Batch {
        frames,
        events,
        ..Default::default()
    })
    .unwrap();
    let report = db
        .apply_retention(
            &Retention {
                keep_events_after: None,
                undelivered_after: None,
                events_max_age_ms: Some(5_000),
                frames_max_age_ms: Some(1_000),
                max_bytes: None,
                ..Default::default()
            },
            20_000,
        )
        .unwrap();
    assert_eq!(report.events, 15_000);
    assert_eq!(report.frames, 19_000);
    assert_eq!(db.event_count().unwrap(), 5_000);
    // Size: the oldest frames go first (they are most of the bytes).
    let mut big = frame(20_000);
    big.bytes = vec![0x55; 512].into();
    db.write(&Batch {
        frames: vec![big; 40_000],
        events: (0..40_000)
            .map(|i| event(20_000 + i, "VideoMotion", None))
            .collect(),
        ..Default::default()
    })
    .unwrap();
    // (The write-ahead log counts in the size too: give it back first, so that rows must go.)
    assert!(db.checkpoint_truncate().unwrap());
    let before = db.size_bytes().unwrap();
    let report = db
        .apply_retention(
            &Retention {
                keep_events_after: None,
                max_bytes: Some(before / 2),
                ..Default::default()
            },
            20_000,
        )
        .unwrap();
    assert!(report.frames > 0);
    assert_eq!(report.size_unmet, None);
    assert!(db.size_bytes().unwrap() <= before / 2);
    assert_eq!(db.event_count().unwrap(), 45_000, "frames sufficed");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Db::open(dir.path(), SyncMode::Normal).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Db::open(dir.path(), SyncMode::Normal).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn time_bounds_by_binary_search_over_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let events: Vec<_> = (0..1000)
        .map(|i| event(i * 10, "VideoMotion", None))
        .collect();
    db.write(&Batch {
        events,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        db.first_id_at_or_after(alarm_center_store::Table::Events, 0)
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        db.first_id_at_or_after(alarm_center_store::Table::Events, 5)
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        db.first_id_at_or_after(alarm_center_store::Table::Events, 9_990)
            .unwrap(),
        Some(1000)
    );
    assert_eq!(
        db.first_id_at_or_after(alarm_center_store::Table::Events, 9_991)
            .unwrap(),
        None
    );
    let since = db
        .events(&EventQuery {
            since: Some(9_000),
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(since.len(), 100);
}

#[test]
fn action_kind_and_until_are_filtered_in_the_query_so_sparse_matches_are_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    // 20,000 events, one `stop` among them, far below the newest 10,000.
    let events: Vec<_> = (0..20_000)
        .map(|i| NewEvent {
            action: if i == 42 { "stop" } else { "start" }.into(),
            ..event(i * 10, "VideoMotion", None)
        })
        .collect();
    db.write(&Batch {
        events,
        ..Default::default()
    })
    .unwrap();
    let query = |q: EventQuery| {
        db.events(&EventQuery {
            limit: Some(5),
            ..q
        })
        .unwrap()
    };
    let stops = query(EventQuery {
        action: Some("stop".into()),
        ..Default::default()
    });
    assert_eq!(stops.iter().map(|e| e.id).collect::<Vec<_>>(), [43]);
    assert!(query(EventQuery {
        kind: Some("device".into()),
        ..Default::default()
    })
    .is_empty());
    // Up to and including 100 ms: events 0..=10, newest first.
    let until = query(EventQuery {
        until: Some(100),
        ..Default::default()
    });
    assert_eq!(
        until
            .iter()
            .map(|e| e.event.received_at)
            .collect::<Vec<_>>(),
        [100, 90, 80, 70, 60]
    );
    assert!(db.device_known("SN1").unwrap(), "known by its events");
    assert!(!db.device_known("nobody").unwrap());
}

#[test]
fn retention_keeps_what_a_sink_has_not_delivered_unless_told_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let events: Vec<_> = (0..1000).map(|i| event(i, "VideoMotion", None)).collect();
    db.write(&Batch {
        events,
        ..Default::default()
    })
    .unwrap();
    db.save_sink_cursor(
        "mqtt",
        300,
        alarm_center_store::SinkCounts::default(),
        None,
        0,
    )
    .unwrap();
    let keep = db
        .min_sink_position(&["mqtt".to_owned(), "webhook:x".to_owned()])
        .unwrap();
    assert_eq!(keep, Some(300));
    // Everything is older than the cutoff; only what the sink delivered may go.
    let policy = Retention {
        events_max_age_ms: Some(1),
        keep_events_after: keep,
        ..Default::default()
    };
    let report = db.apply_retention(&policy, 10_000).unwrap();
    assert_eq!((report.events, report.kept_undelivered), (300, 700));
    assert_eq!(db.event_count().unwrap(), 700);
    // Told to drop: deleted and counted.
    let policy = Retention {
        events_max_age_ms: Some(1),
        undelivered_after: keep,
        ..Default::default()
    };
    let report = db.apply_retention(&policy, 10_000).unwrap();
    assert_eq!((report.events, report.dropped_undelivered), (700, 700));
}

#[test]
fn devices_are_read_a_page_at_a_time_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    db.write(&Batch {
        devices: ["d", "b", "e", "a", "c"].map(|id| seen(id, 1)).to_vec(),
        ..Default::default()
    })
    .unwrap();
    let page = |after: Option<&str>, limit| -> Vec<String> {
        db.devices_page(after, limit)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    };
    assert_eq!(page(None, 2), ["a", "b"]);
    assert_eq!(page(Some("b"), 2), ["c", "d"]);
    assert_eq!(page(Some("d"), 2), ["e"]);
    assert!(page(Some("e"), 2).is_empty());
    assert_eq!(device_ids(&db), ["a", "b", "c", "d", "e"]);
}

/// Every connection row, as the table holds it.
fn connection_rows(dir: &std::path::Path) -> Vec<Vec<rusqlite::types::Value>> {
    let conn = rusqlite::Connection::open(dir.join("alarm-center.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, device, peer, opened_at, closed_at, close_reason, frames, bytes FROM connections ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| (0..8).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn a_connection_opened_identified_and_closed_in_one_batch_gets_the_same_row() {
    use alarm_center_store::{ConnectionClose, ConnectionIdentified, ConnectionOpen};
    let open = |id: i64| ConnectionOpen {
        id,
        peer: format!("127.0.0.1:{}", 40_000 + id),
        opened_at: 1_000 + id,
    };
    let identified = |id: i64, device: &str| ConnectionIdentified {
        id,
        device: device.into(),
        frames: 1,
        bytes: 10,
    };
    let closed = |id: i64, device: Option<&str>| ConnectionClose {
        id,
        device: device.map(Into::into),
        closed_at: 2_000 + id,
        reason: format!("closed {id}"),
        frames: 2,
        bytes: 20,
    };
    // 1: opened, identified (twice) and closed; 2: opened and identified; 3: opened and closed without
    // a device; 4: opened in an earlier batch, identified and closed in this one; 5: opened twice.
    let earlier = Batch {
        opened: vec![open(4)],
        ..Batch::default()
    };
    let batch = Batch {
        opened: vec![open(1), open(2), open(3), open(5), open(5)],
        identified: vec![
            identified(1, "A"),
            identified(2, "B"),
            identified(1, "C"),
            identified(4, "D"),
        ],
        closed: vec![
            closed(1, None),
            closed(3, None),
            closed(4, Some("E")),
            closed(5, Some("F")),
        ],
        ..Batch::default()
    };
    let folded = tempfile::tempdir().unwrap();
    let mut db = Db::open(folded.path(), SyncMode::Normal).unwrap();
    db.write(&earlier).unwrap();
    db.write(&batch).unwrap();
    // The same records one kind per batch: nothing to fold, the insert and updates run as before.
    let apart = tempfile::tempdir().unwrap();
    let mut db = Db::open(apart.path(), SyncMode::Normal).unwrap();
    db.write(&earlier).unwrap();
    for part in [
        Batch {
            opened: batch.opened.clone(),
            ..Batch::default()
        },
        Batch {
            identified: batch.identified.clone(),
            ..Batch::default()
        },
        Batch {
            closed: batch.closed.clone(),
            ..Batch::default()
        },
    ] {
        db.write(&part).unwrap();
    }
    let rows = connection_rows(folded.path());
    assert_eq!(rows, connection_rows(apart.path()));
    use rusqlite::types::Value::{Integer, Null, Text};
    assert_eq!(
        rows[0],
        [
            Integer(1),
            Text("C".into()),
            Text("127.0.0.1:40001".into()),
            Integer(1_001),
            Integer(2_001),
            Text("closed 1".into()),
            Integer(2),
            Integer(20)
        ]
    );
    assert_eq!(
        rows[1][1..],
        [
            Text("B".into()),
            Text("127.0.0.1:40002".into()),
            Integer(1_002),
            Null,
            Null,
            Integer(1),
            Integer(10)
        ]
    );
    assert_eq!(rows[2][1], Null);
    assert_eq!(rows[3][1], Text("E".into()));
    assert_eq!(rows[4][1], Text("F".into()));
}
