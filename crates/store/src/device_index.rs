//! Which events each device has: the table `device_events (device, id)`, filled by the writer in bulk
//! instead of an index on `events (device, id)` kept up to date by every commit (decision D61).
//!
//! An index entry lands in its device's part of the index, so a commit of events from N devices
//! rewrote N index pages in the write-ahead log (and the checkpointer copied them again): with 100
//! devices and commits every 5 ms that was as many log bytes as the events themselves, and with
//! thousands of devices one 4 KiB page per event. Added in bulk, every [`BATCH`] events or after
//! [`WAIT`], each page is written once per addition. Queries by device read
//! `device_events` for the events up to `device_index.upto` and the events table itself above it (at
//! most [`BATCH`] rows, found by id).

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Db, Result};

/// Events written before the writer adds them to `device_events` in one statement.
pub(crate) const BATCH: i64 = 16_384;

/// Longest an event stays out of `device_events` while fewer than [`BATCH`] arrive (it is found by
/// queries meanwhile all the same, in the events table).
pub(crate) const WAIT: Duration = Duration::from_secs(1);

/// The writer's view of `device_events`.
#[derive(Debug)]
pub(crate) struct Indexed {
    /// Every event with an id up to this one has its row (`device_index.upto`).
    upto: i64,
    /// The newest event written.
    newest: i64,
    /// When rows were last added.
    added_at: Instant,
    /// `device_events` holds no row below this event id (pruned after retention).
    pruned_below: i64,
}

impl Indexed {
    /// Reads how far `device_events` goes (after the schema is current).
    pub(crate) fn load(conn: &Connection) -> Result<Indexed> {
        let upto = indexed_upto(conn)?;
        let newest: i64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
        Ok(Indexed {
            upto,
            newest: newest.max(upto),
            added_at: Instant::now(),
            pruned_below: 0,
        })
    }

    /// The newest event once a write whose last event is `last` commits.
    pub(crate) fn newest_after(&self, last: Option<&i64>) -> i64 {
        last.map_or(self.newest, |&id| self.newest.max(id))
    }

    /// Whether the events not yet in `device_events` are due to be added, `newest` being the newest
    /// event written.
    pub(crate) fn due(&self, newest: i64) -> bool {
        newest > self.upto && (newest - self.upto >= BATCH || self.added_at.elapsed() >= WAIT)
    }

    /// Adds the rows of the events after `upto` up to `newest` inside the writer's transaction;
    /// returns the new `upto`, to be kept with [`Indexed::committed`] once the transaction has
    /// committed (a transaction rolled back leaves the writer's view as it was).
    pub(crate) fn add(&self, conn: &Connection, newest: i64) -> Result<i64> {
        // `OR IGNORE`: a row already there (it cannot be, but a failed write must never repeat
        // forever) is left as it is.
        // In id order, not sorted by device: sorting cost more instructions than it saved (callgrind
        // on `write_bench`, 590.9 M against 557.7 M for 25,000 events); the pages touched are the same.
        conn.prepare_cached(
            "INSERT OR IGNORE INTO device_events (device, id)
             SELECT device, id FROM events WHERE id > ?1 AND id <= ?2",
        )?
        .execute(params![self.upto, newest])?;
        conn.prepare_cached("UPDATE device_index SET upto = ?1")?
            .execute([newest])?;
        Ok(newest)
    }

    /// Keeps what a committed write changed: its newest event, and the `upto` of its
    /// [`Indexed::add`] if it made one.
    pub(crate) fn committed(&mut self, newest: i64, upto: Option<i64>) {
        self.newest = newest;
        if let Some(upto) = upto {
            self.upto = upto;
            self.added_at = Instant::now();
        }
    }
}

/// `device_index.upto`: every event up to this id has its row in `device_events`.
pub(crate) fn indexed_upto(conn: &Connection) -> Result<i64> {
    Ok(conn
        .query_row("SELECT upto FROM device_index", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

impl Db {
    /// Adds every event written so far to the per-device index now, instead of at the next write
    /// after [`BATCH`] events or [`WAIT`] (queries find the events either way). A read-only store
    /// does nothing.
    pub fn index_devices(&mut self) -> Result<()> {
        let Some(indexed) = self.indexed.as_mut() else {
            return Ok(());
        };
        if indexed.newest <= indexed.upto {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        let upto = indexed.add(&tx, indexed.newest)?;
        tx.commit()?;
        indexed.committed(upto, Some(upto));
        Ok(())
    }

    /// Removes the per-device rows of events that retention deleted (it deletes the oldest events,
    /// so every row below the oldest event left goes), one device at a time in one transaction.
    /// Returns the rows removed.
    pub(crate) fn prune_device_index(&mut self) -> Result<u64> {
        let Some(indexed) = self.indexed.as_mut() else {
            return Ok(0);
        };
        let oldest: i64 = self.conn.query_row(
            "SELECT COALESCE(MIN(id), ?1) FROM events",
            [indexed.upto.saturating_add(1)],
            |r| r.get(0),
        )?;
        if oldest <= indexed.pruned_below {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let mut removed = 0;
        {
            let mut first = tx.prepare_cached("SELECT MIN(device) FROM device_events")?;
            let mut next = tx.prepare_cached(
                "SELECT device FROM device_events WHERE device > ?1 ORDER BY device LIMIT 1",
            )?;
            let mut delete =
                tx.prepare_cached("DELETE FROM device_events WHERE device = ?1 AND id < ?2")?;
            // Device by device (a seek each), so that the rows below `oldest` are found by the key
            // instead of by reading the whole table.
            let mut device: Option<String> = first.query_row([], |r| r.get(0))?;
            while let Some(d) = device {
                removed += delete.execute(params![d, oldest])? as u64;
                device = next.query_row([&d], |r| r.get(0)).optional()?;
            }
        }
        tx.commit()?;
        indexed.pruned_below = oldest;
        Ok(removed)
    }
}
