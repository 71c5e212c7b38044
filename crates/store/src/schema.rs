//! Schema creation and migration (`PRAGMA user_version`, counted and run by `rusqlite_migration`).

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use rusqlite_migration::{HookError, HookResult, MigrationDefinitionError, Migrations, M};

use crate::{Result, StoreError};

/// One schema version: the SQL that makes it, then what SQL alone cannot say (Rust run by
/// `rusqlite_migration` after the SQL, in the same transaction).
struct Step {
    sql: &'static str,
    hook: Option<fn(&Transaction) -> HookResult>,
}

/// The schema's versions in order: version N is made by `STEPS[N - 1]`, and `PRAGMA user_version` is the
/// number of steps done. A new store runs them all; an older one those it lacks; all in one transaction.
const STEPS: [Step; 4] = [
    Step {
        sql: V1,
        hook: None,
    },
    Step {
        sql: V2,
        hook: Some(to_v2),
    },
    Step {
        sql: V3,
        hook: Some(to_v3),
    },
    Step {
        sql: V4,
        hook: None,
    },
];

/// The schema version this build writes: the number of steps.
pub(crate) const VERSION: i64 = STEPS.len() as i64;

// No index on received_at: ids grow with time, so time bounds are found by binary search over ids
// (see `Db::first_id_at_or_after`), which keeps every insert cheaper.
const V1: &str = "
CREATE TABLE devices (
    id               TEXT PRIMARY KEY,   -- stable id: configured id, serial, MAC, domain, or addr-<ip>
    name             TEXT,
    serial           TEXT,
    mac              TEXT,
    domain           TEXT,
    ip               TEXT,               -- address the device reports about itself
    peer             TEXT,               -- last TCP peer address
    protocol         TEXT,
    state            TEXT NOT NULL,      -- online | offline
    state_since      INTEGER NOT NULL,   -- unix ms
    first_seen       INTEGER NOT NULL,   -- unix ms
    last_seen        INTEGER NOT NULL,   -- unix ms
    keepalive_period INTEGER,            -- seconds, announced or configured
    first_frame      INTEGER             -- frames.id of its first contact
);
CREATE TABLE connections (
    id           INTEGER PRIMARY KEY,
    device       TEXT,
    peer         TEXT NOT NULL,
    opened_at    INTEGER NOT NULL,      -- unix ms
    closed_at    INTEGER,
    close_reason TEXT,
    frames       INTEGER,
    bytes        INTEGER
);
CREATE TABLE frames (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,       -- unix ms
    device      TEXT,
    connection  INTEGER,
    stream_offset INTEGER NOT NULL,
    protocol    TEXT NOT NULL,          -- dvrip | dhip | xm | json | junk
    command     INTEGER,                -- DVRIP command byte / XM message id
    kind        TEXT NOT NULL,          -- alarm | keepalive | report | reply | request | unknown
    body_format TEXT NOT NULL,          -- mask | text | json | binary | none
    error       TEXT,
    bytes       BLOB NOT NULL           -- exactly as received; the field-by-field decode is recomputed from them
);
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,    -- the log position: sinks keep cursors on it
    device      TEXT NOT NULL,
    code        TEXT NOT NULL,
    action      TEXT NOT NULL,
    idx         INTEGER,
    channel     INTEGER,
    channel_name TEXT,                  -- from the device's configuration
    kind        TEXT NOT NULL,
    device_time TEXT,                   -- as sent, or with the device's zone offset when known
    received_at INTEGER NOT NULL,       -- unix ms
    frame_id    INTEGER,
    data        TEXT,                   -- JSON
    synthetic   TEXT                    -- why the server made this event (offline, …); NULL = from the device
);
CREATE INDEX events_device ON events(device, id);
";

const V2: &str = "
CREATE TABLE sink_cursors (
    sink          TEXT PRIMARY KEY,
    position      INTEGER NOT NULL,     -- events.id of the last event handled (delivered, filtered or dead-lettered)
    delivered     INTEGER NOT NULL DEFAULT 0,
    filtered      INTEGER NOT NULL DEFAULT 0,
    dead_letters  INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,  -- failed attempts (retried)
    last_error    TEXT,
    last_error_at INTEGER,              -- unix ms
    updated_at    INTEGER NOT NULL      -- unix ms
);
CREATE TABLE dead_letters (
    id        INTEGER PRIMARY KEY,
    sink      TEXT NOT NULL,
    event_id  INTEGER NOT NULL,
    at        INTEGER NOT NULL,         -- unix ms
    attempts  INTEGER NOT NULL,
    error     TEXT NOT NULL,
    request   TEXT                      -- what was sent, for replay
);
";

// Version 3: ids are never reused (AUTOINCREMENT). Without it SQLite gives the next row MAX(id) + 1, so
// once retention had emptied a table the ids started again from 1: behind every sink cursor (the new
// events were never delivered) and under the frame ids that older events still point at. The frames
// also get their length as a column, so that lists never read the blobs. The sequences are raised by
// `to_v3`.
const V3: &str = "
CREATE TABLE events_v3 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- the log position: sinks keep cursors on it; never reused
    device      TEXT NOT NULL,
    code        TEXT NOT NULL,
    action      TEXT NOT NULL,
    idx         INTEGER,
    channel     INTEGER,
    channel_name TEXT,                  -- from the device's configuration
    kind        TEXT NOT NULL,
    device_time TEXT,                   -- as sent, or with the device's zone offset when known
    received_at INTEGER NOT NULL,       -- unix ms
    frame_id    INTEGER,
    data        TEXT,                   -- JSON
    synthetic   TEXT                    -- why the server made this event (offline, …); NULL = from the device
);
INSERT INTO events_v3 (id, device, code, action, idx, channel, channel_name, kind, device_time, received_at, frame_id, data, synthetic)
    SELECT id, device, code, action, idx, channel, channel_name, kind, device_time, received_at, frame_id, data, synthetic
    FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE INDEX events_device ON events(device, id);

CREATE TABLE frames_v3 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- events.frame_id and devices.first_frame point here; never reused
    received_at INTEGER NOT NULL,       -- unix ms
    device      TEXT,
    connection  INTEGER,
    stream_offset INTEGER NOT NULL,
    protocol    TEXT NOT NULL,          -- dvrip | dhip | xm | json | http | junk
    command     INTEGER,                -- DVRIP command byte / XM message id
    kind        TEXT NOT NULL,          -- alarm | keepalive | report | reply | request | unknown
    body_format TEXT NOT NULL,          -- mask | text | json | binary | none
    error       TEXT,
    length      INTEGER NOT NULL,       -- bytes in `bytes`: lists read this, never the blob
    bytes       BLOB NOT NULL           -- exactly as received; the field-by-field decode is recomputed from them
);
INSERT INTO frames_v3 (id, received_at, device, connection, stream_offset, protocol, command, kind, body_format, error, length, bytes)
    SELECT id, received_at, device, connection, stream_offset, protocol, command, kind, body_format, error, length(bytes), bytes
    FROM frames ORDER BY id;
DROP TABLE frames;
ALTER TABLE frames_v3 RENAME TO frames;
";

// Version 4: the index on events (device, id), which every commit updated in as many places as the
// commit had devices, gives way to `device_events`, which the writer fills in bulk (see
// `device_index.rs`, D61); `device_index.upto` says how far it goes. Upgrading fills it from the events.
const V4: &str = "
CREATE TABLE device_events (
    device TEXT NOT NULL,
    id     INTEGER NOT NULL,             -- events.id
    PRIMARY KEY (device, id)
) WITHOUT ROWID;
CREATE TABLE device_index (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    upto INTEGER NOT NULL                -- every event with an id up to this has its device_events row
);
INSERT INTO device_events (device, id) SELECT device, id FROM events ORDER BY device, id;
INSERT INTO device_index (one, upto) SELECT 1, COALESCE(MAX(id), 0) FROM events;
DROP INDEX events_device;
";

/// Creates or upgrades the schema, then checks that no sink cursor is ahead of the event log.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let found = check_version(conn)?;
    // A new store (version 0) is created without these lines; an older one is upgraded with them.
    let upgrading = (1..VERSION).contains(&found);
    let started = std::time::Instant::now();
    if upgrading {
        tracing::info!(
            from = found,
            to = VERSION,
            "upgrading the store's schema (tables are rebuilt or filled: this takes a while on a large store)"
        );
    }
    migrations()
        .to_latest(conn)
        .map_err(|e| migration_error(conn, e))?;
    if upgrading {
        tracing::info!(took = ?started.elapsed(), "store schema upgraded");
    }
    let tx = conn.unchecked_transaction()?;
    let end = log_end(&tx)?;
    let highest = crate::sinks::repair_cursors_ahead(&tx, end)?;
    raise_sequence(&tx, "events", highest)?;
    tx.commit()?;
    Ok(())
}

/// The steps as `rusqlite_migration` runs them.
fn migrations() -> Migrations<'static> {
    STEPS
        .iter()
        .map(|step| match step.hook {
            Some(hook) => M::up_with_hook(step.sql, hook),
            None => M::up(step.sql),
        })
        .collect()
}

/// The store's error for one of `rusqlite_migration`: SQLite's own error, or the file being newer than
/// this build, as the store reports them without it.
fn migration_error(conn: &Connection, e: rusqlite_migration::Error) -> StoreError {
    match e {
        rusqlite_migration::Error::RusqliteError { err, .. } => StoreError::Sqlite(err),
        rusqlite_migration::Error::MigrationDefinition(
            MigrationDefinitionError::DatabaseTooFarAhead,
        ) => match user_version(conn) {
            Ok(found) => StoreError::SchemaTooNew {
                found,
                known: VERSION,
            },
            Err(e) => e,
        },
        other => StoreError::Migration(other.to_string()),
    }
}

/// A hook's error for `rusqlite_migration`, keeping SQLite's error as it is.
fn hook_error(e: StoreError) -> HookError {
    match e {
        StoreError::Sqlite(e) => HookError::RusqliteError(e),
        other => HookError::Hook(other.to_string()),
    }
}

/// After version 2's tables: databases made by early builds of version 1 lack this column.
fn to_v2(conn: &Transaction) -> HookResult {
    let has_channel_name: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'channel_name'",
        [],
        |r| r.get(0),
    )?;
    if !has_channel_name {
        conn.execute_batch("ALTER TABLE events ADD COLUMN channel_name TEXT;")?;
    }
    Ok(())
}

/// After events and frames are rebuilt with ids that are never reused (`V3`, which copies every row
/// with its id): sink cursors ahead of the log (ids were reused before) are repaired, then the sequences
/// start above every id a sink or an event ever referred to.
fn to_v3(conn: &Transaction) -> HookResult {
    raise_sequences_v3(conn).map_err(hook_error)
}

/// `to_v3` in the store's terms. What it reads (highest ids, cursors) is the same before and after the
/// rebuild, which copies every row with its id.
fn raise_sequences_v3(conn: &Connection) -> Result<()> {
    let last_event: i64 =
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
    let highest_cursor = crate::sinks::repair_cursors_ahead(conn, last_event)?;
    let frame_floor: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM frames), 0),
                    COALESCE((SELECT MAX(frame_id) FROM events), 0),
                    COALESCE((SELECT MAX(first_frame) FROM devices), 0))",
        [],
        |r| r.get(0),
    )?;
    raise_sequence(conn, "events", last_event.max(highest_cursor))?;
    raise_sequence(conn, "frames", frame_floor)?;
    Ok(())
}

/// The end of the event log: the highest event id ever assigned (0 for a new store).
pub(crate) fn log_end(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0),
                    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))",
        [],
        |r| r.get(0),
    )?)
}

/// Makes the next id of `table` (an AUTOINCREMENT table) greater than `at_least`.
pub(crate) fn raise_sequence(conn: &Connection, table: &str, at_least: i64) -> Result<()> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    match seq {
        Some(seq) if seq >= at_least => {}
        Some(_) => {
            conn.execute(
                "UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1",
                params![table, at_least],
            )?;
        }
        None if at_least > 0 => {
            conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                params![table, at_least],
            )?;
        }
        None => {}
    }
    Ok(())
}

/// The file's schema version for reading only: it must be the current one (the server upgrades it at
/// start).
pub(crate) fn check_current(conn: &Connection) -> Result<()> {
    let found = check_version(conn)?;
    if found < VERSION {
        return Err(StoreError::SchemaTooOld {
            found,
            known: VERSION,
        });
    }
    Ok(())
}

/// The file's schema version; an error when it is newer than this build.
pub(crate) fn check_version(conn: &Connection) -> Result<i64> {
    let found = user_version(conn)?;
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: VERSION,
        });
    }
    Ok(found)
}

/// `PRAGMA user_version` as it is in the file.
fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_runs_every_step_and_gets_the_current_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), VERSION);
        assert_eq!(
            VERSION, 4,
            "stores on disk are numbered so: a step is only ever added"
        );
    }

    #[test]
    fn the_crates_refusal_of_a_newer_database_is_schema_too_new() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 2)
            .unwrap();
        let e = migrations().to_latest(&mut conn).unwrap_err();
        assert_eq!(
            e,
            rusqlite_migration::Error::MigrationDefinition(
                MigrationDefinitionError::DatabaseTooFarAhead
            )
        );
        let e = migration_error(&conn, e);
        assert!(
            matches!(e, StoreError::SchemaTooNew { found, known: VERSION } if found == VERSION + 2),
            "{e}"
        );
    }

    #[test]
    fn a_hooks_sqlite_error_stays_a_sqlite_error() {
        let mut conn = Connection::open_in_memory().unwrap();
        // Version 3's hook without the sink_cursors table of version 2.
        let steps = Migrations::new(vec![M::up_with_hook(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, frame_id INTEGER);
             CREATE TABLE frames (id INTEGER PRIMARY KEY);
             CREATE TABLE devices (first_frame INTEGER);",
            to_v3,
        )]);
        let e = steps.to_latest(&mut conn).unwrap_err();
        let e = migration_error(&conn, e);
        assert!(
            matches!(e, StoreError::Sqlite(_)) && e.to_string().contains("sink_cursors"),
            "{e}"
        );
        assert_eq!(user_version(&conn).unwrap(), 0, "rolled back");
    }
}
