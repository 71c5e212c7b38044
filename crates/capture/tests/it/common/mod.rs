//! Test helpers: a tiny pcap / pcapng writer, TCP packet builders and an event collector.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use alarm_center_capture::pcap::{read_capture, CaptureError, CaptureEvent, Summary, Timestamp};
use etherparse::PacketBuilder;

/// Path of a file in the workspace's `tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

pub(crate) fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Classic pcap writer.
pub(crate) struct PcapWriter {
    buf: Vec<u8>,
    be: bool,
}

impl PcapWriter {
    pub(crate) fn new(linktype: u32, be: bool, nano: bool) -> Self {
        let mut w = PcapWriter {
            buf: Vec::new(),
            be,
        };
        w.u32(if nano { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        w.u16(2);
        w.u16(4);
        w.u32(0);
        w.u32(0);
        w.u32(65535);
        w.u32(linktype);
        w
    }

    /// Adds a record; `frac` is micro- or nanoseconds per the header.
    pub(crate) fn packet(&mut self, secs: u32, frac: u32, data: &[u8]) {
        self.packet_cut(secs, frac, data, data.len());
    }

    /// Adds a record keeping only the first `caplen` bytes (snap length).
    pub(crate) fn packet_cut(&mut self, secs: u32, frac: u32, data: &[u8], caplen: usize) {
        self.u32(secs);
        self.u32(frac);
        self.u32(caplen as u32);
        self.u32(data.len() as u32);
        self.buf.extend_from_slice(&data[..caplen]);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn u16(&mut self, v: u16) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
    }

    fn u32(&mut self, v: u32) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
    }
}

/// pcapng writer (one byte order for the whole file; `section()` starts a new section).
pub(crate) struct PcapngWriter {
    buf: Vec<u8>,
    be: bool,
}

impl PcapngWriter {
    pub(crate) fn new(be: bool) -> Self {
        let mut w = PcapngWriter {
            buf: Vec::new(),
            be,
        };
        w.section();
        w
    }

    pub(crate) fn section(&mut self) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.b32(0x1A2B_3C4D));
        body.extend_from_slice(&self.b16(1));
        body.extend_from_slice(&self.b16(0));
        body.extend_from_slice(&(-1i64).to_le_bytes());
        self.block(0x0A0D_0D0A, &body);
    }

    /// Adds an interface description; options if_tsresol / if_tsoffset when given.
    pub(crate) fn interface(&mut self, linktype: u16, tsresol: Option<u8>, tsoffset: Option<i64>) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.b16(linktype));
        body.extend_from_slice(&self.b16(0));
        body.extend_from_slice(&self.b32(0));
        if let Some(r) = tsresol {
            body.extend_from_slice(&self.b16(9));
            body.extend_from_slice(&self.b16(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(off) = tsoffset {
            body.extend_from_slice(&self.b16(14));
            body.extend_from_slice(&self.b16(8));
            let v = if self.be {
                off.to_be_bytes()
            } else {
                off.to_le_bytes()
            };
            body.extend_from_slice(&v);
        }
        if tsresol.is_some() || tsoffset.is_some() {
            body.extend_from_slice(&[0; 4]); // opt_endofopt
        }
        self.block(1, &body);
    }

    /// Adds an Enhanced Packet Block; `ticks` in the interface's resolution.
    pub(crate) fn epb(&mut self, if_id: u32, ticks: u64, data: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.b32(if_id));
        body.extend_from_slice(&self.b32((ticks >> 32) as u32));
        body.extend_from_slice(&self.b32(ticks as u32));
        body.extend_from_slice(&self.b32(data.len() as u32));
        body.extend_from_slice(&self.b32(data.len() as u32));
        body.extend_from_slice(data);
        pad4(&mut body);
        self.block(6, &body);
    }

    /// Adds a Simple Packet Block (interface 0, no timestamp).
    pub(crate) fn spb(&mut self, data: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.b32(data.len() as u32));
        body.extend_from_slice(data);
        pad4(&mut body);
        self.block(3, &body);
    }

    /// Adds a block of any type with the given body.
    pub(crate) fn block(&mut self, block_type: u32, body: &[u8]) {
        let len = (12 + body.len()) as u32;
        let t = self.b32(block_type);
        let l = self.b32(len);
        self.buf.extend_from_slice(&t);
        self.buf.extend_from_slice(&l);
        self.buf.extend_from_slice(body);
        self.buf.extend_from_slice(&l);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn b16(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn b32(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// A raw IPv4/IPv6 packet carrying one TCP segment; `flags` may contain S, F, R, A.
pub(crate) fn tcp_ip(src: &str, dst: &str, seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    };
    let mut b = ip.tcp(src.port(), dst.port(), seq, 8192);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    if flags.contains('A') {
        b = b.ack(1);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn ether_type(ip: &[u8]) -> [u8; 2] {
    if ip[0] >> 4 == 6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    }
}

/// Wraps a raw IP packet in an Ethernet II header.
pub(crate) fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ether_type(ip));
    f.extend_from_slice(ip);
    f
}

/// Wraps a raw IP packet in Ethernet II + one 802.1Q VLAN tag (VLAN 5).
pub(crate) fn ethernet_vlan(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x05];
    f.extend_from_slice(&ether_type(ip));
    f.extend_from_slice(ip);
    f
}

/// Wraps a raw IP packet in a Linux cooked v1 header.
pub(crate) fn sll(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0x03, 0x04, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
    f.extend_from_slice(&ether_type(ip));
    f.extend_from_slice(ip);
    f
}

/// Wraps a raw IP packet in a Linux cooked v2 header.
pub(crate) fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut f = ether_type(ip).to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
    f.extend_from_slice(ip);
    f
}

/// Wraps a raw IP packet in a BSD NULL (little-endian host) header.
pub(crate) fn null(ip: &[u8]) -> Vec<u8> {
    let af: u32 = if ip[0] >> 4 == 6 { 30 } else { 2 };
    let mut f = af.to_le_bytes().to_vec();
    f.extend_from_slice(ip);
    f
}

/// An owned copy of a [`CaptureEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ev {
    Data {
        id: u32,
        src: SocketAddr,
        dst: SocketAddr,
        ts: Timestamp,
        data: Vec<u8>,
    },
    Gap {
        id: u32,
        missing: u64,
    },
    End {
        id: u32,
    },
}

impl Ev {
    pub(crate) fn id(&self) -> u32 {
        match self {
            Ev::Data { id, .. } | Ev::Gap { id, .. } | Ev::End { id } => *id,
        }
    }
}

/// Runs [`read_capture`] and collects the events.
pub(crate) fn run(bytes: &[u8], port: Option<u16>) -> Result<(Vec<Ev>, Summary), CaptureError> {
    let mut events = Vec::new();
    let summary = read_capture(bytes, port, |ev| {
        events.push(match ev {
            CaptureEvent::Data { stream, ts, data } => Ev::Data {
                id: stream.id,
                src: stream.src,
                dst: stream.dst,
                ts,
                data: data.to_vec(),
            },
            CaptureEvent::Gap {
                stream, missing, ..
            } => Ev::Gap {
                id: stream.id,
                missing,
            },
            CaptureEvent::End { stream, .. } => Ev::End { id: stream.id },
        })
    })?;
    Ok((events, summary))
}

/// All data bytes of stream `id`, in order.
pub(crate) fn bytes_of(events: &[Ev], id: u32) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Data { id: i, data, .. } if *i == id => Some(data.as_slice()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}
