//! The per-device index (`device_events`, filled in bulk by the writer, D61): queries by device find
//! every event whether or not it was added yet, commits of many devices' events stay small, and
//! retention takes the rows of the events it deletes.

use alarm_center_store::{Batch, Db, EventQuery, Retention, SyncMode};

use crate::common::logged;

use crate::common::event;

/// A small deterministic generator (xorshift64*), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// An event of `device` with code `Code<code>` received at `at`; a stop for odd codes.
fn event_of(device: &str, code: u64, at: i64) -> alarm_center_store::NewEvent {
    let mut e = event(at, &format!("Code{code}"), None);
    e.device = device.into();
    if code % 2 == 1 {
        e.action = "stop".into();
    }
    e
}

/// What `q` must return: the whole log read without a device filter (which never reads the
/// per-device index), then filtered by device here.
fn expected(db: &Db, q: &EventQuery) -> Vec<i64> {
    let all = db
        .events(&EventQuery {
            device: None,
            limit: Some(u32::MAX),
            ..q.clone()
        })
        .unwrap();
    all.iter()
        .filter(|e| Some(&e.event.device) == q.device.as_ref())
        .map(|e| e.id)
        .take(q.limit.unwrap_or(100) as usize)
        .collect()
}

#[test]
fn a_devices_events_are_found_whether_or_not_they_were_added_to_the_index_yet() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let devices = ["SN1", "SN2", "SN3", "cam-4", "unheard"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut at = 0;
    let mut queries = 0;
    for round in 0..60 {
        let events = (0..1 + rng.below(40))
            .map(|_| {
                at += 1;
                event_of(devices[rng.below(4) as usize], rng.below(3), at)
            })
            .collect();
        db.write(&Batch {
            events,
            ..Default::default()
        })
        .unwrap();
        // Added now and then: queries cross the boundary between the two parts in every way.
        if rng.below(3) == 0 {
            db.index_devices().unwrap();
        }
        let reader = Db::open_read_only(dir.path()).unwrap();
        for _ in 0..12 {
            let newest = at + 1;
            let q = EventQuery {
                device: Some(devices[rng.below(5) as usize].into()),
                code: (rng.below(4) == 0).then(|| format!("Code{}", rng.below(3))),
                before_id: (rng.below(3) == 0).then(|| 1 + rng.below(newest as u64) as i64),
                after_id: (rng.below(3) == 0).then(|| rng.below(newest as u64) as i64),
                since: (rng.below(5) == 0).then(|| rng.below(newest as u64) as i64),
                until: (rng.below(5) == 0).then(|| rng.below(newest as u64) as i64),
                action: (rng.below(5) == 0)
                    .then(|| ["start", "stop"][rng.below(2) as usize].into()),
                limit: Some(1 + rng.below(30) as u32),
                ascending: rng.below(2) == 0,
                ..Default::default()
            };
            let want = expected(&db, &q);
            for (who, store) in [("writer", &db), ("reader", &reader)] {
                let got: Vec<i64> = store.events(&q).unwrap().iter().map(|e| e.id).collect();
                assert_eq!(got, want, "round {round}, {who}: {q:?}");
            }
            queries += 1;
        }
        for device in devices {
            let known = device != "unheard";
            assert_eq!(reader.device_known(device).unwrap(), known, "{device}");
        }
    }
    assert_eq!(queries, 720);
}

/// Log pages a commit of one event from each of `devices` devices appends, the smallest of 3 (a
/// bulk addition falls into a commit at most once a second).
fn pages_per_commit(db: &mut Db, devices: usize, at: &mut i64) -> u32 {
    (0..3)
        .map(|_| {
            db.index_devices().unwrap();
            let before = write_round(db, devices, at);
            let after = write_round(db, devices, at);
            after - before
        })
        .min()
        .unwrap()
}

/// Writes one event from each device in one commit; returns the log's length after it, in pages.
fn write_round(db: &mut Db, devices: usize, at: &mut i64) -> u32 {
    let events = (0..devices)
        .map(|d| {
            *at += 1;
            event_of(&format!("device-{d:04}"), 0, *at)
        })
        .collect();
    db.write(&Batch {
        events,
        ..Default::default()
    })
    .unwrap()
    .log_pages
    .expect("the log hook reports pages")
}

#[test]
fn a_commit_of_many_devices_events_rewrites_no_page_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    db.disable_auto_checkpoint().unwrap();
    let devices = 250;
    let mut at = 0;
    // 80 events per device: each device's entries fill their own part of any per-device index.
    for _ in 0..80 {
        write_round(&mut db, devices, &mut at);
    }
    let pages = pages_per_commit(&mut db, devices, &mut at);
    // 250 small event rows are a few pages of the events table (and its interior pages).
    assert!(
        pages <= 20,
        "a commit of 250 devices' events appended {pages} pages"
    );

    // The measure sees what an index on events (device, id) costs: one page per device's part.
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    conn.execute_batch("CREATE INDEX events_device ON events(device, id)")
        .unwrap();
    drop(conn);
    let indexed = pages_per_commit(&mut db, devices, &mut at);
    println!("log pages per commit of 250 devices' events: {pages}; with the old index {indexed}");
    assert!(
        indexed >= 3 * pages,
        "with the old index: {indexed} pages, without: {pages}"
    );
}

#[test]
fn retention_removes_the_index_rows_of_the_events_it_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    // A camera heard only at first, then three devices.
    let events = (0..10)
        .map(|i| event_of("old-cam", 0, i))
        .chain((10..2_000).map(|i| event_of(["SN1", "SN2", "SN3"][i as usize % 3], 0, i)))
        .collect();
    db.write(&Batch {
        events,
        ..Default::default()
    })
    .unwrap();
    db.index_devices().unwrap();
    let report = db
        .apply_retention(
            &Retention {
                events_max_age_ms: Some(500),
                ..Default::default()
            },
            2_000,
        )
        .unwrap();
    assert_eq!(report.events, 1_500);
    // A device whose events all went (and that has no device row) is no longer known.
    assert!(!db.device_known("old-cam").unwrap());
    assert!(db.device_known("SN1").unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    let (rows, lowest): (i64, i64) = conn
        .query_row("SELECT COUNT(*), MIN(id) FROM device_events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let oldest: i64 = conn
        .query_row("SELECT MIN(id) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!((rows, lowest), (500, oldest));
    // The devices' events are still found, oldest first and newest first.
    for (device, first) in [("SN1", 1_500), ("SN2", 1_501), ("SN3", 1_502)] {
        let mut q = EventQuery {
            device: Some(device.into()),
            limit: Some(1_000),
            ascending: true,
            ..Default::default()
        };
        let found = db.events(&q).unwrap();
        assert_eq!(found.first().unwrap().event.received_at, first, "{device}");
        assert_eq!(found.len(), expected(&db, &q).len());
        q.ascending = false;
        assert_eq!(
            db.events(&q)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            expected(&db, &q)
        );
    }
}

/// `upto` and the rows of `device_events`, read from the file.
fn index_state(dir: &std::path::Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(dir.join(alarm_center_store::DB_FILE)).unwrap();
    conn.query_row(
        "SELECT (SELECT upto FROM device_index), (SELECT COUNT(*) FROM device_events)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// Writes `n` events from 7 devices in commits of 1,000.
fn write_events(db: &mut Db, n: i64, at: &mut i64) {
    for _ in 0..n / 1_000 {
        let events = (0..1_000)
            .map(|_| {
                *at += 1;
                event_of(&format!("cam-{}", *at % 7), 0, *at)
            })
            .collect();
        db.write(&Batch {
            events,
            ..Default::default()
        })
        .unwrap();
    }
}

/// Makes every insert into `device_events` fail (as on a full disk) until the trigger is dropped.
fn refuse_index_rows(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON device_events BEGIN SELECT RAISE(FAIL, 'injected'); END;",
    )
    .unwrap();
}

/// Rows of `device_events` whose device is not their event's device (none, whoever added them).
fn misattributed_rows(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(alarm_center_store::DB_FILE)).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM device_events d LEFT JOIN events e ON e.id = d.id
         WHERE e.device IS NOT d.device",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn the_writer_adds_the_events_in_steps_as_it_writes_and_queries_stay_exact_throughout() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let mut at = 0;
    let q = EventQuery {
        device: Some("cam-3".into()),
        limit: Some(10_000),
        ..Default::default()
    };
    let (mut last_upto, mut last_rows) = (0, 0);
    let mut uptos = vec![];
    for write in 0..40 {
        write_events(&mut db, 1_000, &mut at);
        let (upto, rows) = index_state(dir.path());
        // Each write adds one step: 2,048 rows at most (twice a write of 1,000 is less), never the
        // whole addition of 16,384 events or more at once.
        assert!(
            rows - last_rows <= 2_048,
            "write {write}: {} rows added at once",
            rows - last_rows
        );
        assert!(rows >= upto && rows <= at, "write {write}: {upto} {rows}");
        if upto != last_upto {
            uptos.push(upto);
        }
        (last_upto, last_rows) = (upto, rows);
        if write % 4 == 3 {
            let ids: Vec<i64> = db.events(&q).unwrap().iter().map(|e| e.id).collect();
            assert_eq!(ids, expected(&db, &q), "write {write}");
        }
    }
    // Additions completed while the writes went on (the first of 17,000 events, due after 16,384,
    // in 9 steps, or earlier ones when a second passed first), each up to the end of a write.
    assert!(
        !uptos.is_empty() && uptos.iter().all(|u| u % 1_000 == 0),
        "upto moved to {uptos:?}"
    );
    db.index_devices().unwrap();
    assert_eq!(index_state(dir.path()), (40_000, 40_000));
    assert_eq!(misattributed_rows(dir.path()), 0);
    let ids: Vec<i64> = db.events(&q).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 5_714);
    assert_eq!(ids, expected(&db, &q));
}

#[test]
fn events_written_before_a_restart_are_read_back_into_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut at = 0;
    {
        let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
        write_events(&mut db, 5_000, &mut at);
    }
    let (upto, _) = index_state(dir.path());
    assert!(upto < 5_000, "{upto}: nothing left to read back");
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    write_events(&mut db, 20_000, &mut at);
    db.index_devices().unwrap();
    assert_eq!(index_state(dir.path()), (25_000, 25_000));
    assert_eq!(misattributed_rows(dir.path()), 0);
}

#[test]
fn an_event_written_by_another_connection_is_read_back_into_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let mut at = 0;
    write_events(&mut db, 1_000, &mut at);
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    conn.execute(
        "INSERT INTO events (device, code, action, kind, received_at) VALUES ('intruder', 'X', 'pulse', 'alarm', 1)",
        [],
    )
    .unwrap();
    write_events(&mut db, 1_000, &mut at);
    db.index_devices().unwrap();
    assert_eq!(index_state(dir.path()), (2_001, 2_001));
    assert_eq!(misattributed_rows(dir.path()), 0);
    let q = EventQuery {
        device: Some("intruder".into()),
        ..Default::default()
    };
    assert_eq!(db.events(&q).unwrap().len(), 1);
}

#[test]
fn a_failing_addition_to_the_index_fails_no_write_and_catches_up_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    // Every addition fails (as on a full disk) until the trigger goes.
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    refuse_index_rows(&conn);
    let mut at = 0;
    let ((), log) = logged(|| write_events(&mut db, 40_000, &mut at));
    assert_eq!(db.event_count().unwrap(), 40_000);
    assert_eq!(index_state(dir.path()), (0, 0));
    assert_eq!(
        log.matches("cannot add events to the per-device index")
            .count(),
        1,
        "{log}"
    );
    let q = EventQuery {
        device: Some("cam-3".into()),
        limit: Some(10_000),
        ..Default::default()
    };
    assert_eq!(db.events(&q).unwrap().len(), 5_714);

    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    db.index_devices().unwrap();
    assert_eq!(index_state(dir.path()), (40_000, 40_000));
    let ids: Vec<i64> = db.events(&q).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, expected(&db, &q));
    assert_eq!(ids.len(), 5_714);
}

#[test]
fn an_addition_that_fails_halfway_resumes_and_one_with_a_gap_reads_the_rest_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    let mut at = 0;
    // Up to an addition under way: some of its steps in, upto not moved yet (after 17,000 events, or
    // earlier when a second passed first).
    let (upto, rows) = loop {
        write_events(&mut db, 1_000, &mut at);
        let (upto, rows) = index_state(dir.path());
        if rows > upto {
            break (upto, rows);
        }
        assert!(at < 40_000, "no addition went in steps");
    };
    // Then the steps fail (a full disk), and an event is written by someone else meanwhile.
    refuse_index_rows(&conn);
    let ((), log) = logged(|| write_events(&mut db, 3_000, &mut at));
    assert_eq!(index_state(dir.path()), (upto, rows));
    assert_eq!(
        log.matches("cannot add events to the per-device index")
            .count(),
        1,
        "{log}"
    );
    conn.execute(
        "INSERT INTO events (device, code, action, kind, received_at) VALUES ('intruder', 'X', 'pulse', 'alarm', 1)",
        [],
    )
    .unwrap();
    write_events(&mut db, 2_000, &mut at);
    let q = EventQuery {
        device: Some("cam-3".into()),
        limit: Some(10_000),
        ..Default::default()
    };
    let ids: Vec<i64> = db.events(&q).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, expected(&db, &q));

    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    db.index_devices().unwrap();
    assert_eq!(index_state(dir.path()), (at + 1, at + 1));
    assert_eq!(misattributed_rows(dir.path()), 0);
    let ids: Vec<i64> = db.events(&q).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, expected(&db, &q));
    let q = EventQuery {
        device: Some("intruder".into()),
        ..Default::default()
    };
    assert_eq!(db.events(&q).unwrap().len(), 1);
}

#[test]
fn an_addition_goes_on_while_the_writer_is_idle_a_step_at_a_time() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let mut at = 0;
    // Nothing to add, nothing due.
    assert_eq!(db.device_index_due_in(), None);
    assert_eq!(db.add_to_device_index_while_idle(), None);
    // Fewer events than an addition takes: due a second after the store opened, not before.
    write_events(&mut db, 3_000, &mut at);
    let due_in = db.device_index_due_in().expect("events wait");
    assert!(due_in <= Duration::from_secs(1), "{due_in:?}");
    // (Unless the writes took most of that second, on a busy machine.)
    if due_in >= Duration::from_millis(200) {
        let before = index_state(dir.path());
        db.add_to_device_index_while_idle();
        assert_eq!(index_state(dir.path()), before, "added before it was due");
    }
    std::thread::sleep(due_in);
    // Then, with no write, one step of 2,048 rows at most per call until everything is in.
    let (_, mut last_rows) = index_state(dir.path());
    let from_scratch = last_rows == 0;
    let mut steps = 0;
    while let Some(due_in) = db.device_index_due_in() {
        // Not due yet only when earlier additions completed after the writes (a busy machine).
        if !due_in.is_zero() {
            assert!(!from_scratch, "an addition under way is due at once");
            std::thread::sleep(due_in);
            continue;
        }
        db.add_to_device_index_while_idle();
        let (_, rows) = index_state(dir.path());
        assert!(
            rows - last_rows <= 2_048,
            "{} rows at once",
            rows - last_rows
        );
        last_rows = rows;
        steps += 1;
        assert!(steps <= 10, "the addition does not end");
    }
    if from_scratch {
        assert_eq!(steps, 2);
    }
    assert_eq!(index_state(dir.path()), (3_000, 3_000));
    assert_eq!(misattributed_rows(dir.path()), 0);
    // A reader never adds.
    assert_eq!(
        Db::open_read_only(dir.path())
            .unwrap()
            .device_index_due_in(),
        None
    );
}

#[test]
fn a_failing_addition_is_retried_by_the_idle_writer_a_second_later() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    refuse_index_rows(&conn);
    let mut at = 0;
    // Past an addition's 16,384 events: due at once; the steps after the writes fail.
    let ((), log) = logged(|| write_events(&mut db, 17_000, &mut at));
    assert!(
        log.contains("cannot add events to the per-device index"),
        "{log}"
    );
    // An idle try that fails puts the next a second later, not at once: an idle writer waits
    // rather than trying again and again.
    std::thread::sleep(db.device_index_due_in().unwrap());
    assert_eq!(db.device_index_due_in(), Some(Duration::ZERO));
    let (tried, log) = logged(|| db.add_to_device_index_while_idle());
    assert_eq!(tried, None);
    assert!(!log.contains("cannot add"), "logged again: {log}");
    let due_in = db.device_index_due_in().unwrap();
    assert!(
        due_in > Duration::from_millis(500) && due_in <= Duration::from_secs(1),
        "{due_in:?}"
    );
    assert_eq!(index_state(dir.path()), (0, 0));
    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    std::thread::sleep(due_in);
    while db.device_index_due_in().is_some() {
        db.add_to_device_index_while_idle();
        std::thread::sleep(db.device_index_due_in().unwrap_or_default());
    }
    assert_eq!(index_state(dir.path()), (17_000, 17_000));
}
