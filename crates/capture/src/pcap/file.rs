//! Record-level reading of pcap and pcapng files from any [`Read`].
//!
//! Each record is read whole into one reusable buffer (at most [`MAX_RECORD_BYTES`]) and then
//! handed to `pcap-parser`'s block parsers, so a short read from a pipe, a truncated last
//! record or a garbled length never panics and never allocates without limit.

use std::io::{self, BufReader, Read};

use pcap_parser::pcapng::{
    parse_enhancedpacketblock_be, parse_enhancedpacketblock_le, parse_interfacedescriptionblock_be,
    parse_interfacedescriptionblock_le, parse_simplepacketblock_be, parse_simplepacketblock_le,
    OptionCode,
};

use super::{CaptureError, Timestamp};
use crate::{PCAPNG_MAGIC, PCAP_MAGICS};

/// Largest record (pcap packet record or pcapng block) accepted, in bytes (16 MiB). A larger
/// length field is taken as damage and ends the reading.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

const SHB_TYPE: u32 = 0x0A0D_0D0A;
const IDB_TYPE: u32 = 1;
const OPB_TYPE: u32 = 2;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
const BOM: u32 = 0x1A2B_3C4D;

/// One packet of the capture.
pub(crate) struct Packet<'a> {
    /// LINKTYPE_* value of the interface it was captured on.
    pub(crate) linktype: u32,
    pub(crate) ts: Timestamp,
    /// Captured bytes (possibly cut by the snap length).
    pub(crate) data: &'a [u8],
}

/// What [`RecordReader::next`] found.
pub(crate) enum Next<'a> {
    Packet(Packet<'a>),
    /// A packet record that cannot be used (damaged, truncated, unknown interface).
    Skipped,
    /// No more records.
    End,
}

#[derive(Clone, Copy)]
struct Interface {
    /// LINKTYPE_*, or `u32::MAX` for an interface whose description could not be parsed.
    linktype: u32,
    /// Timestamp ticks per second.
    per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_secs: i64,
    /// Snap length (0 = unlimited).
    snaplen: u32,
}

enum Format {
    Pcap {
        big_endian: bool,
        per_sec: u64,
        linktype: u32,
        /// 16, or 24 for the "modified" (Kuznetzov) format.
        record_header: usize,
    },
    Pcapng {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// Streams the records of one capture file.
pub(crate) struct RecordReader<R> {
    reader: BufReader<R>,
    format: Format,
    buf: Vec<u8>,
    /// Set when reading stopped inside a record or at a damaged record header.
    pub(crate) truncated: bool,
    done: bool,
    last_ts: Timestamp,
}

impl<R: Read> RecordReader<R> {
    /// Reads and checks the file header.
    pub(crate) fn open(reader: R) -> Result<Self, CaptureError> {
        let mut r = RecordReader {
            reader: BufReader::with_capacity(64 * 1024, reader),
            format: Format::Pcap {
                big_endian: false,
                per_sec: 1_000_000,
                linktype: 1,
                record_header: 16,
            },
            buf: Vec::with_capacity(64 * 1024),
            truncated: false,
            done: false,
            last_ts: Timestamp::default(),
        };
        let n = r.fill(0, 4)?;
        if n == 0 {
            return Err(CaptureError::Empty);
        }
        let head = r.buf.first_chunk::<4>().copied().unwrap_or_default();
        if n < 4 || !(PCAP_MAGICS.contains(&head) || head == PCAPNG_MAGIC || head == MODIFIED) {
            return Err(CaptureError::UnknownFormat {
                head: r.buf.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
        if head == PCAPNG_MAGIC {
            r.open_pcapng()?;
        } else {
            r.open_pcap()?;
        }
        Ok(r)
    }

    fn open_pcap(&mut self) -> Result<(), CaptureError> {
        if self.fill(4, 20)? < 20 {
            return Err(CaptureError::BadHeader("pcap file header is truncated"));
        }
        let head = self.buf.first_chunk::<4>().copied().unwrap_or_default();
        let big_endian = head[0] == 0xa1;
        let nanos = head == PCAP_MAGICS[2] || head == PCAP_MAGICS[3];
        self.format = Format::Pcap {
            big_endian,
            per_sec: if nanos { 1_000_000_000 } else { 1_000_000 },
            linktype: u32_at(&self.buf, 20, big_endian),
            record_header: if head == MODIFIED { 24 } else { 16 },
        };
        Ok(())
    }

    fn open_pcapng(&mut self) -> Result<(), CaptureError> {
        if self.fill(4, 8)? < 8 {
            return Err(CaptureError::BadHeader(
                "pcapng section header block is truncated",
            ));
        }
        let big_endian = match u32_at(&self.buf, 8, false) {
            BOM => false,
            x if x.swap_bytes() == BOM => true,
            _ => {
                return Err(CaptureError::BadHeader(
                    "pcapng byte-order magic not recognised",
                ))
            }
        };
        let len = u32_at(&self.buf, 4, big_endian) as usize;
        if len < 28 || !len.is_multiple_of(4) || len > MAX_RECORD_BYTES {
            return Err(CaptureError::BadHeader(
                "pcapng section header block has an invalid length",
            ));
        }
        if self.fill(12, len - 12)? < len - 12 {
            return Err(CaptureError::BadHeader(
                "pcapng section header block is truncated",
            ));
        }
        self.format = Format::Pcapng {
            big_endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    /// Reads the next packet record.
    pub(crate) fn next(&mut self) -> io::Result<Next<'_>> {
        if self.done {
            return Ok(Next::End);
        }
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::Pcapng { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(&mut self) -> io::Result<Next<'_>> {
        let Format::Pcap {
            big_endian,
            per_sec,
            linktype,
            record_header,
        } = self.format
        else {
            return Ok(Next::End);
        };
        let got = self.fill(0, record_header)?;
        if got < record_header {
            return Ok(self.stop(got > 0));
        }
        let secs = u32_at(&self.buf, 0, big_endian);
        let frac = u32_at(&self.buf, 4, big_endian);
        let caplen = u32_at(&self.buf, 8, big_endian) as usize;
        if caplen > MAX_RECORD_BYTES {
            return Ok(self.stop(true));
        }
        if self.fill(0, caplen)? < caplen {
            return Ok(self.stop(true));
        }
        let ts = Timestamp::from_fraction(i64::from(secs), u64::from(frac), per_sec);
        self.last_ts = ts;
        Ok(Next::Packet(Packet {
            linktype,
            ts,
            data: &self.buf,
        }))
    }

    fn next_pcapng(&mut self) -> io::Result<Next<'_>> {
        loop {
            let Format::Pcapng { big_endian, .. } = self.format else {
                return Ok(Next::End);
            };
            let got = self.fill(0, 12)?;
            if got < 12 {
                return Ok(self.stop(got > 0));
            }
            let le_type = u32_at(&self.buf, 0, false);
            let big_endian = if le_type == SHB_TYPE {
                match u32_at(&self.buf, 8, false) {
                    BOM => false,
                    x if x.swap_bytes() == BOM => true,
                    _ => return Ok(self.stop(true)),
                }
            } else {
                big_endian
            };
            let block_type = u32_at(&self.buf, 0, big_endian);
            let len = u32_at(&self.buf, 4, big_endian) as usize;
            let is_packet = matches!(block_type, OPB_TYPE | SPB_TYPE | EPB_TYPE);
            if len < 12
                || !len.is_multiple_of(4)
                || len > MAX_RECORD_BYTES
                || self.fill(12, len - 12)? < len - 12
            {
                return Ok(self.stop(true).or_skipped(is_packet));
            }
            match block_type {
                SHB_TYPE => {
                    self.format = Format::Pcapng {
                        big_endian,
                        interfaces: Vec::new(),
                    };
                }
                IDB_TYPE => {
                    let iface = parse_interface(&self.buf, big_endian);
                    if let Format::Pcapng { interfaces, .. } = &mut self.format {
                        // Bounded: one entry per (at least 20-byte) block actually read.
                        interfaces.push(iface);
                    }
                }
                EPB_TYPE | SPB_TYPE => return Ok(self.packet_block(block_type, big_endian)),
                OPB_TYPE => return Ok(Next::Skipped),
                _ => {}
            }
        }
    }

    fn packet_block(&mut self, block_type: u32, big_endian: bool) -> Next<'_> {
        let Format::Pcapng { interfaces, .. } = &self.format else {
            return Next::Skipped;
        };
        let (if_id, ts_ticks, data) = if block_type == EPB_TYPE {
            let parsed = if big_endian {
                parse_enhancedpacketblock_be(&self.buf)
            } else {
                parse_enhancedpacketblock_le(&self.buf)
            };
            let Ok((_, epb)) = parsed else {
                return Next::Skipped;
            };
            let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
            let data = epb.data;
            (epb.if_id as usize, Some(ticks), cut(data, epb.caplen))
        } else {
            let parsed = if big_endian {
                parse_simplepacketblock_be(&self.buf)
            } else {
                parse_simplepacketblock_le(&self.buf)
            };
            let Ok((_, spb)) = parsed else {
                return Next::Skipped;
            };
            let data = spb.data;
            (0, None, cut(data, spb.origlen))
        };
        let Some(iface) = interfaces.get(if_id).copied() else {
            return Next::Skipped;
        };
        if iface.linktype == u32::MAX {
            return Next::Skipped;
        }
        let ts = match ts_ticks {
            Some(ticks) => Timestamp::from_ticks(ticks, iface.per_sec).add_secs(iface.offset_secs),
            None => self.last_ts,
        };
        self.last_ts = ts;
        let data = match iface.snaplen as usize {
            0 => data,
            snap => &data[..data.len().min(snap)],
        };
        Next::Packet(Packet {
            linktype: iface.linktype,
            ts,
            data,
        })
    }

    /// Ends the reading; `damaged` marks that it stopped inside or at a bad record.
    fn stop(&mut self, damaged: bool) -> Next<'static> {
        self.done = true;
        self.truncated |= damaged;
        if damaged {
            Next::Skipped
        } else {
            Next::End
        }
    }

    /// Reads up to `n` bytes into `buf[at..]` (the buffer is cut to `at` first); returns how
    /// many were read (fewer only at end of input).
    fn fill(&mut self, at: usize, n: usize) -> io::Result<usize> {
        self.buf.truncate(at);
        let n = (&mut self.reader)
            .take(n as u64)
            .read_to_end(&mut self.buf)?;
        Ok(n)
    }
}

/// Magic of the "modified" pcap format (little-endian only).
const MODIFIED: [u8; 4] = [0x34, 0xcd, 0xb2, 0xa1];

impl Next<'_> {
    /// A damaged block is only a skipped packet if it was a packet block.
    fn or_skipped(self, is_packet: bool) -> Self {
        match self {
            Next::Skipped if !is_packet => Next::End,
            other => other,
        }
    }
}

fn parse_interface(block: &[u8], big_endian: bool) -> Interface {
    let parsed = if big_endian {
        parse_interfacedescriptionblock_be(block)
    } else {
        parse_interfacedescriptionblock_le(block)
    };
    let Ok((_, idb)) = parsed else {
        return Interface {
            linktype: u32::MAX,
            per_sec: 1_000_000,
            offset_secs: 0,
            snaplen: 0,
        };
    };
    let offset_secs = idb
        .options
        .iter()
        .find(|o| o.code == OptionCode::IfTsoffset)
        .and_then(|o| o.value().first_chunk::<8>().copied())
        .map_or(0, |b| {
            if big_endian {
                i64::from_be_bytes(b)
            } else {
                i64::from_le_bytes(b)
            }
        });
    Interface {
        linktype: u32::from(idb.linktype.0 as u16),
        per_sec: ticks_per_sec(idb.if_tsresol),
        offset_secs,
        snaplen: idb.snaplen,
    }
}

/// Ticks per second for an `if_tsresol` value: bit 7 clear = 10^n, set = 2^n; an
/// unrepresentable value falls back to microseconds.
fn ticks_per_sec(tsresol: u8) -> u64 {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n).unwrap_or(1_000_000)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64).unwrap_or(1_000_000)
    }
}

/// `data` without the padding past `len` bytes.
fn cut(data: &[u8], len: u32) -> &[u8] {
    &data[..data.len().min(len as usize)]
}

fn u32_at(buf: &[u8], at: usize, big_endian: bool) -> u32 {
    let b = buf
        .get(at..at + 4)
        .and_then(|s| s.first_chunk::<4>())
        .copied()
        .unwrap_or_default();
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol() {
        assert_eq!(ticks_per_sec(6), 1_000_000);
        assert_eq!(ticks_per_sec(9), 1_000_000_000);
        assert_eq!(ticks_per_sec(0), 1);
        assert_eq!(ticks_per_sec(19), 10_000_000_000_000_000_000);
        assert_eq!(ticks_per_sec(20), 1_000_000);
        assert_eq!(ticks_per_sec(0x80 | 10), 1024);
        assert_eq!(ticks_per_sec(0x80 | 63), 1 << 63);
        assert_eq!(ticks_per_sec(0xff), 1_000_000);
    }

    #[test]
    fn open_errors() {
        let err = |bytes: &[u8]| RecordReader::open(bytes).err().unwrap().to_string();
        assert!(err(b"").contains("empty"));
        assert!(err(b"hello world").contains("68656c6c"));
        assert!(err(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).contains("truncated"));
        assert!(err(&[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4]).contains("byte-order"));
        let mut shb = vec![0x0a, 0x0d, 0x0d, 0x0a, 8, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a];
        assert!(err(&shb).contains("invalid length"));
        shb[4] = 28;
        assert!(err(&shb).contains("truncated"));
    }
}
