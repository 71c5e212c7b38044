//! Retention: delete what is older than configured, prune dead letters, and keep the database under
//! a size without ever emptying the log.

use rusqlite::{params, OptionalExtension};

use crate::{Db, Result, Table};

/// What to keep. `None` keeps forever / without limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete events received more than this many milliseconds ago.
    pub events_max_age_ms: Option<i64>,
    /// Delete raw frames received more than this many milliseconds ago.
    pub frames_max_age_ms: Option<i64>,
    /// Delete dead letters recorded more than this many milliseconds ago.
    pub dead_letters_max_age_ms: Option<i64>,
    /// Keep at most this many dead letters (the newest).
    pub dead_letters_max_count: Option<u64>,
    /// Keep the database under this many bytes: pages in use plus the write-ahead log file (see
    /// [`Db::size_bytes`]). The log is checkpointed and truncated first; then the oldest frames go,
    /// then the oldest dead letters, then the oldest events, down to [`SIZE_LOW_WATER_PERCENT`] of the
    /// limit (so that the next pass is not due at the next commit), but never the newest
    /// [`SIZE_KEEPS_FRAMES`] frames, [`SIZE_KEEPS_DEAD_LETTERS`] dead letters and
    /// [`SIZE_KEEPS_EVENTS`] events: when that is not enough the report says so
    /// ([`RetentionReport::size_unmet`]).
    pub max_bytes: Option<u64>,
    /// Never delete events with an id above this (the lowest sink cursor): undelivered events stay.
    pub keep_events_after: Option<i64>,
    /// When undelivered events may be deleted: the lowest sink cursor, to count what is dropped.
    pub undelivered_after: Option<i64>,
}

/// A pass over the size limit deletes down to this percentage of it.
pub const SIZE_LOW_WATER_PERCENT: u64 = 90;
/// A size limit never deletes the newest this many events: it cannot empty the log.
pub const SIZE_KEEPS_EVENTS: u64 = 10_000;
/// A size limit never deletes the newest this many raw frames.
pub const SIZE_KEEPS_FRAMES: u64 = 100;
/// A size limit never deletes the newest this many dead letters.
pub const SIZE_KEEPS_DEAD_LETTERS: u64 = 100;

/// What a retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Events deleted.
    pub events: u64,
    /// Frames deleted.
    pub frames: u64,
    /// Dead letters deleted.
    pub dead_letters: u64,
    /// Events that were due for deletion but kept because a sink has not delivered them.
    pub kept_undelivered: u64,
    /// Events deleted although a sink had not delivered them (`store.drop-undelivered`).
    pub dropped_undelivered: u64,
    /// The size limit could not be met without deleting what is always kept.
    pub size_unmet: Option<SizeUnmet>,
}

impl RetentionReport {
    /// Rows deleted, all tables.
    pub fn deleted(&self) -> u64 {
        self.events + self.frames + self.dead_letters
    }
}

/// Why a size limit is not met after a retention pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeUnmet {
    /// Size after the pass, bytes (pages in use plus the write-ahead log file).
    pub size_bytes: u64,
    /// The limit, bytes.
    pub max_bytes: u64,
    /// What is left and why it stays.
    pub reason: String,
}

/// Rows deleted per statement, so that one pass never holds the writer for long.
const CHUNK: i64 = 5_000;

/// Most chunks one size pass deletes.
const SIZE_ROUNDS: usize = 100;

impl Db {
    /// Bytes of the database in use (pages in use × page size; free pages are reused and not counted).
    pub fn used_bytes(&self) -> Result<u64> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    /// Bytes of free pages inside the database file: what new rows take before the file grows.
    pub fn free_page_bytes(&self) -> Result<u64> {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((free.max(0) * size) as u64)
    }

    /// Bytes of the write-ahead log file on disk (0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(self.wal_path()).map_or(0, |m| m.len())
    }

    /// The size a limit applies to, bytes: pages in use plus the write-ahead log file.
    pub fn size_bytes(&self) -> Result<u64> {
        Ok(self.used_bytes()? + self.wal_bytes())
    }

    /// Applies `policy` at `now_ms` (unix ms). Deletes in chunks; call it periodically.
    pub fn apply_retention(&mut self, policy: &Retention, now_ms: i64) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        if let Some(age) = policy.events_max_age_ms {
            self.delete_old_events(policy, now_ms - age, &mut report)?;
        }
        if let Some(age) = policy.frames_max_age_ms {
            report.frames += self.delete_older(Table::Frames, now_ms - age)?;
        }
        report.dead_letters += self.prune_dead_letters(policy, now_ms)?;
        if let Some(max) = policy.max_bytes {
            self.enforce_size(policy, max, &mut report)?;
        }
        self.prune_device_index_quietly();
        Ok(report)
    }

    /// Deletes events received before `cutoff_ms`, keeping (or counting) what sinks have not delivered.
    fn delete_old_events(
        &mut self,
        policy: &Retention,
        cutoff_ms: i64,
        report: &mut RetentionReport,
    ) -> Result<()> {
        match policy.keep_events_after {
            Some(keep) => {
                // Due events above the lowest sink cursor stay until delivered.
                let due_until = self
                    .first_id_at_or_after(Table::Events, cutoff_ms)?
                    .unwrap_or(i64::MAX);
                report.kept_undelivered = self.conn.query_row(
                    "SELECT COUNT(*) FROM events WHERE id > ?1 AND id < ?2",
                    params![keep, due_until],
                    |r| r.get::<_, i64>(0),
                )? as u64;
                let sql = "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ?1 AND id <= ?2 ORDER BY id LIMIT ?3)";
                report.events += self.delete_chunks(sql, params![due_until, keep, CHUNK])?;
            }
            None => {
                if let Some(after) = policy.undelivered_after {
                    let due_until = self
                        .first_id_at_or_after(Table::Events, cutoff_ms)?
                        .unwrap_or(i64::MAX);
                    report.dropped_undelivered = self.conn.query_row(
                        "SELECT COUNT(*) FROM events WHERE id > ?1 AND id < ?2",
                        params![after, due_until],
                        |r| r.get::<_, i64>(0),
                    )? as u64;
                }
                report.events += self.delete_older(Table::Events, cutoff_ms)?;
            }
        }
        Ok(())
    }

    /// Deletes dead letters older than their maximum age and beyond their maximum count.
    fn prune_dead_letters(&mut self, policy: &Retention, now_ms: i64) -> Result<u64> {
        let mut deleted = 0;
        if let Some(age) = policy.dead_letters_max_age_ms {
            let sql = "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE at < ?1 ORDER BY id LIMIT ?2)";
            deleted += self.delete_chunks(sql, params![now_ms - age, CHUNK])?;
        }
        if let Some(count) = policy.dead_letters_max_count {
            if let Some(bound) = self.newest_beyond(Table::DeadLetters, count)? {
                let sql = "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE id <= ?1 ORDER BY id LIMIT ?2)";
                deleted += self.delete_chunks(sql, params![bound, CHUNK])?;
            }
        }
        Ok(deleted)
    }

    /// Brings the size under `max` bytes: the write-ahead log first, then the oldest frames, dead
    /// letters and events, never below what a size limit always keeps.
    fn enforce_size(
        &mut self,
        policy: &Retention,
        max: u64,
        report: &mut RetentionReport,
    ) -> Result<()> {
        if self.size_bytes()? <= max {
            return Ok(());
        }
        self.truncate_wal_quietly();
        // Deleting writes to the log too: measure the pages against what the log was before.
        let wal = self.wal_bytes();
        let goal = max / 100 * SIZE_LOW_WATER_PERCENT;
        for _ in 0..SIZE_ROUNDS {
            if self.used_bytes()? + wal <= goal {
                break;
            }
            let deleted = self.delete_oldest_for_size(policy, report)?;
            if deleted == 0 {
                break;
            }
        }
        self.truncate_wal_quietly();
        let size_bytes = self.size_bytes()?;
        if size_bytes > max {
            report.size_unmet = Some(SizeUnmet {
                size_bytes,
                max_bytes: max,
                reason: self.why_size_stays(policy)?,
            });
        }
        Ok(())
    }

    /// Deletes one chunk of the oldest frames, else dead letters, else events; returns rows deleted.
    fn delete_oldest_for_size(
        &mut self,
        policy: &Retention,
        report: &mut RetentionReport,
    ) -> Result<u64> {
        let frames = self.delete_oldest_beyond(Table::Frames, SIZE_KEEPS_FRAMES, None)?;
        report.frames += frames;
        if frames > 0 {
            return Ok(frames);
        }
        let letters =
            self.delete_oldest_beyond(Table::DeadLetters, SIZE_KEEPS_DEAD_LETTERS, None)?;
        report.dead_letters += letters;
        if letters > 0 {
            return Ok(letters);
        }
        let events =
            self.delete_oldest_beyond(Table::Events, SIZE_KEEPS_EVENTS, policy.keep_events_after)?;
        report.events += events;
        if events > 0 {
            // Their per-device index rows too, so that the size is measured without them.
            self.prune_device_index_quietly();
        }
        Ok(events)
    }

    /// Says what a size pass left and why (for the warning).
    fn why_size_stays(&self, policy: &Retention) -> Result<String> {
        let count = |table: Table| -> Result<i64> {
            Ok(self
                .conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
        };
        let (events, frames, letters) = (
            count(Table::Events)?,
            count(Table::Frames)?,
            count(Table::DeadLetters)?,
        );
        let undelivered = match policy.keep_events_after {
            Some(keep) => {
                self.conn
                    .query_row("SELECT COUNT(*) FROM events WHERE id > ?1", [keep], |r| {
                        r.get::<_, i64>(0)
                    })?
            }
            None => 0,
        };
        let mut reason = format!(
            "a size limit never deletes the newest {SIZE_KEEPS_EVENTS} events, {SIZE_KEEPS_FRAMES} frames \
             and {SIZE_KEEPS_DEAD_LETTERS} dead letters; left: {events} events, {frames} frames, \
             {letters} dead letters, {:.1} MB of write-ahead log",
            self.wal_bytes() as f64 / 1_048_576.0
        );
        if undelivered > 0 {
            reason.push_str(&format!(
                "; {undelivered} events are kept until a sink delivers them (store.drop-undelivered = false)"
            ));
        }
        Ok(reason)
    }

    /// Checkpoints and truncates the write-ahead log; a failure (a reader still on an old snapshot,
    /// a full disk) only means the log keeps its size for now.
    fn truncate_wal_quietly(&self) {
        match self.checkpoint_truncate() {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("write-ahead log not truncated: a reader is still using it")
            }
            Err(e) => tracing::debug!(error = %e, "write-ahead log not truncated"),
        }
    }

    /// The id of the row just older than the newest `keep` rows of `table`: rows up to it may go.
    /// `None` when the table has at most `keep` rows.
    fn newest_beyond(&self, table: Table, keep: u64) -> Result<Option<i64>> {
        let sql = format!("SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET ?1");
        Ok(self
            .conn
            .query_row(&sql, [i64::try_from(keep).unwrap_or(i64::MAX)], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Deletes one chunk of the oldest rows of `table`, never the newest `keep` ones nor any above
    /// `keep_after`; returns rows deleted.
    fn delete_oldest_beyond(
        &mut self,
        table: Table,
        keep: u64,
        keep_after: Option<i64>,
    ) -> Result<u64> {
        let Some(bound) = self.newest_beyond(table, keep)? else {
            return Ok(0);
        };
        let bound = keep_after.map_or(bound, |k| bound.min(k));
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE id <= ?1 ORDER BY id LIMIT ?2)"
        );
        Ok(self.conn.execute(&sql, params![bound, CHUNK])? as u64)
    }

    fn delete_older(&mut self, table: Table, cutoff_ms: i64) -> Result<u64> {
        let Some(keep_from) = self.first_id_at_or_after(table, cutoff_ms)? else {
            // Everything is older than the cutoff.
            let sql = format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?1)"
            );
            return self.delete_chunks(&sql, params![CHUNK]);
        };
        let sql = format!("DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE id < ?1 ORDER BY id LIMIT ?2)");
        self.delete_chunks(&sql, params![keep_from, CHUNK])
    }

    fn delete_chunks(&mut self, sql: &str, params: impl rusqlite::Params + Copy) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.conn.execute(sql, params)? as u64;
            total += n;
            if n < CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// The smallest id of `table` (events or frames) received at or after `ms`, by binary search over
    /// ids (receive times grow with ids; a clock step back makes the bound approximate, never wrong by
    /// more than the step). `None` when every row is older.
    pub fn first_id_at_or_after(&self, table: Table, ms: i64) -> Result<Option<i64>> {
        let bounds = format!("SELECT MIN(id), MAX(id) FROM {table}");
        let (lo, hi): (Option<i64>, Option<i64>) = self
            .conn
            .query_row(&bounds, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let (Some(mut lo), Some(mut hi)) = (lo, hi) else {
            return Ok(None);
        };
        let at = format!("SELECT id, received_at FROM {table} WHERE id >= ?1 ORDER BY id LIMIT 1");
        let mut stmt = self.conn.prepare(&at)?;
        let row = |stmt: &mut rusqlite::Statement<'_>, id: i64| -> Result<(i64, i64)> {
            Ok(stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?)
        };
        if row(&mut stmt, hi)?.1 < ms {
            return Ok(None);
        }
        // P(x) = "the first row with id >= x was received at or after `ms`" is false…true over
        // [lo, hi]: find the smallest x where it holds.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if row(&mut stmt, mid)?.1 >= ms {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(Some(row(&mut stmt, lo)?.0))
    }
}
