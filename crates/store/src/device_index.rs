//! Which events each device has: the table `device_events (device, id)`, filled by the writer in bulk
//! instead of an index on `events (device, id)` kept up to date by every commit (decision D61).
//!
//! An index entry lands in its device's part of the index, so a commit of events from N devices
//! rewrote N index pages in the write-ahead log (and the checkpointer copied them again): with 100
//! devices and commits every 5 ms that was as many log bytes as the events themselves, and with
//! thousands of devices one 4 KiB page per event. Added in bulk after a commit, every [`BATCH`] events
//! or after [`WAIT`], each page is written once per addition. Queries by device read
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
    /// The last addition failed (logged once; retried after [`WAIT`]).
    failing: bool,
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
            failing: false,
        })
    }

    /// Notes the newest event of a committed write.
    pub(crate) fn written(&mut self, last: Option<&i64>) {
        if let Some(&id) = last {
            self.newest = self.newest.max(id);
        }
    }

    /// Whether the events not yet in `device_events` are due to be added.
    fn due(&self) -> bool {
        let waited = self.added_at.elapsed() >= WAIT;
        // After a failure, only once a second whatever is waiting.
        self.newest > self.upto && (waited || (!self.failing && self.newest - self.upto >= BATCH))
    }

    /// Adds the rows of the next events after `upto` (at most [`MAX_ADD`]) in a transaction of its
    /// own; the writer's view changes only once it has committed.
    fn add(&mut self, conn: &mut Connection) -> Result<()> {
        let until = self.newest.min(self.upto.saturating_add(MAX_ADD));
        let tx = conn.transaction()?;
        // In id order, not sorted by device: sorting them first saved nothing (D61).
        tx.prepare_cached(
            "INSERT OR IGNORE INTO device_events (device, id)
             SELECT device, id FROM events WHERE id > ?1 AND id <= ?2",
        )?
        .execute(params![self.upto, until])?;
        tx.prepare_cached("UPDATE device_index SET upto = ?1")?
            .execute([until])?;
        tx.commit()?;
        self.upto = until;
        self.added_at = Instant::now();
        Ok(())
    }
}

/// Most events one addition takes (a writer that could not add for a while catches up in steps, each
/// a bounded transaction).
const MAX_ADD: i64 = 4 * BATCH;

/// `device_index.upto`: every event up to this id has its row in `device_events`.
pub(crate) fn indexed_upto(conn: &Connection) -> Result<i64> {
    Ok(conn
        .query_row("SELECT upto FROM device_index", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

impl Db {
    /// Adds every event written so far to the per-device index now, instead of after [`BATCH`]
    /// events or [`WAIT`] (queries find the events either way). A read-only store does nothing.
    pub fn index_devices(&mut self) -> Result<()> {
        let Some(indexed) = self.indexed.as_mut() else {
            return Ok(());
        };
        while indexed.newest > indexed.upto {
            indexed.add(&mut self.conn)?;
        }
        Ok(())
    }

    /// After a committed write: adds the events not in the per-device index yet when they are due.
    /// A failure (a full disk) does not fail the write, which has committed: it is logged once and
    /// tried again after [`WAIT`]. Returns whether an addition committed.
    pub(crate) fn add_due_to_device_index(&mut self, last: Option<&i64>) -> bool {
        let Some(indexed) = self.indexed.as_mut() else {
            return false;
        };
        indexed.written(last);
        if !indexed.due() {
            return false;
        }
        match indexed.add(&mut self.conn) {
            Ok(()) => {
                if std::mem::take(&mut indexed.failing) {
                    tracing::info!("events are added to the per-device index again");
                }
                true
            }
            Err(error) => {
                if !std::mem::replace(&mut indexed.failing, true) {
                    tracing::warn!(%error, "cannot add events to the per-device index (queries by device still find them); retrying every second");
                }
                indexed.added_at = Instant::now();
                false
            }
        }
    }

    /// Removes the per-device rows of events that retention deleted; a failure is only logged (the
    /// rows stay until a later pass, and queries skip them: their events are gone).
    pub(crate) fn prune_device_index_quietly(&mut self) {
        if let Err(error) = self.prune_device_index() {
            tracing::warn!(%error, "cannot remove the per-device index rows of deleted events (tried again at the next retention pass)");
        }
    }

    /// Removes the per-device rows of events that retention deleted (it deletes the oldest events,
    /// so every row below the oldest event left goes), one device at a time (a key seek each), in
    /// transactions of [`PRUNE_DEVICES`] devices. Returns the rows removed.
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
        let mut removed = 0;
        let mut device: Option<String> =
            self.conn
                .query_row("SELECT MIN(device) FROM device_events", [], |r| r.get(0))?;
        while device.is_some() {
            let tx = self.conn.transaction()?;
            {
                let mut next = tx.prepare_cached(
                    "SELECT device FROM device_events WHERE device > ?1 ORDER BY device LIMIT 1",
                )?;
                let mut delete =
                    tx.prepare_cached("DELETE FROM device_events WHERE device = ?1 AND id < ?2")?;
                for _ in 0..PRUNE_DEVICES {
                    let Some(d) = device.take() else { break };
                    removed += delete.execute(params![d, oldest])? as u64;
                    device = next.query_row([&d], |r| r.get(0)).optional()?;
                }
            }
            tx.commit()?;
        }
        indexed.pruned_below = oldest;
        Ok(removed)
    }
}

/// Devices per transaction of [`Db::prune_device_index`]: a pass never holds the writer long.
const PRUNE_DEVICES: usize = 1_000;
