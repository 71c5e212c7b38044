//! Dahua DVRIP: a 32-byte binary header followed by a body.
//!
//! ```text
//! off size  meaning (little-endian)
//!  0   1    command (0x69 alarm upload, 0xF6 JSON, 0xF4 text, 0xA1/0xB1 heartbeat, 0xA0/0xB0 login, …)
//!  1   2    zero
//!  3   1    0x00 in requests, 0x78 in device replies (meaning unknown)
//!  4   4    body length in bytes (u32); frame length = 32 + body length
//!  8  24    command-specific
//! ```

use serde::Serialize;

use crate::frame::{le_u32, Frame};

/// Length of the DVRIP header in bytes.
pub const HEADER_LEN: usize = 32;

/// 0x69: alarm upload (bitmask or `Key:Value` text body).
pub const CMD_ALARM: u8 = 0x69;
/// 0x68: alarm subscription request on the device's own port.
pub const CMD_ALARM_REQUEST: u8 = 0x68;
/// 0xA0: login request.
pub const CMD_LOGIN: u8 = 0xA0;
/// 0xB0: login reply.
pub const CMD_LOGIN_REPLY: u8 = 0xB0;
/// 0xA1: heartbeat (keepAlive).
pub const CMD_HEARTBEAT: u8 = 0xA1;
/// 0xB1: heartbeat reply / state.
pub const CMD_HEARTBEAT_REPLY: u8 = 0xB1;
/// 0xF4: text configuration.
pub const CMD_TEXT: u8 = 0xF4;
/// 0xF6: JSON-RPC body.
pub const CMD_JSON: u8 = 0xF6;

/// Command bytes accepted as the start of a DVRIP frame. Others are junk: a byte table this
/// small keeps resynchronisation after garbage from locking onto random bytes.
pub const KNOWN_COMMANDS: [u8; 10] = [
    CMD_ALARM_REQUEST,
    CMD_ALARM,
    CMD_LOGIN,
    CMD_HEARTBEAT,
    CMD_LOGIN_REPLY,
    CMD_HEARTBEAT_REPLY,
    0xB4,
    CMD_TEXT,
    0xF5,
    CMD_JSON,
];

/// Offset of the alarm type byte in a 0x69 header.
pub const ALARM_TYPE_AT: usize = 12;
/// Offset of the channel group byte in a 0x69 header (mask covers channels group×32 … group×32+31).
pub const CHANNEL_GROUP_AT: usize = 13;
/// Offset of the body format byte in a 0x69 header (0 = binary mask, 1 = `Key:Value` text).
pub const BODY_FORMAT_AT: usize = 17;

/// 0x69 alarm type 120: the scheduled self-report ("timed upload"), not an alarm.
pub const ALARM_TYPE_REPORT: u8 = 120;
/// 0x69 alarm type 6: disk full; the body is a boolean (non-zero = full), not a bitmask.
pub const ALARM_TYPE_DISK_FULL: u8 = 6;

/// True when `cmd` is a command byte we frame as DVRIP.
pub fn is_known_command(cmd: u8) -> bool {
    KNOWN_COMMANDS.contains(&cmd)
}

/// The normalized event code for a 0x69 alarm type byte (REFERENCE.md §3.2); `None` for unknown types
/// and for the self-report (120).
pub fn alarm_code(alarm_type: u8) -> Option<&'static str> {
    Some(match alarm_type {
        1 => "AlarmLocal",
        2 => "VideoMotion",
        3 => "VideoLoss",
        4 => "VideoBlind",
        5 => "AudioMutation",
        6 => "StorageLowSpace",
        7 => "StorageFailure",
        8 => "StorageNotExist",
        9 => "AlarmDecoder",
        10 => "PosTicket",
        11 => "PosRawData",
        150 => "Special",
        _ => return None,
    })
}

/// Decoded DVRIP header fields, as they appear in the `header` object of the JSON output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Byte 3: 0x00 in requests, 0x78 seen in device replies.
    pub byte3: u8,
    /// Bytes 4–7: body length in bytes.
    pub body_length: u32,
    /// 0x69 only: byte 12, the alarm type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_type: Option<u8>,
    /// 0x69 only: byte 13, the channel group (mask bit i = channel index i + 32 × group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_group: Option<u8>,
    /// 0x69 only: byte 17, the body format (0 mask, 1 text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_format_byte: Option<u8>,
    /// 0xF6/0xF4: bytes 8–11, request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u32>,
    /// 0xF6/0xF4: bytes 12–15 (0 in requests, 1 seen in replies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    /// 0xF6/0xF4: bytes 16–19, total body length across fragments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_length: Option<u32>,
    /// 0xF6/0xF4: bytes 24–27, session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u32>,
    /// Hex of the header bytes 8–31 that no field above interprets, when any of them is non-zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
}

impl Header {
    /// Parses the header of a DVRIP frame (missing bytes read as zero).
    pub fn parse(frame: &Frame) -> Header {
        let h = frame.header();
        let byte = |at: usize| h.get(at).copied().unwrap_or(0);
        let word = |at: usize| le_u32(h, at).unwrap_or(0);
        let cmd = byte(0);
        let mut header = Header {
            byte3: byte(3),
            body_length: word(4),
            alarm_type: None,
            channel_group: None,
            body_format_byte: None,
            request_id: None,
            flags: None,
            total_length: None,
            session_id: None,
            other: None,
        };
        // Bytes of 8..32 that the typed fields above cover, as a mask over bytes 8..32 (one byte of
        // mask per header byte, in three little-endian words).
        let covered: [u64; 3] = match cmd {
            CMD_ALARM => {
                header.alarm_type = Some(byte(ALARM_TYPE_AT));
                header.channel_group = Some(byte(CHANNEL_GROUP_AT));
                header.body_format_byte = Some(byte(BODY_FORMAT_AT));
                ALARM_COVERED
            }
            CMD_JSON | CMD_TEXT => {
                header.request_id = Some(word(8));
                header.flags = Some(word(12));
                header.total_length = Some(word(16));
                header.session_id = Some(word(24));
                // bytes 8..20 and 24..28
                [u64::MAX, 0xFFFF_FFFF, 0xFFFF_FFFF]
            }
            _ => [0; 3],
        };
        let uncovered = (0..3).any(|w| {
            let at = 8 + 8 * w;
            let bytes = h
                .get(at..)
                .and_then(|rest| rest.first_chunk::<8>())
                .copied()
                .unwrap_or_else(|| std::array::from_fn(|i| byte(at + i)));
            u64::from_le_bytes(bytes) & !covered[w] != 0
        });
        if uncovered {
            header.other = Some(crate::record::hex(h.get(8..).unwrap_or(&[])));
        }
        header
    }

    /// What [`Header::parse`] reads from the whole header `h` of a 0x69 alarm upload, without the
    /// checks and the choice by command that `parse` makes (the decoding of a mask upload).
    pub(crate) fn alarm(h: &[u8; HEADER_LEN]) -> Header {
        let word = |at: usize| u64::from_le_bytes(std::array::from_fn(|i| h[at + i]));
        let uncovered = (0..3).any(|w| word(8 + 8 * w) & !ALARM_COVERED[w] != 0);
        Header {
            byte3: h[3],
            body_length: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
            alarm_type: Some(h[ALARM_TYPE_AT]),
            channel_group: Some(h[CHANNEL_GROUP_AT]),
            body_format_byte: Some(h[BODY_FORMAT_AT]),
            request_id: None,
            flags: None,
            total_length: None,
            session_id: None,
            other: uncovered.then(|| crate::record::hex(&h[8..])),
        }
    }
}

/// The bytes of 8..32 that the typed fields of a 0x69 header cover (12, 13 and 17), as a mask over bytes
/// 8..32: one byte of mask per header byte, in three little-endian words.
const ALARM_COVERED: [u64; 3] = [0xFFFF_0000_0000, 0xFF00, 0];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    /// `alarm` reads a whole 0x69 header as `parse` does, whichever bytes are set.
    #[test]
    fn alarm_reads_what_parse_reads() {
        for at in 1..HEADER_LEN {
            for value in [0x01, 0x80, 0xFF] {
                let mut bytes = [0u8; HEADER_LEN];
                bytes[0] = CMD_ALARM;
                bytes[at] = value;
                bytes[(at * 7) % HEADER_LEN] |= 0x10;
                let frame = Frame::whole(Protocol::Dvrip, bytes.to_vec(), HEADER_LEN);
                assert_eq!(Header::alarm(&bytes), Header::parse(&frame), "byte {at}");
            }
        }
    }

    /// `other` is set exactly when a byte of 8..32 that no typed field covers is non-zero.
    #[test]
    fn other_is_set_by_the_uncovered_bytes_only() {
        for (cmd, covered) in [
            (CMD_ALARM, vec![12, 13, 17]),
            (CMD_JSON, (8..20).chain(24..28).collect()),
            (CMD_TEXT, (8..20).chain(24..28).collect()),
            (CMD_HEARTBEAT, vec![]),
        ] {
            for at in 0..HEADER_LEN {
                let mut bytes = vec![0u8; HEADER_LEN];
                bytes[0] = cmd;
                bytes[at] = 0x80;
                let frame = Frame::whole(Protocol::Dvrip, bytes.clone(), HEADER_LEN);
                let other = Header::parse(&frame).other;
                let expect = at >= 8 && !covered.contains(&at);
                assert_eq!(other.is_some(), expect, "cmd {cmd:#x}, byte {at}");
                if expect {
                    assert_eq!(other.unwrap(), crate::record::hex(&bytes[8..]));
                }
            }
        }
        // A short header (a hand-made frame) reads its missing bytes as zero.
        let frame = Frame::whole(
            Protocol::Dvrip,
            vec![CMD_ALARM, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            10,
        );
        assert_eq!(Header::parse(&frame).other.as_deref(), Some("0001"));
    }
}
