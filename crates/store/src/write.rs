//! The write side: one transaction per batch.

use rusqlite::{params, OptionalExtension};

use crate::{Db, Result};

/// A raw frame to archive.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFrame {
    /// Receive time, unix milliseconds.
    pub received_at: i64,
    /// Device id, when known.
    pub device: Option<String>,
    /// Connection id.
    pub connection: i64,
    /// Offset of the frame in its TCP stream, bytes.
    pub stream_offset: u64,
    /// `dvrip`, `dhip`, `xm`, `json`, `junk`.
    pub protocol: &'static str,
    /// DVRIP command byte or XM message id.
    pub command: Option<u32>,
    /// `alarm`, `keepalive`, ….
    pub kind: &'static str,
    /// `mask`, `text`, `json`, `binary`, `none`.
    pub body_format: &'static str,
    /// Decode error, if any.
    pub error: Option<String>,
    /// The bytes as received.
    pub bytes: bytes::Bytes,
}

/// An event to append to the log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The frame that carried it (`FrameRef::None` for the server's own events).
    pub frame: crate::FrameRef,
    /// Device id.
    pub device: String,
    /// Event code.
    pub code: String,
    /// What happened: start, stop, pulse, state, or the device's own word.
    pub action: crate::EventAction,
    /// 0-based index.
    pub index: Option<i64>,
    /// 1-based channel.
    pub channel: Option<i64>,
    /// The channel's configured name.
    pub channel_name: Option<String>,
    /// Frame kind (`alarm`, …) or `device` for online/offline.
    pub kind: crate::EventKind,
    /// Device time (with offset when the zone is known).
    pub device_time: Option<String>,
    /// Receive time, unix milliseconds.
    pub received_at: i64,
    /// JSON data.
    pub data: Option<String>,
    /// Why the server made it; `None` when the device sent it.
    pub synthetic: Option<crate::Synthetic>,
}

/// Insert-or-update of a device row. `None` fields keep their stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceUpdate {
    /// Device id.
    pub id: String,
    /// Configured display name.
    pub name: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// MAC address.
    pub mac: Option<String>,
    /// DDNS/domain name.
    pub domain: Option<String>,
    /// Address the device reports.
    pub ip: Option<String>,
    /// Last TCP peer.
    pub peer: Option<String>,
    /// Protocol of its last frame.
    pub protocol: Option<String>,
    /// New state and since when (unix ms).
    pub state: Option<(crate::DeviceState, i64)>,
    /// Last frame received, unix ms.
    pub last_seen: i64,
    /// Keep-alive period in seconds.
    pub keepalive_period: Option<u32>,
    /// The first frame of a new device.
    pub first_frame: crate::FrameRef,
}

impl DeviceUpdate {
    /// Says nothing but `last_seen` (what the upsert would change in an existing row).
    fn only_last_seen(&self) -> bool {
        let DeviceUpdate {
            id: _,
            name,
            serial,
            mac,
            domain,
            ip,
            peer,
            protocol,
            state,
            last_seen: _,
            keepalive_period,
            first_frame: _,
        } = self;
        name.is_none()
            && serial.is_none()
            && mac.is_none()
            && domain.is_none()
            && ip.is_none()
            && peer.is_none()
            && protocol.is_none()
            && state.is_none()
            && keepalive_period.is_none()
    }
}

/// A connection opened.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionOpen {
    /// Connection id (assigned by the server, continuing after [`Db::max_connection_id`]).
    pub id: i64,
    /// Peer `ip:port`.
    pub peer: String,
    /// Unix ms.
    pub opened_at: i64,
}

/// A connection closed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionClose {
    /// Connection id.
    pub id: i64,
    /// Device id, when it became known.
    pub device: Option<String>,
    /// Unix ms.
    pub closed_at: i64,
    /// Why it closed.
    pub reason: String,
    /// Frames received.
    pub frames: u64,
    /// Bytes received.
    pub bytes: u64,
}

/// An open connection learned its device (its row gets the device and its counters so far).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionIdentified {
    /// Connection id.
    pub id: i64,
    /// Device id.
    pub device: String,
    /// Frames received so far.
    pub frames: u64,
    /// Bytes received so far.
    pub bytes: u64,
}

/// A device row to delete (an expired device): its events, frames and connections stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRemoval {
    /// Device id.
    pub id: String,
    /// The row goes only if its `last_seen` (unix ms) is at or before this: a device heard again
    /// since (its row written anew in the meantime) keeps it.
    pub silent_since: i64,
}

/// Everything written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Connections opened.
    pub opened: Vec<ConnectionOpen>,
    /// Raw frames.
    pub frames: Vec<NewFrame>,
    /// Device rows.
    pub devices: Vec<DeviceUpdate>,
    /// Events, in log order.
    pub events: Vec<NewEvent>,
    /// Connections closed or identified.
    pub closed: Vec<ConnectionClose>,
    /// Connections that learned their device (applied before `closed`).
    pub identified: Vec<ConnectionIdentified>,
    /// Device rows to delete, after everything else in the batch.
    pub removed_devices: Vec<DeviceRemoval>,
}

impl Batch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.opened.is_empty()
            && self.frames.is_empty()
            && self.devices.is_empty()
            && self.events.is_empty()
            && self.closed.is_empty()
            && self.identified.is_empty()
            && self.removed_devices.is_empty()
    }
}

/// Ids assigned by a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteResult {
    /// `frames[i]` got id `frame_ids[i]`.
    pub frame_ids: Vec<i64>,
    /// `events[i]` got id `event_ids[i]` (ascending).
    pub event_ids: Vec<i64>,
    /// Pages in the write-ahead log after the commit ([`Db::page_size`] bytes each), when the
    /// connection reports it (after [`Db::disable_auto_checkpoint`]).
    pub log_pages: Option<u32>,
}

thread_local! {
    /// What the write-ahead log hook saw at this thread's last commit: SQLite calls it on the
    /// committing thread, inside the commit, so [`Db::write`] reads it right after.
    pub(crate) static LOG_PAGES: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// The write-ahead log hook (`sqlite3_wal_hook`): records the log's length in pages after a commit.
pub(crate) fn note_log_pages(
    _: &rusqlite::hooks::Wal,
    pages: std::ffi::c_int,
) -> rusqlite::Result<()> {
    LOG_PAGES.set(u32::try_from(pages).ok());
    Ok(())
}

/// The connection rows a batch inserts, with what the batch's identifications and closes of the same
/// connections set in them (see [`Db::write`]).
struct ConnectionRows<'a> {
    /// One per `batch.opened`, in order.
    rows: Vec<FoldedRow<'a>>,
    /// Ids whose identifications and closes are folded into their row.
    folded: std::collections::HashSet<i64>,
}

/// The columns of a connection row beyond its id, peer and opening time.
#[derive(Default)]
struct FoldedRow<'a> {
    device: Option<&'a str>,
    closed_at: Option<i64>,
    close_reason: Option<&'a str>,
    frames: Option<i64>,
    bytes: Option<i64>,
}

impl<'a> ConnectionRows<'a> {
    fn fold(batch: &'a Batch) -> ConnectionRows<'a> {
        let mut rows: Vec<FoldedRow<'a>> =
            batch.opened.iter().map(|_| FoldedRow::default()).collect();
        if batch.identified.is_empty() && batch.closed.is_empty() {
            return ConnectionRows {
                rows,
                folded: Default::default(),
            };
        }
        // The last insert of an id is the row the updates apply to (INSERT OR REPLACE).
        let index: std::collections::HashMap<i64, usize> = batch
            .opened
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        // In the order the updates run: identifications, then closes.
        for c in &batch.identified {
            if let Some(row) = index.get(&c.id).map(|&i| &mut rows[i]) {
                row.device = Some(&c.device);
                row.frames = Some(c.frames as i64);
                row.bytes = Some(c.bytes as i64);
            }
        }
        for c in &batch.closed {
            if let Some(row) = index.get(&c.id).map(|&i| &mut rows[i]) {
                row.device = c.device.as_deref().or(row.device);
                row.closed_at = Some(c.closed_at);
                row.close_reason = Some(&c.reason);
                row.frames = Some(c.frames as i64);
                row.bytes = Some(c.bytes as i64);
            }
        }
        let folded = index.into_keys().collect();
        ConnectionRows { rows, folded }
    }

    /// The updates of `updates` still to run: those of connections not inserted by the batch.
    fn unfolded<'u, T>(
        &'u self,
        updates: &'u [T],
        id: impl Fn(&T) -> i64 + 'u,
    ) -> impl Iterator<Item = &'u T> + 'u {
        updates
            .iter()
            .filter(move |u| !self.folded.contains(&id(u)))
    }
}

/// Rows per multi-row `INSERT` of frames and events: one statement (its sequence lookup and update,
/// its start and end) for this many rows; 32 × 12 parameters stay far under SQLite's limit. The
/// statements are `INSERT OR FAIL`: with the default (`ABORT`) SQLite copies every page a multi-row
/// statement touches into a statement journal, to undo that statement alone if a later row fails; here
/// any failure fails the whole transaction (`Db::write` returns the error and the transaction rolls
/// back), so nothing needs it (−12 % instructions for the store's writes, D57).
pub(crate) const ROWS_PER_INSERT: usize = 32;

/// The multi-row `INSERT` statements of one table: [`ROWS_PER_INSERT`] rows, then 16, 8, 4, 2 and 1
/// (a commit of a few hundred events left up to 31 rows, which went one statement each: each
/// statement costs its start, its sequence lookup and update and its end, about as much as several
/// rows). The SQL texts are made once: the statement cache is looked up by text.
pub(crate) struct MultiInsert {
    columns: usize,
    /// `(rows, SQL)`, largest first.
    statements: Vec<(usize, String)>,
}

impl MultiInsert {
    /// `insert` is `INSERT … INTO t (c1, …)`, with `columns` columns.
    pub(crate) fn new(insert: &str, columns: usize) -> MultiInsert {
        let row = format!("({})", vec!["?"; columns].join(", "));
        let statements = std::iter::successors(Some(ROWS_PER_INSERT), |n| (*n > 1).then(|| n / 2))
            .map(|n| {
                (
                    n,
                    format!("{insert} VALUES {}", vec![row.as_str(); n].join(", ")),
                )
            })
            .collect();
        MultiInsert {
            columns,
            statements,
        }
    }
}

static FRAME_ROWS: std::sync::LazyLock<MultiInsert> = std::sync::LazyLock::new(|| {
    MultiInsert::new(
        "INSERT OR FAIL INTO frames (received_at, device, connection, stream_offset, protocol, command, kind, body_format, error, length, bytes)",
        11,
    )
});

static EVENT_ROWS: std::sync::LazyLock<MultiInsert> = std::sync::LazyLock::new(|| {
    MultiInsert::new(
        "INSERT OR FAIL INTO events (device, code, action, idx, channel, channel_name, kind, device_time, received_at, frame_id, data, synthetic)",
        12,
    )
});

/// Inserts `rows` with the statements of `insert`, largest first; `bind` binds one row's values from
/// parameter `at` (1-based) on. After each statement, `done(rows, inserted)`.
pub(crate) fn execute_rows<T>(
    tx: &rusqlite::Transaction<'_>,
    insert: &MultiInsert,
    rows: &[T],
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &T) -> rusqlite::Result<()>,
    mut done: impl FnMut(usize, usize),
) -> Result<()> {
    let mut rest = rows;
    for (size, sql) in &insert.statements {
        if rest.len() < *size {
            continue;
        }
        let mut stmt = tx.prepare_cached(sql)?;
        while rest.len() >= *size {
            let (chunk, after) = rest.split_at(*size);
            for (i, row) in chunk.iter().enumerate() {
                bind(&mut stmt, 1 + i * insert.columns, row)?;
            }
            done(*size, stmt.raw_execute()?);
            rest = after;
        }
    }
    Ok(())
}

/// Inserts `rows` into an `AUTOINCREMENT` table with [`execute_rows`]. Pushes each row's id to `ids`,
/// in order: the rows of one statement get consecutive ids (SQLite gives each new row the largest id
/// so far plus one, and one connection writes), the last of which is `last_insert_rowid`.
fn insert_rows<T>(
    tx: &rusqlite::Transaction<'_>,
    insert: &MultiInsert,
    rows: &[T],
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &T) -> rusqlite::Result<()>,
    ids: &mut Vec<i64>,
) -> Result<()> {
    execute_rows(tx, insert, rows, bind, |size, inserted| {
        debug_assert_eq!(
            inserted, size,
            "a multi-row insert wrote another number of rows"
        );
        let last = tx.last_insert_rowid();
        ids.extend(last - size as i64 + 1..=last);
    })
}

/// A device's `last_seen` moves on (never back), its other columns stay: what the upsert does with
/// an update that says nothing else.
const LAST_SEEN: &str = "UPDATE devices SET last_seen = MAX(last_seen, ?2) WHERE id = ?1";
/// Deletes a device row unless it was heard after `?2` (unix ms).
const REMOVE_DEVICE: &str = "DELETE FROM devices WHERE id = ?1 AND last_seen <= ?2";

impl Db {
    /// Writes a batch in one transaction; nothing of it is visible before the commit.
    pub fn write(&mut self, batch: &Batch) -> Result<WriteResult> {
        let tx = self.conn.transaction()?;
        let mut result = WriteResult::default();
        {
            // A connection opened, identified and closed within the batch (a camera that sends one
            // alarm per connection) is written once, as the insert and the updates below would leave
            // it: one statement instead of three.
            let rows = ConnectionRows::fold(batch);
            let mut open = tx.prepare_cached(
                "INSERT OR REPLACE INTO connections (id, peer, opened_at, device, closed_at, close_reason, frames, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (c, row) in batch.opened.iter().zip(&rows.rows) {
                open.execute(params![
                    c.id,
                    c.peer,
                    c.opened_at,
                    row.device,
                    row.closed_at,
                    row.close_reason,
                    row.frames,
                    row.bytes
                ])?;
            }
            insert_rows(
                &tx,
                &FRAME_ROWS,
                &batch.frames,
                |stmt, at, f| {
                    stmt.raw_bind_parameter(at, f.received_at)?;
                    stmt.raw_bind_parameter(at + 1, &f.device)?;
                    stmt.raw_bind_parameter(at + 2, f.connection)?;
                    stmt.raw_bind_parameter(at + 3, f.stream_offset as i64)?;
                    stmt.raw_bind_parameter(at + 4, f.protocol)?;
                    stmt.raw_bind_parameter(at + 5, f.command)?;
                    stmt.raw_bind_parameter(at + 6, f.kind)?;
                    stmt.raw_bind_parameter(at + 7, f.body_format)?;
                    stmt.raw_bind_parameter(at + 8, &f.error)?;
                    stmt.raw_bind_parameter(at + 9, f.bytes.len() as i64)?;
                    stmt.raw_bind_parameter(at + 10, &f.bytes[..])
                },
                &mut result.frame_ids,
            )?;
            let frame_id =
                |r: crate::FrameRef| r.in_batch().and_then(|i| result.frame_ids.get(i).copied());
            let mut device = tx.prepare_cached(
                "INSERT INTO devices (id, name, serial, mac, domain, ip, peer, protocol, state, state_since,
                                      first_seen, last_seen, keepalive_period, first_frame)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, COALESCE(?9, 'online'), COALESCE(?10, ?11), ?11, ?11, ?12, ?13)
                 ON CONFLICT(id) DO UPDATE SET
                    name = COALESCE(excluded.name, name), serial = COALESCE(excluded.serial, serial),
                    mac = COALESCE(excluded.mac, mac), domain = COALESCE(excluded.domain, domain),
                    ip = COALESCE(excluded.ip, ip), peer = COALESCE(excluded.peer, peer),
                    protocol = COALESCE(excluded.protocol, protocol),
                    state = COALESCE(?9, state), state_since = COALESCE(?10, state_since),
                    last_seen = MAX(last_seen, excluded.last_seen),
                    keepalive_period = COALESCE(excluded.keepalive_period, keepalive_period)",
            )?;
            let mut seen = tx.prepare_cached(LAST_SEEN)?;
            for d in &batch.devices {
                // Most updates are the periodic `last_seen` of devices that only sent keepAlives:
                // updating that column alone costs about 70 % of the upsert's instructions (which
                // builds, checks and rewrites every column). Without a row, the upsert creates it.
                if d.only_last_seen() && seen.execute(params![d.id, d.last_seen])? == 1 {
                    continue;
                }
                let (state, since) = d.state.unzip();
                device.execute(params![
                    d.id,
                    d.name,
                    d.serial,
                    d.mac,
                    d.domain,
                    d.ip,
                    d.peer,
                    d.protocol,
                    state,
                    since,
                    d.last_seen,
                    d.keepalive_period,
                    frame_id(d.first_frame)
                ])?;
            }
            insert_rows(
                &tx,
                &EVENT_ROWS,
                &batch.events,
                |stmt, at, e| {
                    stmt.raw_bind_parameter(at, &e.device)?;
                    stmt.raw_bind_parameter(at + 1, &e.code)?;
                    stmt.raw_bind_parameter(at + 2, &e.action)?;
                    stmt.raw_bind_parameter(at + 3, e.index)?;
                    stmt.raw_bind_parameter(at + 4, e.channel)?;
                    stmt.raw_bind_parameter(at + 5, &e.channel_name)?;
                    stmt.raw_bind_parameter(at + 6, &e.kind)?;
                    stmt.raw_bind_parameter(at + 7, &e.device_time)?;
                    stmt.raw_bind_parameter(at + 8, e.received_at)?;
                    stmt.raw_bind_parameter(at + 9, frame_id(e.frame))?;
                    stmt.raw_bind_parameter(at + 10, &e.data)?;
                    stmt.raw_bind_parameter(at + 11, &e.synthetic)
                },
                &mut result.event_ids,
            )?;
            let mut identify = tx.prepare_cached(
                "UPDATE connections SET device = ?2, frames = ?3, bytes = ?4 WHERE id = ?1",
            )?;
            for c in rows.unfolded(&batch.identified, |c| c.id) {
                identify.execute(params![c.id, c.device, c.frames as i64, c.bytes as i64])?;
            }
            let mut close = tx.prepare_cached(
                "UPDATE connections SET device = COALESCE(?2, device), closed_at = ?3,
                        close_reason = ?4, frames = ?5, bytes = ?6 WHERE id = ?1",
            )?;
            for c in rows.unfolded(&batch.closed, |c| c.id) {
                close.execute(params![
                    c.id,
                    c.device,
                    c.closed_at,
                    c.reason,
                    c.frames as i64,
                    c.bytes as i64
                ])?;
            }
            let mut remove = tx.prepare_cached(REMOVE_DEVICE)?;
            for r in &batch.removed_devices {
                remove.execute(params![r.id, r.silent_since])?;
            }
        }
        LOG_PAGES.set(None);
        tx.commit()?;
        result.log_pages = LOG_PAGES.take();
        // The per-device index, in bulk when due, in a transaction of its own (D61).
        if self.add_due_to_device_index(&batch.events, &result.event_ids) {
            result.log_pages = LOG_PAGES.take().or(result.log_pages);
        }
        Ok(result)
    }

    /// Deletes the row of device `id` unless it was heard after `silent_since` (unix ms); its events,
    /// frames and connections stay. Returns whether a row was deleted.
    pub fn delete_device(&self, id: &str, silent_since: i64) -> Result<bool> {
        let deleted = self
            .conn
            .prepare_cached(REMOVE_DEVICE)?
            .execute(params![id, silent_since])?;
        Ok(deleted > 0)
    }

    /// The stored state of one device, if known.
    pub fn device_state(&self, id: &str) -> Result<Option<crate::DeviceState>> {
        Ok(self
            .conn
            .query_row("SELECT state FROM devices WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }
}
