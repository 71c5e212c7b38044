//! Dahua DHIP: JSON-RPC behind a 32-byte binary header.
//!
//! ```text
//! off size  meaning (little-endian)
//!  0   4    20 00 00 00
//!  4   4    'D' 'H' 'I' 'P'
//!  8   4    session id
//! 12   4    request id
//! 16   4    body length of this packet in bytes (includes the trailing "\n")
//! 20   4    0
//! 24   4    total body length (= body length unless fragmented)
//! 28   4    0
//! ```

use serde::Serialize;

use crate::frame::{le_u32, Frame};

/// Length of the DHIP header in bytes.
pub const HEADER_LEN: usize = 32;
/// The first eight bytes of every DHIP frame.
pub const MAGIC: [u8; 8] = [0x20, 0, 0, 0, b'D', b'H', b'I', b'P'];

/// Decoded DHIP header fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Bytes 8–11.
    pub session_id: u32,
    /// Bytes 12–15.
    pub request_id: u32,
    /// Bytes 16–19, body length of this packet.
    pub body_length: u32,
    /// Bytes 24–27, total body length across fragments.
    pub total_length: u32,
    /// Bytes 20–23 when non-zero (zero in every capture seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_20: Option<u32>,
    /// Bytes 28–31 when non-zero (zero in every capture seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_28: Option<u32>,
}

impl Header {
    /// Parses the header of a DHIP frame (missing bytes read as zero).
    pub fn parse(frame: &Frame) -> Header {
        let h = frame.header();
        let word = |at: usize| le_u32(h, at).unwrap_or(0);
        let nonzero = |v: u32| (v != 0).then_some(v);
        Header {
            session_id: word(8),
            request_id: word(12),
            body_length: word(16),
            total_length: word(24),
            reserved_20: nonzero(word(20)),
            reserved_28: nonzero(word(28)),
        }
    }
}
