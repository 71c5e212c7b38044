//! Readers for captured Alarm Center device traffic.
//!
//! * [`sniff`] guesses what an input file is ([`InputKind`]).
//! * [`hex::parse_hex`] reads hex dumps (`xxd`, `hexdump -C`, Wireshark, plain hex) into byte
//!   streams.
//! * [`pcap::read_capture`] reads pcap / pcapng captures and reassembles every TCP direction
//!   into in-order bytes, reported as [`pcap::CaptureEvent`]s.
//!
//! Nothing here does I/O beyond the [`std::io::Read`] it is given, uses a clock, or panics on
//! malformed input.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hex;
pub mod pcap;

pub use hex::{parse_hex, HexError, HexStream};
pub use pcap::{
    read_capture, CaptureError, CaptureEvent, StreamInfo, Summary, Timestamp,
    MAX_PENDING_BYTES_PER_DIRECTION,
};

/// What an input file looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// Classic libpcap capture (any byte order, microsecond or nanosecond timestamps).
    Pcap,
    /// pcapng capture.
    Pcapng,
    /// Hex dump text that [`parse_hex`] accepts.
    Hex,
    /// Anything else: raw bytes as sent on the wire.
    Binary,
}

/// File magics (first four bytes, in file order) of classic pcap: big- and little-endian,
/// microsecond and nanosecond resolution.
pub const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x4d, 0x3c, 0xb2, 0xa1],
];

/// First four bytes of a pcapng file (Section Header Block type; the same in both byte orders).
pub const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Guesses the kind of `bytes`: a pcap magic gives [`InputKind::Pcap`], the pcapng block type
/// gives [`InputKind::Pcapng`], UTF-8 text that [`parse_hex`] accepts (at least one data byte)
/// gives [`InputKind::Hex`], anything else [`InputKind::Binary`].
pub fn sniff(bytes: &[u8]) -> InputKind {
    if let Some(head) = bytes.first_chunk::<4>() {
        if PCAP_MAGICS.contains(head) {
            return InputKind::Pcap;
        }
        if *head == PCAPNG_MAGIC {
            return InputKind::Pcapng;
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if parse_hex(text).is_ok() => InputKind::Hex,
        _ => InputKind::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_kinds() {
        for magic in PCAP_MAGICS {
            assert_eq!(sniff(&[&magic[..], &[0; 20]].concat()), InputKind::Pcap);
        }
        assert_eq!(sniff(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0]), InputKind::Pcapng);
        assert_eq!(sniff(b"69 00 00 00\n"), InputKind::Hex);
        assert_eq!(sniff(b"# comment\n00000000  69 00  |i.|\n"), InputKind::Hex);
        assert_eq!(sniff(b""), InputKind::Binary);
        assert_eq!(sniff(b"# only a comment\n"), InputKind::Binary);
        assert_eq!(sniff(b"hello"), InputKind::Binary);
        assert_eq!(sniff(&[0x69, 0, 0, 0, 4, 0, 0, 0]), InputKind::Binary);
        assert_eq!(sniff(&[0xff, 0xfe, 0x41]), InputKind::Binary);
    }
}
