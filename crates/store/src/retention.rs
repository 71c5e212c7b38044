//! Retention: delete what is older than configured, and keep the database under a size.

use rusqlite::params;

use crate::{Db, Result};

/// What to keep. `None` keeps forever / without limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete events received more than this many milliseconds ago.
    pub events_max_age_ms: Option<i64>,
    /// Delete raw frames received more than this many milliseconds ago.
    pub frames_max_age_ms: Option<i64>,
    /// Keep the used part of the database under this many bytes: oldest frames go first, then events.
    pub max_bytes: Option<u64>,
    /// Never delete events with an id above this (the lowest sink cursor): undelivered events stay.
    pub keep_events_after: Option<i64>,
    /// When undelivered events may be deleted: the lowest sink cursor, to count what is dropped.
    pub undelivered_after: Option<i64>,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Events deleted.
    pub events: u64,
    /// Frames deleted.
    pub frames: u64,
    /// Events that were due for deletion but kept because a sink has not delivered them.
    pub kept_undelivered: u64,
    /// Events deleted although a sink had not delivered them (`store.drop-undelivered`).
    pub dropped_undelivered: u64,
}

/// Rows deleted per statement, so that one pass never holds the writer for long.
const CHUNK: i64 = 5_000;

impl Db {
    /// Bytes of the database in use (pages in use × page size).
    pub fn used_bytes(&self) -> Result<u64> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    /// Applies `policy` at `now_ms`. Deletes in chunks; call it periodically.
    pub fn apply_retention(&mut self, policy: &Retention, now_ms: i64) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        if let Some(age) = policy.events_max_age_ms {
            let cutoff = now_ms - age;
            match policy.keep_events_after {
                Some(keep) => {
                    // Due events above the lowest sink cursor stay until delivered.
                    let due_until = self
                        .first_id_at_or_after("events", cutoff)?
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
                            .first_id_at_or_after("events", cutoff)?
                            .unwrap_or(i64::MAX);
                        report.dropped_undelivered = self.conn.query_row(
                            "SELECT COUNT(*) FROM events WHERE id > ?1 AND id < ?2",
                            params![after, due_until],
                            |r| r.get::<_, i64>(0),
                        )? as u64;
                    }
                    report.events += self.delete_older("events", cutoff)?;
                }
            }
        }
        if let Some(age) = policy.frames_max_age_ms {
            report.frames += self.delete_older("frames", now_ms - age)?;
        }
        if let Some(max) = policy.max_bytes {
            // Oldest frames first (the bulk of the bytes), then the oldest events, a chunk at a time.
            for _ in 0..100 {
                if self.used_bytes()? <= max {
                    break;
                }
                let frames = self.delete_oldest("frames")?;
                report.frames += frames;
                if frames == 0 {
                    let events = match policy.keep_events_after {
                        Some(keep) => self.conn.execute(
                            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= ?1 ORDER BY id LIMIT ?2)",
                            params![keep, CHUNK],
                        )? as u64,
                        None => self.delete_oldest("events")?,
                    };
                    report.events += events;
                    if events == 0 {
                        break;
                    }
                }
            }
        }
        Ok(report)
    }

    fn delete_older(&mut self, table: &str, cutoff_ms: i64) -> Result<u64> {
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
    pub fn first_id_at_or_after(&self, table: &str, ms: i64) -> Result<Option<i64>> {
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

    fn delete_oldest(&mut self, table: &str) -> Result<u64> {
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?1)"
        );
        Ok(self.conn.execute(&sql, params![CHUNK])? as u64)
    }
}
