//! The page size a store is created with (D67), kept by an existing store, and changed the way
//! docs/config.example.toml tells.

use std::path::Path;

use alarm_center_store::{Batch, Db, EventQuery, StoreError, SyncMode, DEFAULT_PAGE_SIZE};

use crate::common::event;

/// Writes `n` events of device `SN1` into `db`.
fn write_events(db: &mut Db, n: usize) {
    let events = (0..n)
        .map(|i| event(1_000 + i as i64, "VideoMotion", None))
        .collect();
    db.write(&Batch {
        events,
        ..Default::default()
    })
    .unwrap();
}

fn stored_events(dir: &Path) -> usize {
    Db::open_read_only(dir)
        .unwrap()
        .events(&EventQuery {
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap()
        .len()
}

#[test]
fn a_new_store_gets_the_page_size_asked_for() {
    assert_eq!(DEFAULT_PAGE_SIZE, 16 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    assert_eq!(db.page_size().unwrap(), DEFAULT_PAGE_SIZE);
    for size in [512, 4096, 65_536] {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open_with_page_size(dir.path(), SyncMode::Normal, size).unwrap();
        write_events(&mut db, 10);
        assert_eq!(db.page_size().unwrap(), size);
        drop(db);
        // The file itself says so (bytes 16–17 of the header, big-endian; 1 means 65,536).
        let header = std::fs::read(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
        let in_file = u32::from(u16::from_be_bytes([header[16], header[17]]));
        assert_eq!(if in_file == 1 { 65_536 } else { in_file }, size);
        assert_eq!(stored_events(dir.path()), 10);
    }
}

#[test]
fn an_existing_store_keeps_its_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open_with_page_size(dir.path(), SyncMode::Normal, 4096).unwrap();
    write_events(&mut db, 100);
    drop(db);
    let mut db = Db::open_with_page_size(dir.path(), SyncMode::Normal, 16 * 1024).unwrap();
    assert_eq!(db.page_size().unwrap(), 4096);
    write_events(&mut db, 100);
    drop(db);
    assert_eq!(stored_events(dir.path()), 200);
    assert_eq!(
        Db::open_read_only(dir.path())
            .unwrap()
            .integrity_problem()
            .unwrap(),
        None
    );
}

#[test]
fn the_documented_conversion_changes_the_page_size_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open_with_page_size(dir.path(), SyncMode::Normal, 4096).unwrap();
    write_events(&mut db, 500);
    drop(db);
    // What docs/config.example.toml runs with the sqlite3 shell, the server stopped.
    let conn = rusqlite::Connection::open(dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=DELETE; PRAGMA page_size=16384; VACUUM; PRAGMA journal_mode=WAL;",
    )
    .unwrap();
    drop(conn);
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    assert_eq!(db.page_size().unwrap(), 16 * 1024);
    write_events(&mut db, 1);
    drop(db);
    assert_eq!(stored_events(dir.path()), 501);
}

#[test]
fn a_page_size_sqlite_refuses_is_an_error_before_anything_is_created() {
    for size in [0, 256, 1000, 131_072] {
        let dir = tempfile::tempdir().unwrap();
        let error = Db::open_with_page_size(dir.path(), SyncMode::Normal, size).unwrap_err();
        assert!(
            matches!(error, StoreError::PageSize(s) if s == size),
            "{error}"
        );
        assert!(!dir.path().join(alarm_center_store::DB_FILE).exists());
    }
}
