//! Sink cursors and dead letters: each sink reads the event log from its own durable position.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::{format_ms, Db, Result};

/// A sink's durable position and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkCursor {
    /// Sink name.
    pub sink: String,
    /// Id of the last event handled; the sink resumes after it.
    pub position: i64,
    /// Events the destination accepted.
    pub delivered: u64,
    /// Events skipped by the sink's rules.
    pub filtered: u64,
    /// Events given up on after the last retry.
    pub dead_letters: u64,
    /// Failed attempts (each retried).
    pub failures: u64,
    /// The last error.
    pub last_error: Option<String>,
    /// When, RFC 3339.
    pub last_error_at: Option<String>,
    /// When the cursor was saved, RFC 3339.
    pub updated_at: String,
}

impl Db {
    /// The cursor of `sink`, if it ever ran.
    pub fn sink_cursor(&self, sink: &str) -> Result<Option<SinkCursor>> {
        Ok(self
            .conn
            .query_row(
                "SELECT sink, position, delivered, filtered, dead_letters, failures, last_error, last_error_at, updated_at
                 FROM sink_cursors WHERE sink = ?1",
                [sink],
                cursor_row,
            )
            .optional()?)
    }

    /// Every sink's cursor.
    pub fn sink_cursors(&self) -> Result<Vec<SinkCursor>> {
        let mut stmt = self.conn.prepare(
            "SELECT sink, position, delivered, filtered, dead_letters, failures, last_error, last_error_at, updated_at
             FROM sink_cursors ORDER BY sink",
        )?;
        let rows = stmt.query_map([], cursor_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Saves a sink's position and counters (`last_error_at` and `updated_at` as unix ms).
    pub fn save_sink_cursor(
        &self,
        sink: &str,
        position: i64,
        counts: SinkCounts,
        last_error: Option<(&str, i64)>,
        now_ms: i64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO sink_cursors (sink, position, delivered, filtered, dead_letters, failures, last_error, last_error_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(sink) DO UPDATE SET position = ?2, delivered = ?3, filtered = ?4, dead_letters = ?5,
                failures = ?6, last_error = COALESCE(?7, last_error), last_error_at = COALESCE(?8, last_error_at), updated_at = ?9",
            params![
                sink,
                position,
                counts.delivered as i64,
                counts.filtered as i64,
                counts.dead_letters as i64,
                counts.failures as i64,
                last_error.map(|e| e.0),
                last_error.map(|e| e.1),
                now_ms
            ],
        )?;
        Ok(())
    }

    /// Records an event a sink gave up on.
    pub fn add_dead_letter(
        &self,
        sink: &str,
        event_id: i64,
        at_ms: i64,
        attempts: u32,
        error: &str,
        request: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO dead_letters (sink, event_id, at, attempts, error, request) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![sink, event_id, at_ms, attempts, error, request],
        )?;
        Ok(())
    }

    /// Dead letters of `sink`, oldest first.
    pub fn dead_letters(&self, sink: &str) -> Result<Vec<DeadLetter>> {
        let mut stmt = self.conn.prepare("SELECT event_id, attempts, error, request FROM dead_letters WHERE sink = ?1 ORDER BY id")?;
        let rows = stmt.query_map([sink], |r| {
            Ok(DeadLetter {
                event_id: r.get(0)?,
                attempts: r.get(1)?,
                error: r.get(2)?,
                request: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The distinct kinds of event in the log from `from_id` on ([`EventKey`]: device, channel, code,
    /// pulse or start/stop), the server's own device events excluded.
    pub fn event_keys_since(&self, from_id: i64) -> Result<Vec<EventKey>> {
        let mut stmt = self.conn.prepare(
            "SELECT device, channel, code, action NOT IN ('start', 'stop') AS pulse, MAX(channel_name)
             FROM events WHERE id >= ?1 AND kind != 'device' GROUP BY device, channel, code, pulse",
        )?;
        let rows = stmt.query_map([from_id], |r| {
            Ok(EventKey {
                device: r.get(0)?,
                channel: r.get(1)?,
                code: r.get(2)?,
                pulse: r.get(3)?,
                channel_name: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The lowest position among `sinks` (`None` when none of them has a cursor yet).
    pub fn min_sink_position(&self, sinks: &[String]) -> Result<Option<i64>> {
        let mut lowest: Option<i64> = None;
        for sink in sinks {
            if let Some(c) = self.sink_cursor(sink)? {
                lowest = Some(lowest.map_or(c.position, |l| l.min(c.position)));
            }
        }
        Ok(lowest)
    }

    /// The end of the event log: the highest event id ever assigned (0 for a new store). Ids are never
    /// reused, so this does not go back when retention deletes the newest events, and a sink whose
    /// cursor is here has handled everything.
    pub fn last_event_id(&self) -> Result<i64> {
        crate::schema::log_end(&self.conn)
    }
}

/// Moves back every sink cursor that is ahead of the event log's end `log_end`, loudly, and returns
/// the highest cursor position found (0 without cursors).
///
/// A cursor can only be ahead when event ids were reused (stores before schema version 3, once
/// retention had emptied the log): the events now in the log were then written after that and the sink
/// never saw them, so it is moved to just before the oldest of them (to `log_end` when the log is
/// empty). Deliveries are at-least-once; this keeps them so.
pub(crate) fn repair_cursors_ahead(conn: &rusqlite::Connection, log_end: i64) -> Result<i64> {
    let ahead: Vec<(String, i64)> = {
        let mut stmt = conn
            .prepare("SELECT sink, position FROM sink_cursors WHERE position > ?1 ORDER BY sink")?;
        let rows = stmt.query_map([log_end], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let highest: i64 = conn.query_row(
        "SELECT COALESCE(MAX(position), 0) FROM sink_cursors",
        [],
        |r| r.get(0),
    )?;
    if ahead.is_empty() {
        return Ok(highest);
    }
    let (oldest, in_log): (Option<i64>, i64) = conn.query_row(
        "SELECT MIN(id), COUNT(*) FROM events WHERE id <= ?1",
        [log_end],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let moved_to = oldest.map_or(log_end, |id| id - 1);
    for (sink, position) in &ahead {
        tracing::error!(
            sink = %sink,
            cursor = position,
            last_event_id = log_end,
            moved_to,
            undelivered = in_log,
            "sink cursor {position} of {sink:?} is ahead of the event log, whose last event id is {log_end}: \
             event ids were reused (stores before schema version 3 reused them once retention had \
             emptied the log); the cursor is moved back to {moved_to} so that the {in_log} events in the log, which this sink \
             never saw, are delivered"
        );
        conn.execute(
            "UPDATE sink_cursors SET position = ?2 WHERE sink = ?1",
            params![sink, moved_to],
        )?;
    }
    Ok(highest)
}

/// What a kind of event is keyed by: the device, channel and code it was seen for, and whether it came
/// as pulses or as start/stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    /// Device id.
    pub device: String,
    /// 1-based channel.
    pub channel: Option<i64>,
    /// Event code.
    pub code: String,
    /// Seen as pulses (no start/stop).
    pub pulse: bool,
    /// The channel's configured name.
    pub channel_name: Option<String>,
}

/// An event a sink gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The event.
    pub event_id: i64,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// What was sent.
    pub request: Option<String>,
}

/// A sink's counters, saved with its cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Events the destination accepted.
    pub delivered: u64,
    /// Events skipped by rules.
    pub filtered: u64,
    /// Events given up on.
    pub dead_letters: u64,
    /// Failed attempts.
    pub failures: u64,
}

fn cursor_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SinkCursor> {
    let err_at: Option<i64> = r.get(7)?;
    Ok(SinkCursor {
        sink: r.get(0)?,
        position: r.get(1)?,
        delivered: r.get::<_, i64>(2)? as u64,
        filtered: r.get::<_, i64>(3)? as u64,
        dead_letters: r.get::<_, i64>(4)? as u64,
        failures: r.get::<_, i64>(5)? as u64,
        last_error: r.get(6)?,
        last_error_at: err_at.map(format_ms),
        updated_at: format_ms(r.get(8)?),
    })
}
