//! pcap / pcapng capture reading with per-direction TCP reassembly.
//!
//! [`read_capture`] streams a capture file (classic pcap in either byte order with microsecond
//! or nanosecond timestamps, or pcapng with any number of sections and interfaces), decodes
//! Ethernet (with VLAN tags), Linux SLL / SLL2, raw IPv4 / IPv6 and BSD loopback frames,
//! reassembles each TCP direction and reports [`CaptureEvent`]s in capture order.

use std::io::Read;
use std::net::SocketAddr;

use thiserror::Error;

mod file;
pub mod link;
mod reassembly;
mod time;

pub use file::MAX_RECORD_BYTES;
pub use reassembly::{MAX_DIRECTIONS, MAX_PENDING_BYTES_PER_DIRECTION, MAX_PENDING_BYTES_TOTAL};
pub use time::Timestamp;

/// One direction of one TCP connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamInfo {
    /// 1-based number of this direction, in order of first appearance in the capture (after
    /// port filtering). A new SYN on the same address pair after the old one ended gets a
    /// new number.
    pub id: u32,
    /// Sender of the bytes.
    pub src: SocketAddr,
    /// Receiver of the bytes.
    pub dst: SocketAddr,
}

/// Something that happened on one TCP direction, in capture order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureEvent<'a> {
    /// Newly in-order bytes of one TCP direction (after reassembly); never empty.
    Data {
        /// The direction.
        stream: &'a StreamInfo,
        /// Capture time of the packet that completed these bytes.
        ts: Timestamp,
        /// The bytes, in stream order.
        data: &'a [u8],
    },
    /// Bytes of this direction that were never captured; a decoder must flush and restart
    /// after it.
    Gap {
        /// The direction.
        stream: &'a StreamInfo,
        /// Capture time at which the hole was given up on.
        ts: Timestamp,
        /// Number of bytes missing.
        missing: u64,
    },
    /// FIN/RST seen, or end of capture: flush the decoder of this direction. Sent exactly
    /// once per direction; later segments of the direction are ignored.
    End {
        /// The direction.
        stream: &'a StreamInfo,
        /// Capture time of the FIN/RST, or of the last packet of the capture.
        ts: Timestamp,
    },
}

impl<'a> CaptureEvent<'a> {
    /// The direction this event belongs to.
    pub fn stream(&self) -> &'a StreamInfo {
        match *self {
            CaptureEvent::Data { stream, .. }
            | CaptureEvent::Gap { stream, .. }
            | CaptureEvent::End { stream, .. } => stream,
        }
    }

    /// The capture time of this event.
    pub fn ts(&self) -> Timestamp {
        match *self {
            CaptureEvent::Data { ts, .. }
            | CaptureEvent::Gap { ts, .. }
            | CaptureEvent::End { ts, .. } => ts,
        }
    }
}

/// Counters for a whole capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Packet records read (including skipped ones).
    pub packets: u64,
    /// Well-formed TCP segments decoded (before port filtering).
    pub tcp_segments: u64,
    /// Packets that were not TCP over IPv4/IPv6, or were truncated / unparseable.
    pub skipped_packets: u64,
    /// TCP directions seen (after port filtering); see [`StreamInfo::id`].
    pub streams: u32,
    /// Payload bytes received more than once (retransmissions and overlaps), delivered once.
    pub retransmitted_bytes: u64,
    /// Number of [`CaptureEvent::Gap`] events.
    pub gaps: u64,
    /// Reading stopped early: the last record was cut short, or a damaged record header made
    /// the rest of the file unreadable. Everything before it was processed normally.
    pub truncated: bool,
}

/// Why a capture could not be read at all.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The input holds no byte.
    #[error("empty input: not a pcap or pcapng capture")]
    Empty,
    /// The input does not start with a pcap or pcapng magic.
    #[error("not a pcap or pcapng capture (starts with {head})")]
    UnknownFormat {
        /// The first (up to 4) bytes, in hex.
        head: String,
    },
    /// The magic is right but the file header is damaged or cut short.
    #[error("bad capture header: {0}")]
    BadHeader(&'static str),
    /// The reader failed.
    /// (Shown in the message, not chained: an error chain would print it twice.)
    #[error("error reading capture: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for CaptureError {
    fn from(e: std::io::Error) -> Self {
        CaptureError::Io(e)
    }
}

/// Streams the capture read from `reader` and reports each TCP direction's reassembled bytes
/// to `on_event`.
///
/// `port`: `Some(p)` keeps only the directions whose destination port is `p`; `None` keeps
/// both directions of every stream. A direction becomes a stream at its first segment (a SYN
/// sets the initial sequence number; otherwise the first segment seen does).
///
/// Non-TCP, truncated or garbled packets are counted in [`Summary::skipped_packets`]; a
/// truncated or damaged final record ends the reading normally ([`Summary::truncated`]).
/// Every direction still open at the end gets its pending data flushed (with gaps) and an
/// [`CaptureEvent::End`]. Errors only for input that is not a readable capture or an I/O error.
pub fn read_capture<R: Read>(
    reader: R,
    port: Option<u16>,
    mut on_event: impl FnMut(CaptureEvent<'_>),
) -> Result<Summary, CaptureError> {
    let mut records = file::RecordReader::open(reader)?;
    let mut reassembler = reassembly::Reassembler::new(port);
    let mut summary = Summary::default();
    let mut last_ts = Timestamp::default();
    loop {
        match records.next()? {
            file::Next::End => break,
            file::Next::Skipped => {
                summary.packets += 1;
                summary.skipped_packets += 1;
            }
            file::Next::Packet(packet) => {
                summary.packets += 1;
                last_ts = last_ts.max(packet.ts);
                match link::tcp_segment(packet.linktype, packet.data) {
                    Some(seg) => {
                        summary.tcp_segments += 1;
                        reassembler.segment(&seg, packet.ts, &mut on_event);
                    }
                    None => summary.skipped_packets += 1,
                }
            }
        }
    }
    reassembler.finish(last_ts, &mut on_event);
    summary.streams = reassembler.streams();
    summary.retransmitted_bytes = reassembler.stats.retransmitted_bytes;
    summary.gaps = reassembler.stats.gaps;
    summary.truncated = records.truncated;
    Ok(summary)
}
