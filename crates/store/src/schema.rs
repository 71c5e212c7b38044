//! Schema creation and migration (`PRAGMA user_version`).

use rusqlite::Connection;

use crate::{Result, StoreError};

/// The schema version this build writes.
pub(crate) const VERSION: i64 = 2;

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

/// Creates or upgrades the schema.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let found = check_version(conn)?;
    if found < 1 {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(V1)?;
        tx.execute_batch(V2)?;
        tx.pragma_update(None, "user_version", VERSION)?;
        tx.commit()?;
    } else if found < 2 {
        let tx = conn.unchecked_transaction()?;
        // Databases made by early builds of version 1 lack this column.
        let has_channel_name: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'channel_name'",
            [],
            |r| r.get(0),
        )?;
        if !has_channel_name {
            tx.execute_batch("ALTER TABLE events ADD COLUMN channel_name TEXT;")?;
        }
        tx.execute_batch(V2)?;
        tx.pragma_update(None, "user_version", VERSION)?;
        tx.commit()?;
    }
    Ok(())
}

/// The file's schema version; an error when it is newer than this build.
pub(crate) fn check_version(conn: &Connection) -> Result<i64> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: VERSION,
        });
    }
    Ok(found)
}
