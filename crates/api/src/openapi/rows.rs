//! Schemas of the store's rows as the API sends them (`alarm_center_store::StoredEvent`, `DeviceRow`,
//! `ConnectionRow`, `StoredFrame`, `SinkCursor`). They describe those types' JSON and are never built:
//! the answers serialise the store's own types. The tests of [`super`] check that each schema names
//! exactly the keys the store's type writes, and which of them are always present (D41).

use utoipa::ToSchema;

/// An event from the log (the same object `alarm-center events --json` prints). `channel_name`,
/// `data` and `synthetic` are left out when absent; the other keys are always present.
#[derive(ToSchema)]
pub struct Event {
    /// Log position (grows with time).
    pub id: i64,
    /// Device id.
    pub device: String,
    /// Event code, e.g. `VideoMotion`, `AlarmLocal`, `HumanDetect`; `DeviceOnline` / `DeviceOffline`
    /// for kind `device`.
    pub code: String,
    /// `start`, `stop`, `pulse`, `state`, or other device text lower-cased.
    pub action: String,
    /// 0-based input, channel or disk.
    #[schema(required = true)]
    pub index: Option<i64>,
    /// 1-based channel (index + 1).
    #[schema(required = true)]
    pub channel: Option<i64>,
    /// The channel's configured name, when configured.
    #[schema(required = false)]
    pub channel_name: String,
    /// Kind of the frame the event came from (usually `alarm`), or `device` for online/offline events.
    #[schema(examples("alarm", "device"))]
    pub kind: String,
    /// Time as the device sent it, verbatim (usually without a zone).
    #[schema(required = true)]
    pub device_time: Option<String>,
    /// Receive time, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub received_at: String,
    /// The raw frame the event came from; null for events the server made.
    #[schema(required = true)]
    pub frame_id: Option<i64>,
    /// Extra JSON data (device `Data`, remaining XM fields, 0x69 text keys; for `device` events the
    /// server's details such as `peer`, `connection`, `reason`).
    #[schema(required = false)]
    pub data: serde_json::Value,
    /// Why the server synthesised this event (e.g. `offline`, `auto-clear`).
    #[schema(required = false)]
    pub synthetic: String,
}

/// Whether a device is online, as supervision last decided.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DeviceState {
    /// Frames arrive within the keep-alive period plus grace.
    Online,
    /// Silent past it, or identified as another device.
    Offline,
}

/// A device the server knows.
#[derive(ToSchema)]
pub struct Device {
    /// Device id.
    pub id: String,
    /// Configured name.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Serial number, when the device sent one.
    #[schema(required = true)]
    pub serial: Option<String>,
    /// MAC address, when the device sent one.
    #[schema(required = true)]
    pub mac: Option<String>,
    /// Domain, when the device sent one.
    #[schema(required = true)]
    pub domain: Option<String>,
    /// Address the device reports.
    #[schema(required = true)]
    pub ip: Option<String>,
    /// Last TCP peer, `ip:port`.
    #[schema(required = true)]
    pub peer: Option<String>,
    /// Protocol of its last frame (`dvrip`, `dhip`, `xm`, `json`, `http`, `junk`).
    #[schema(required = true)]
    pub protocol: Option<String>,
    /// Online or offline.
    pub state: DeviceState,
    /// Since when it is in `state`, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub state_since: String,
    /// First contact, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub first_seen: String,
    /// Last frame received, RFC 3339 UTC: as the running server knows it (the store's copy, which
    /// the `devices` command reads, is written every `supervision.last-seen-flush`).
    #[schema(format = DateTime)]
    pub last_seen: String,
    /// Keep-alive period, seconds.
    #[schema(required = true)]
    pub keepalive_period: Option<u32>,
}

/// A TCP connection of a device.
#[derive(ToSchema)]
pub struct Connection {
    /// Connection id (as in `Frame.connection`).
    pub id: i64,
    /// Peer `ip:port`.
    pub peer: String,
    /// Opened, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub opened_at: String,
    /// Closed, RFC 3339 UTC; null while the connection is open.
    #[schema(required = true, format = DateTime)]
    pub closed_at: Option<String>,
    /// Why it closed.
    #[schema(required = true)]
    pub close_reason: Option<String>,
    /// Frames received (read live while the connection is open).
    #[schema(required = true)]
    pub frames: Option<i64>,
    /// Bytes received (read live while the connection is open).
    #[schema(required = true)]
    pub bytes: Option<i64>,
}

/// A raw frame as archived (metadata only; the bytes are not part of this object).
#[derive(ToSchema)]
pub struct Frame {
    /// Frame id.
    pub id: i64,
    /// Receive time, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub received_at: String,
    /// Device id, when known.
    #[schema(required = true)]
    pub device: Option<String>,
    /// Connection id.
    #[schema(required = true)]
    pub connection: Option<i64>,
    /// Offset of the frame's first byte in its TCP stream.
    pub stream_offset: i64,
    /// The wire variant.
    pub protocol: super::decoded::Protocol,
    /// DVRIP command byte / XM message id.
    #[schema(required = true)]
    pub command: Option<i64>,
    /// What the frame is for.
    pub kind: super::decoded::Kind,
    /// How the body was read.
    pub body_format: super::decoded::BodyFormat,
    /// Decode error.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Length in bytes.
    pub length: u64,
}

/// A sink's durable cursor and counters, plus `lag`.
#[derive(ToSchema)]
pub struct Sink {
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
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When the last error happened, RFC 3339 UTC.
    #[schema(required = true, format = DateTime)]
    pub last_error_at: Option<String>,
    /// When the cursor was saved, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Newest event id minus `position` (events not yet handled).
    pub lag: i64,
}
