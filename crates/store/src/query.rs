//! The read side: event log and device queries.

use rusqlite::params_from_iter;
use serde::Serialize;

use crate::{format_ms, Db, Result};

/// Filters for [`Db::events`]. Newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this device.
    pub device: Option<String>,
    /// Only this code (exact).
    pub code: Option<String>,
    /// Only this action (`start`, `stop`, `pulse`, …).
    pub action: Option<String>,
    /// Only this kind (`alarm`, `device`, …).
    pub kind: Option<String>,
    /// Only events received at or after this unix ms.
    pub since: Option<i64>,
    /// Only events received at or before this unix ms.
    pub until: Option<i64>,
    /// Only events with id below this (pagination cursor).
    pub before_id: Option<i64>,
    /// Only events with id above this (tailing).
    pub after_id: Option<i64>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
    /// Oldest first instead of newest first (sinks reading the log in order).
    pub ascending: bool,
}

/// Which events an events query reads.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// The whole log, by id.
    Log,
    /// One device's events up to this id, through `device_events`.
    Indexed(i64),
    /// Events after this id (not in `device_events` yet), by id.
    After(i64),
}

/// An event as stored: the event as it was appended, with its log position and raw frame.
///
/// Serialised (API, stdout, webhooks) as one flat object: `id`, `device`, `code`, `action`, `index`,
/// `channel`, `channel_name` (when set), `kind`, `device_time`, `received_at` (RFC 3339 UTC),
/// `frame_id`, `data` (the device's JSON, when set) and `synthetic` (when set).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Log position.
    pub id: i64,
    /// The raw frame that carried it.
    pub frame_id: Option<i64>,
    /// The event (its `frame` is [`FrameRef::None`](crate::FrameRef::None): `frame_id` says it).
    pub event: crate::NewEvent,
}

impl StoredEvent {
    /// The receive time as RFC 3339 UTC.
    pub fn received_at(&self) -> String {
        format_ms(self.event.received_at)
    }
}

impl Serialize for StoredEvent {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let e = &self.event;
        // Data that is not JSON (never written by the server) is left out rather than failing the
        // whole answer.
        let data = e
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str::<&serde_json::value::RawValue>(d).ok());
        let mut out = serializer.serialize_struct("StoredEvent", 13)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("device", &e.device)?;
        out.serialize_field("code", &e.code)?;
        out.serialize_field("action", &e.action)?;
        out.serialize_field("index", &e.index)?;
        out.serialize_field("channel", &e.channel)?;
        match &e.channel_name {
            Some(name) => out.serialize_field("channel_name", name)?,
            None => out.skip_field("channel_name")?,
        }
        out.serialize_field("kind", &e.kind)?;
        out.serialize_field("device_time", &e.device_time)?;
        out.serialize_field("received_at", &self.received_at())?;
        out.serialize_field("frame_id", &self.frame_id)?;
        match data {
            Some(data) => out.serialize_field("data", data)?,
            None => out.skip_field("data")?,
        }
        match &e.synthetic {
            Some(synthetic) => out.serialize_field("synthetic", synthetic)?,
            None => out.skip_field("synthetic")?,
        }
        out.end()
    }
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRow {
    /// Device id.
    pub id: String,
    /// Configured name.
    pub name: Option<String>,
    /// Serial.
    pub serial: Option<String>,
    /// MAC.
    pub mac: Option<String>,
    /// Domain.
    pub domain: Option<String>,
    /// Reported address.
    pub ip: Option<String>,
    /// Last TCP peer.
    pub peer: Option<String>,
    /// Protocol of its last frame.
    pub protocol: Option<String>,
    /// online / offline.
    pub state: crate::DeviceState,
    /// Since when, RFC 3339.
    pub state_since: String,
    /// First contact, RFC 3339.
    pub first_seen: String,
    /// Last frame, RFC 3339.
    pub last_seen: String,
    /// Last frame, unix milliseconds (not serialized: `last_seen` says it for people).
    #[serde(skip)]
    pub last_seen_ms: i64,
    /// Keep-alive period, seconds.
    pub keepalive_period: Option<u32>,
}

impl Db {
    /// Events matching `q`, newest first.
    pub fn events(&self, q: &EventQuery) -> Result<Vec<StoredEvent>> {
        if q.device.is_none() {
            return self.events_in(q, Part::Log);
        }
        // One device's events: those the per-device index holds (up to `upto`) and the newer ones
        // not added to it yet (D61). Each part is bounded by `upto` as read here, whatever the writer
        // adds meanwhile, so no event is missed or found twice.
        let upto = crate::device_index::indexed_upto(&self.conn)?;
        let limit = q.limit.unwrap_or(100) as usize;
        let (first, second) = if q.ascending {
            (Part::Indexed(upto), Part::After(upto))
        } else {
            (Part::After(upto), Part::Indexed(upto))
        };
        let mut events = self.events_in(q, first)?;
        if events.len() < limit {
            events.extend(self.events_in(q, second)?);
            events.truncate(limit);
        }
        Ok(events)
    }

    /// Events matching `q` in one part of the log.
    fn events_in(&self, q: &EventQuery, part: Part) -> Result<Vec<StoredEvent>> {
        // `CROSS JOIN` keeps `device_events` the outer loop: its key gives the device's ids in order.
        let (from, id, device) = match part {
            Part::Indexed(_) => (
                "device_events de CROSS JOIN events e ON e.id = de.id",
                "de.id",
                "de.device =",
            ),
            Part::Log | Part::After(_) => ("events e", "e.id", "e.device ="),
        };
        let mut sql = format!(
            "SELECT e.id, e.device, e.code, e.action, e.idx, e.channel, e.kind, e.device_time, e.received_at,
                    e.frame_id, e.data, e.synthetic, e.channel_name
             FROM {from} WHERE 1=1"
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut add = |clause: &str, value: rusqlite::types::Value| {
            args.push(value);
            sql.push_str(&format!(" AND {clause} ?{}", args.len()));
        };
        if let Some(d) = &q.device {
            add(device, d.clone().into());
        }
        match part {
            Part::Indexed(upto) => add(&format!("{id} <="), upto.into()),
            Part::After(upto) => add(&format!("{id} >"), upto.into()),
            Part::Log => {}
        }
        if let Some(c) = &q.code {
            add("e.code =", c.clone().into());
        }
        if let Some(a) = &q.action {
            add("e.action =", a.clone().into());
        }
        if let Some(k) = &q.kind {
            add("e.kind =", k.clone().into());
        }
        if let Some(u) = q.until {
            // As for `since`: the first event after `until` bounds the ids (none: every event is earlier).
            if let Some(after) =
                self.first_id_at_or_after(crate::Table::Events, u.saturating_add(1))?
            {
                add(&format!("{id} <"), after.into());
            }
        }
        if let Some(s) = q.since {
            // Ids grow with time: a bound on ids uses the primary key instead of scanning.
            let from = self
                .first_id_at_or_after(crate::Table::Events, s)?
                .unwrap_or(i64::MAX);
            add(&format!("{id} >="), from.into());
        }
        if let Some(b) = q.before_id {
            add(&format!("{id} <"), b.into());
        }
        if let Some(a) = q.after_id {
            add(&format!("{id} >"), a.into());
        }
        let order = if q.ascending { "ASC" } else { "DESC" };
        sql.push_str(&format!(
            " ORDER BY {id} {order} LIMIT {}",
            q.limit.unwrap_or(100)
        ));
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok(StoredEvent {
                id: r.get(0)?,
                frame_id: r.get(9)?,
                event: crate::NewEvent {
                    frame: crate::FrameRef::None,
                    device: r.get(1)?,
                    code: r.get(2)?,
                    action: r.get(3)?,
                    index: r.get(4)?,
                    channel: r.get(5)?,
                    channel_name: r.get(12)?,
                    kind: r.get(6)?,
                    device_time: r.get(7)?,
                    received_at: r.get(8)?,
                    data: r.get(10)?,
                    synthetic: r.get(11)?,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Number of events in the log.
    pub fn event_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?)
    }

    /// Number of archived frames.
    pub fn frame_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM frames", [], |r| r.get(0))?)
    }

    /// All devices, by id.
    pub fn devices(&self) -> Result<Vec<DeviceRow>> {
        self.devices_page(None, u32::MAX)
    }

    /// At most `limit` devices with an id after `after`, in id order (one page, read by the primary
    /// key: a page costs the same with 100 devices or 100,000).
    pub fn devices_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<DeviceRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, serial, mac, domain, ip, peer, protocol, state, state_since, first_seen, last_seen, keepalive_period
             FROM devices WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        // Every id sorts after the empty string: the first page is a range seek like the others
        // (`?1 IS NULL OR id > ?1` would scan the index from its start on every page).
        let after = after.unwrap_or_default();
        let rows = stmt.query_map(rusqlite::params![after, i64::from(limit)], |r| {
            Ok(DeviceRow {
                id: r.get(0)?,
                name: r.get(1)?,
                serial: r.get(2)?,
                mac: r.get(3)?,
                domain: r.get(4)?,
                ip: r.get(5)?,
                peer: r.get(6)?,
                protocol: r.get(7)?,
                state: r.get(8)?,
                state_since: format_ms(r.get(9)?),
                first_seen: format_ms(r.get(10)?),
                last_seen: format_ms(r.get(11)?),
                last_seen_ms: r.get(11)?,
                keepalive_period: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl StoredEvent {
    /// The stored form of `event`, just written with log position `id` and raw frame `frame_id`.
    pub fn from_new(id: i64, mut event: crate::NewEvent, frame_id: Option<i64>) -> StoredEvent {
        event.frame = crate::FrameRef::None;
        StoredEvent {
            id,
            frame_id,
            event,
        }
    }
}

/// Filters for [`Db::frames`]. Newest first.
#[derive(Debug, Clone, Default)]
pub struct FrameQuery {
    /// Only frames of this device.
    pub device: Option<String>,
    /// Only junk frames and frames whose kind is unknown or that carry an error.
    pub unknown: bool,
    /// Only frames with id below this (pagination cursor).
    pub before_id: Option<i64>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

/// A raw frame as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFrame {
    /// Frame id.
    pub id: i64,
    /// Receive time, RFC 3339 UTC.
    pub received_at: String,
    /// Device id, when known.
    pub device: Option<String>,
    /// Connection id.
    pub connection: Option<i64>,
    /// Offset in its TCP stream.
    pub stream_offset: i64,
    /// dvrip, dhip, xm, json, junk.
    pub protocol: String,
    /// DVRIP command / XM message id.
    pub command: Option<i64>,
    /// alarm, keepalive, …
    pub kind: String,
    /// mask, text, json, binary, none.
    pub body_format: String,
    /// Decode error.
    pub error: Option<String>,
    /// Length in bytes.
    pub length: usize,
    /// The bytes: filled by [`Db::frame`] only; lists ([`Db::frames`]) leave it empty and never read
    /// the blobs.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// The columns of a frame row, without its bytes.
const FRAME_COLUMNS: &str =
    "id, received_at, device, connection, stream_offset, protocol, command, kind, body_format, error, length";

impl Db {
    /// Frames matching `q`, newest first, without their bytes (`bytes` is empty, `length` says how
    /// many there are): a page of large frames costs no more than a page of small ones.
    pub fn frames(&self, q: &FrameQuery) -> Result<Vec<StoredFrame>> {
        let mut sql = format!("SELECT {FRAME_COLUMNS} FROM frames WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(d) = &q.device {
            args.push(d.clone().into());
            sql.push_str(&format!(" AND device = ?{}", args.len()));
        }
        if q.unknown {
            sql.push_str(" AND (protocol = 'junk' OR kind = 'unknown' OR error IS NOT NULL)");
        }
        if let Some(b) = q.before_id {
            args.push(b.into());
            sql.push_str(&format!(" AND id < ?{}", args.len()));
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            q.limit.unwrap_or(100)
        ));
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), frame_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One frame by id, with its bytes.
    pub fn frame(&self, id: i64) -> Result<Option<StoredFrame>> {
        use rusqlite::OptionalExtension;
        let sql = format!("SELECT {FRAME_COLUMNS}, bytes FROM frames WHERE id = ?1");
        Ok(self
            .conn
            .query_row(&sql, [id], |r| {
                let mut frame = frame_row(r)?;
                frame.bytes = r.get(11)?;
                Ok(frame)
            })
            .optional()?)
    }
}

/// A frame row of [`FRAME_COLUMNS`], its bytes left empty.
fn frame_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredFrame> {
    let length: i64 = r.get(10)?;
    Ok(StoredFrame {
        id: r.get(0)?,
        received_at: format_ms(r.get(1)?),
        device: r.get(2)?,
        connection: r.get(3)?,
        stream_offset: r.get(4)?,
        protocol: r.get(5)?,
        command: r.get(6)?,
        kind: r.get(7)?,
        body_format: r.get(8)?,
        error: r.get(9)?,
        length: usize::try_from(length).unwrap_or(0),
        bytes: Vec::new(),
    })
}

/// A connection of a device, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionRow {
    /// Connection id.
    pub id: i64,
    /// Peer `ip:port`.
    pub peer: String,
    /// Opened, RFC 3339.
    pub opened_at: String,
    /// Closed, RFC 3339 (None while open).
    pub closed_at: Option<String>,
    /// Why it closed.
    pub close_reason: Option<String>,
    /// Frames received.
    pub frames: Option<i64>,
    /// Bytes received.
    pub bytes: Option<i64>,
}

impl Db {
    /// Whether the store knows `device`: it has a device row, or events (a device forgotten by
    /// `server.device-expiry` keeps its events).
    pub fn device_known(&self, device: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM devices WHERE id = ?1)
                 OR (SELECT e.id FROM device_events de CROSS JOIN events e ON e.id = de.id
                     WHERE de.device = ?1 ORDER BY de.id DESC LIMIT 1) IS NOT NULL
                 OR EXISTS(SELECT 1 FROM events WHERE id > ?2 AND device = ?1)",
            rusqlite::params![device, crate::device_index::indexed_upto(&self.conn)?],
            |r| r.get(0),
        )?)
    }

    /// The newest `limit` connections of `device`, newest first.
    pub fn connections(&self, device: &str, limit: u32) -> Result<Vec<ConnectionRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, peer, opened_at, closed_at, close_reason, frames, bytes FROM connections
             WHERE device = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![device, limit], |r| {
            let closed: Option<i64> = r.get(3)?;
            Ok(ConnectionRow {
                id: r.get(0)?,
                peer: r.get(1)?,
                opened_at: format_ms(r.get(2)?),
                closed_at: closed.map(format_ms),
                close_reason: r.get(4)?,
                frames: r.get(5)?,
                bytes: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
