//! XM/HiSilicon ("Sofia", NetSurveillance) protocol: a 20-byte binary header and a JSON body.
//!
//! ```text
//! off size  meaning (little-endian)
//!  0   1    0xFF
//!  1   1    version (1 from devices, 0 from some clients)
//!  2   2    reserved, zero
//!  4   4    session id
//!  8   4    sequence number
//! 12   1    total packets
//! 13   1    current packet
//! 14   2    message id (u16): 1508 = ALARMCENTER_MSG_REQ, 1006 = keepAlive
//! 16   4    body length in bytes (includes the trailing "\n")
//! ```

use serde::Serialize;

use crate::frame::{le_u16, le_u32, Frame};

/// Length of the XM header in bytes.
pub const HEADER_LEN: usize = 20;
/// First byte of every XM frame.
pub const MAGIC: u8 = 0xFF;
/// Message id of the Alarm Center push (ALARMCENTER_MSG_REQ).
pub const MSG_ALARM_CENTER: u16 = 1508;
/// Message id of the keepAlive request.
pub const MSG_KEEPALIVE: u16 = 1006;

/// Decoded XM header fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
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

impl Header {
    /// Parses the header of an XM frame (missing bytes read as zero).
    pub fn parse(frame: &Frame) -> Header {
        let h = frame.header();
        let byte = |at: usize| h.get(at).copied().unwrap_or(0);
        Header {
            version: byte(1),
            session_id: le_u32(h, 4).unwrap_or(0),
            sequence: le_u32(h, 8).unwrap_or(0),
            total_packets: byte(12),
            current_packet: byte(13),
            message_id: le_u16(h, 14).unwrap_or(0),
            body_length: le_u32(h, 16).unwrap_or(0),
        }
    }
}

/// Decodes XM's `Address` field: the IPv4 address as the hex of a little-endian u32
/// (`"0x0A01A8C0"` → `192.168.1.10`). `None` when the text is not such a number.
pub fn address_to_ipv4(text: &str) -> Option<std::net::Ipv4Addr> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    let value = u32::from_str_radix(digits, 16).ok()?;
    Some(std::net::Ipv4Addr::from(value.to_le_bytes()))
}
