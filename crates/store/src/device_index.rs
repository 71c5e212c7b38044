//! Which events each device has: the table `device_events (device, id)`, filled by the writer in bulk
//! instead of an index on `events (device, id)` kept up to date by every commit (decision D61).
//!
//! An index entry lands in its device's part of the index, so a commit of events from N devices
//! rewrote N index pages in the write-ahead log (and the checkpointer copied them again): with 100
//! devices and commits every 5 ms that was as many log bytes as the events themselves, and with
//! thousands of devices one 4 KiB page per event. Added in bulk, every [`BATCH`] events or after
//! [`WAIT`], each page is written once per addition. The writer keeps the events of each device in
//! memory until then, and adds them in key order a step of [`STEP`] rows or more after each write
//! (and while it has nothing to write, D70), each step a transaction of its own, so that no write
//! waits for a whole addition (D68). Queries by device read `device_events` for the events up to
//! `device_index.upto` and the events table itself above it (found by id: [`BATCH`] events and what
//! arrives while an addition is under way).

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::write::LOG_PAGES;
use crate::{Db, Result};

mod pending;

use pending::{Adding, Pending};

/// Events written before the writer adds them to `device_events`.
pub(crate) const BATCH: i64 = 16_384;

/// Longest an event stays out of `device_events` while fewer than [`BATCH`] arrive (it is found by
/// queries meanwhile all the same, in the events table).
pub(crate) const WAIT: Duration = Duration::from_secs(1);

/// Rows one step of an addition inserts, at least (D68): an addition of [`BATCH`] events goes in
/// eight transactions, so that no write waits for a whole addition. After a write of more events than
/// half this, a step takes twice that write's events, so that additions keep up with any rate.
pub(crate) const STEP: usize = 2_048;

/// The writer's view of `device_events`.
#[derive(Debug)]
pub(crate) struct Indexed {
    /// Every event with an id up to this one has its row (`device_index.upto`).
    upto: i64,
    /// The newest event written.
    newest: i64,
    /// Events up to this id that are not in `device_events` yet are added by reading them back from
    /// the events table: those written before the store was opened, or forgotten ([`Indexed::written`]).
    read_back_until: i64,
    /// The events after `upto`, `read_back_until` and the addition under way, by device.
    pending: Pending,
    /// The addition under way, if any: it takes the events after `upto` up to its `until`.
    adding: Option<Adding>,
    /// When an addition last completed, a read-back step committed, or a step failed.
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
        let newest = newest.max(upto);
        Ok(Indexed {
            upto,
            newest,
            read_back_until: newest,
            pending: Pending::default(),
            adding: None,
            added_at: Instant::now(),
            pruned_below: 0,
            failing: false,
        })
    }

    /// Notes the events of a committed write: `events[i]` got id `ids[i]` (ascending). They are kept
    /// by device. When their ids do not follow the newest event (an event written some other way in
    /// between: never by this writer, but the events are then read back rather than guessed), or when
    /// the memory kept, the addition under way included, is past [`pending::MAX_BYTES`], every event
    /// kept (these and those before) is forgotten and read back instead.
    pub(crate) fn written(&mut self, events: &[crate::NewEvent], ids: &[i64]) {
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return;
        };
        let follows = first == self.newest.saturating_add(1);
        if follows {
            for (event, &id) in events.iter().zip(ids) {
                self.pending.push(&event.device, id);
            }
        }
        let adding = self.adding.as_ref().map_or(0, |a| a.bytes);
        if !follows || self.pending.bytes() + adding > pending::MAX_BYTES {
            self.pending.clear();
            self.read_back_until = last;
        }
        self.newest = self.newest.max(last);
    }

    /// When the next step of an addition is due: `None` when every event written has its row, zero
    /// when an addition is under way or [`BATCH`] events wait, else what is left of [`WAIT`] (after a
    /// failure, of [`WAIT`] whatever is waiting).
    fn due_in(&self) -> Option<Duration> {
        if self.newest <= self.upto {
            return None;
        }
        let left = WAIT.saturating_sub(self.added_at.elapsed());
        if !self.failing && (self.adding.is_some() || self.newest - self.upto >= BATCH) {
            return Some(Duration::ZERO);
        }
        Some(left)
    }

    /// One step of an addition in a transaction of its own, at most `budget` rows: events to read
    /// back first (at most [`MAX_ADD`], in one step), then those kept in memory, starting an
    /// addition of all of them when none is under way. The writer's view changes only once the step
    /// has committed.
    fn step(&mut self, conn: &mut Connection, budget: usize) -> Result<()> {
        if self.adding.is_none() && self.upto < self.read_back_until {
            return self.read_back(conn);
        }
        let adding = self
            .adding
            .get_or_insert_with(|| self.pending.take(self.newest));
        let tx = conn.transaction()?;
        let (next, complete) = adding.insert_step(&tx, budget)?;
        if complete {
            tx.prepare_cached("UPDATE device_index SET upto = ?1")?
                .execute([adding.until])?;
        }
        tx.commit()?;
        adding.advance(next);
        if complete {
            self.upto = adding.until;
            self.adding = None;
            self.added_at = Instant::now();
        }
        Ok(())
    }

    /// Adds the rows of the next events after `upto` up to `read_back_until` (at most [`MAX_ADD`]),
    /// reading them from the events table, in one transaction.
    fn read_back(&mut self, conn: &mut Connection) -> Result<()> {
        let until = self.read_back_until.min(self.upto.saturating_add(MAX_ADD));
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

/// Most events one addition that reads events back takes (a store opened with many events not added
/// yet catches up in steps, each a bounded transaction).
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
            indexed.step(&mut self.conn, usize::MAX)?;
        }
        Ok(())
    }

    /// After a committed write of `events` (which got `ids`): one step of an addition to the
    /// per-device index when one is under way or due, of at least [`STEP`] rows and twice the
    /// write's events. A failure (a full disk) does not fail the write, which has committed: it is
    /// logged once and tried again after [`WAIT`]. Returns whether a step committed.
    pub(crate) fn add_due_to_device_index(
        &mut self,
        events: &[crate::NewEvent],
        ids: &[i64],
    ) -> bool {
        let Some(indexed) = self.indexed.as_mut() else {
            return false;
        };
        indexed.written(events, ids);
        if indexed.due_in() != Some(Duration::ZERO) {
            return false;
        }
        self.device_index_step(STEP.max(2 * ids.len()))
    }

    /// When the writer should call [`Db::add_to_device_index_while_idle`] if no write comes first:
    /// `None` when there is nothing to add (or the store is read-only), zero when a step is due now.
    pub fn device_index_due_in(&self) -> Option<Duration> {
        self.indexed.as_ref().and_then(Indexed::due_in)
    }

    /// One step of an addition to the per-device index ([`STEP`] rows, or a read-back of at most
    /// [`MAX_ADD`] events) when one is due, for a writer that has nothing to write: without it an
    /// addition under way, or events that arrived less than [`BATCH`] at a time, would wait for the
    /// next write to be added. Errors are handled as after a write (logged once, tried again after
    /// [`WAIT`]). Returns the write-ahead log's length in pages when a step committed (as
    /// [`WriteResult::log_pages`](crate::WriteResult)).
    pub fn add_to_device_index_while_idle(&mut self) -> Option<u32> {
        if self.device_index_due_in() != Some(Duration::ZERO) {
            return None;
        }
        LOG_PAGES.set(None);
        self.device_index_step(STEP)
            .then(|| LOG_PAGES.take())
            .flatten()
    }

    /// One step of at most `budget` rows; a failure is logged once and retried after [`WAIT`].
    /// Returns whether the step committed.
    fn device_index_step(&mut self, budget: usize) -> bool {
        let Some(indexed) = self.indexed.as_mut() else {
            return false;
        };
        match indexed.step(&mut self.conn, budget) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(device: &str) -> crate::NewEvent {
        crate::NewEvent {
            frame: crate::FrameRef::None,
            device: device.into(),
            code: "VideoMotion".into(),
            action: crate::EventAction::Start,
            index: None,
            channel: None,
            channel_name: None,
            kind: crate::EventKind::Alarm,
            device_time: None,
            received_at: 0,
            data: None,
            synthetic: None,
        }
    }

    /// Rows of `device_events`, and those whose device is not their event's.
    fn rows(db: &Db) -> (i64, i64) {
        db.conn
            .query_row(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE e.device IS NOT d.device)
                 FROM device_events d LEFT JOIN events e ON e.id = d.id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    }

    #[test]
    fn a_flood_of_new_device_names_is_forgotten_past_the_bound_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path(), crate::SyncMode::Normal).unwrap();
        // Additions fail, as on a full disk, so that everything stays in memory.
        db.conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON device_events BEGIN SELECT RAISE(FAIL, 'injected'); END;",
            )
            .unwrap();
        let mut written = 0;
        let mut forgotten_at = None;
        for write in 0..100 {
            // 1,000 devices never heard before, with names of 1,000 bytes.
            let events: Vec<_> = (0..1_000)
                .map(|i| event(&format!("{:0>1000}", write * 1_000 + i)))
                .collect();
            db.write(&crate::Batch {
                events,
                ..Default::default()
            })
            .unwrap();
            written += 1_000;
            let indexed = db.indexed.as_ref().unwrap();
            let kept = indexed.pending.bytes() + indexed.adding.as_ref().map_or(0, |a| a.bytes);
            // At most one write's worth (~1.1 MB) past the bound.
            assert!(
                kept <= pending::MAX_BYTES,
                "{kept} bytes kept after write {write}"
            );
            if indexed.read_back_until > 0 {
                forgotten_at = Some(write);
                break;
            }
        }
        let forgotten_at = forgotten_at.expect("the memory was given up");
        assert!(forgotten_at >= 20, "given up after {forgotten_at} writes");
        let indexed = db.indexed.as_ref().unwrap();
        assert_eq!(indexed.pending.len(), 0);
        assert_eq!(indexed.read_back_until, written);
        // Kept again from there, and every event ends up in the index with its device.
        db.write(&crate::Batch {
            events: vec![event("cam-1"), event("cam-2")],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.indexed.as_ref().unwrap().pending.len(), 2);
        db.conn.execute_batch("DROP TRIGGER refuse").unwrap();
        db.index_devices().unwrap();
        assert_eq!(rows(&db), (written + 2, 0));
    }
}
