//! Schemas of the decode records (`alarm_center_proto::FrameRecord`, protocol.md §5) that
//! `/api/decode` and `/api/frames/{id}` send. Like [`super::rows`], they describe JSON another crate
//! writes and are never built; the tests of [`super`] decode frames of every protocol and check each
//! record against them.

use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::ToSchema;

/// Which wire variant a frame was recognised as.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Protocol {
    /// Dahua DVRIP.
    Dvrip,
    /// Dahua DHIP.
    Dhip,
    /// XM/HiSilicon ("Sofia").
    Xm,
    /// A bare JSON object with no binary header.
    Json,
    /// An HTTP/1.x request (HTTP Alarm Center mode).
    Http,
    /// Bytes that are no recognisable frame; kept verbatim.
    Junk,
}

/// What a frame is for (protocol.md §4.6).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Kind {
    /// Carries alarm events.
    Alarm,
    /// Proves the device alive and nothing more.
    Keepalive,
    /// The scheduled self-report.
    Report,
    /// A reply.
    Reply,
    /// A request or notification that is none of the others.
    Request,
    /// A log record the device uploads.
    Log,
    /// Nothing understood.
    Unknown,
}

/// How the body was read.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum BodyFormat {
    /// A little-endian u32 bitmask (or several).
    Mask,
    /// `Key:Value` lines.
    Text,
    /// A JSON value.
    Json,
    /// Bytes not interpreted.
    Binary,
    /// No body.
    None,
}

/// One frame as `alarm-center decode --raw` prints it (protocol.md §5), keys in this order. In the
/// API `raw` is always present and `stream` never is. `body`, `device`, `fragment`,
/// `keepalive_period` and `error` are left out when absent.
#[derive(ToSchema)]
pub struct DecodeRecord {
    /// Offset of the frame's first byte in its stream.
    pub offset: u64,
    /// Bytes of the frame as kept (less than declared when oversized or incomplete).
    pub length: u64,
    /// The wire variant.
    pub protocol: Protocol,
    /// DVRIP: byte 0 (105 = 0x69, 246 = 0xF6, 161 = 0xA1, 177 = 0xB1). XM: message id (e.g. 1508).
    /// Null otherwise.
    #[schema(required = true)]
    pub command: Option<u32>,
    /// What the frame is for.
    pub kind: Kind,
    /// How the body was read.
    pub body_format: BodyFormat,
    /// The variant's header fields (described by [`header`]).
    #[schema(schema_with = header)]
    pub header: serde_json::Value,
    /// Present when the frame has a body. mask: `{"mask": N}` plus `"more": [...]` for further
    /// 32-bit words; text: an object of every key with its value as a string, in wire order; json:
    /// the body as sent, minified (a string of its text if serde_json cannot represent it); binary:
    /// `{"hex": "..."}`.
    #[schema(required = false)]
    pub body: serde_json::Value,
    /// Events read from the frame.
    pub events: Vec<DecodedEvent>,
    /// Identity the frame itself carries.
    #[schema(required = false)]
    pub device: DeviceIdentity,
    /// Set when the frame is one packet of a JSON message split over several.
    #[schema(required = false)]
    pub fragment: Fragment,
    /// Keep-alive period the device announced, seconds.
    #[schema(required = false)]
    pub keepalive_period: u32,
    /// Not produced by the API (only by the CLI for pcap and multi-stream hex input).
    #[schema(required = false)]
    pub stream: StreamInfo,
    /// Why the frame or its body could not be read fully, e.g. `unrecognized bytes`, `oversized: …`,
    /// `incomplete: …`, `invalid JSON body: …`.
    #[schema(required = false)]
    pub error: String,
    /// All bytes of the frame, lower-case hex.
    #[schema(pattern = "^([0-9a-f]{2})*$")]
    pub raw: String,
}

/// The `header` of a [`DecodeRecord`]: any of the variants' headers, or `{}`.
fn header() -> Schema {
    let variant = |name: &str| RefOr::Ref(Ref::from_schema_name(name));
    let empty = ObjectBuilder::new()
        .max_properties(Some(0))
        .description(Some("Bare JSON and junk: no header."));
    AnyOfBuilder::new()
        .item(variant("DvripHeader"))
        .item(variant("DhipHeader"))
        .item(variant("XmHeader"))
        .item(variant("HttpHeader"))
        .item(empty)
        .description(Some(
            "Variant fields (protocol.md §5.2; for HTTP `method`, `path`, `version`, `headers` as \
             [name, value] pairs); `{}` for bare JSON and junk.",
        ))
        .into()
}

/// An event read from a frame (protocol.md §5.3).
#[derive(ToSchema)]
pub struct DecodedEvent {
    /// Event code, e.g. `VideoMotion`.
    pub code: String,
    /// `start`, `stop`, `pulse`, `state`, or other device text lower-cased.
    pub action: String,
    /// 0-based input, channel or disk, when known.
    #[schema(required = false)]
    pub index: i64,
    /// index + 1, when index ≥ 0.
    #[schema(required = false)]
    pub channel: i64,
    /// Time as the device sent it, verbatim.
    #[schema(required = false)]
    pub device_time: String,
    /// Any JSON value.
    #[schema(required = false)]
    pub data: serde_json::Value,
}

/// Identity the frame itself carries (protocol.md §5.4); only present keys are sent.
#[derive(ToSchema)]
pub struct DeviceIdentity {
    /// Serial number.
    #[schema(required = false)]
    pub serial: String,
    /// MAC address.
    #[schema(required = false)]
    pub mac: String,
    /// Address the device reports.
    #[schema(required = false)]
    pub ip: String,
    /// Domain.
    #[schema(required = false)]
    pub domain: String,
}

/// One packet of a JSON message split over several.
#[derive(ToSchema)]
pub struct Fragment {
    /// 1-based number of this packet in its message.
    #[schema(minimum = 1)]
    pub index: u32,
    /// Body bytes received for the message so far, this packet included.
    pub received: u64,
    /// Total body length the message announced.
    pub total: u64,
}

/// Where a frame came from (CLI only).
#[derive(ToSchema)]
pub struct StreamInfo {
    /// 1-based number of the stream in its input.
    #[schema(required = false, minimum = 1)]
    pub index: u32,
    /// Sender `ip:port`.
    #[schema(required = false)]
    pub src: String,
    /// Receiver `ip:port`.
    #[schema(required = false)]
    pub dst: String,
    /// Capture or receive time of the packet that completed the frame, RFC 3339 UTC.
    #[schema(required = false, format = DateTime)]
    pub ts: String,
}
