//! Schemas of the variant headers in a decode record's `header` (protocol.md §5.2), as
//! `alarm_center_proto` writes them. Never built (see [`super::decoded`]).

use utoipa::ToSchema;

/// DVRIP header fields.
#[derive(ToSchema)]
pub struct DvripHeader {
    /// Byte 3: 0x00 in requests, 0x78 seen in device replies.
    pub byte3: u8,
    /// Bytes 4–7: body length in bytes.
    pub body_length: u32,
    /// 0x69 only: byte 12, the alarm type.
    #[schema(required = false)]
    pub alarm_type: u8,
    /// 0x69 only: byte 13, the channel group (mask bit i = channel index i + 32 × group).
    #[schema(required = false)]
    pub channel_group: u8,
    /// 0x69 only: byte 17, the body format (0 mask, 1 text).
    #[schema(required = false)]
    pub body_format_byte: u8,
    /// 0xF6/0xF4 only: bytes 8–11, request id.
    #[schema(required = false)]
    pub request_id: u32,
    /// 0xF6/0xF4 only: bytes 12–15 (0 in requests, 1 seen in replies).
    #[schema(required = false)]
    pub flags: u32,
    /// 0xF6/0xF4 only: bytes 16–19, total body length across fragments.
    #[schema(required = false)]
    pub total_length: u32,
    /// 0xF6/0xF4 only: bytes 24–27, session id.
    #[schema(required = false)]
    pub session_id: u32,
    /// Hex of the header bytes 8–31 that no field above interprets, when any of them is non-zero.
    #[schema(required = false)]
    pub other: String,
}

/// DHIP header fields.
#[derive(ToSchema)]
pub struct DhipHeader {
    /// Bytes 8–11.
    pub session_id: u32,
    /// Bytes 12–15.
    pub request_id: u32,
    /// Bytes 16–19, body length of this packet.
    pub body_length: u32,
    /// Bytes 24–27, total body length across fragments.
    pub total_length: u32,
    /// Bytes 20–23, only when non-zero (zero in every capture seen).
    #[schema(required = false)]
    pub reserved_20: u32,
    /// Bytes 28–31, only when non-zero (zero in every capture seen).
    #[schema(required = false)]
    pub reserved_28: u32,
}

/// XM header fields.
#[derive(ToSchema)]
pub struct XmHeader {
    /// Byte 1.
    pub version: u8,
    /// Bytes 4–7.
    pub session_id: u32,
    /// Bytes 8–11.
    pub sequence: u32,
    /// Byte 12.
    pub total_packets: u8,
    /// Byte 13.
    pub current_packet: u8,
    /// Bytes 14–15.
    pub message_id: u16,
    /// Bytes 16–19.
    pub body_length: u32,
}

/// An HTTP-mode request's head (protocol.md, HTTP Alarm Center mode).
#[derive(ToSchema)]
pub struct HttpHeader {
    /// Request method.
    #[schema(examples("POST"))]
    pub method: String,
    /// Request target as sent.
    #[schema(examples("/cgi-bin/NotifyEvent"))]
    pub path: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: HttpVersion,
    /// Header fields in wire order, repeated names kept (values decoded as UTF-8, invalid bytes
    /// replaced).
    pub headers: Vec<(String, String)>,
}

/// The HTTP version of a request.
#[derive(ToSchema)]
pub enum HttpVersion {
    /// HTTP/1.0.
    #[schema(rename = "HTTP/1.0")]
    Http10,
    /// HTTP/1.1.
    #[schema(rename = "HTTP/1.1")]
    Http11,
}
