//! State and logic of one TCP direction.

use std::collections::btree_map::{BTreeMap, Entry};

use super::{Emit, Stats, MAX_PENDING_BYTES_PER_DIRECTION};
use crate::pcap::link::Segment;
use crate::pcap::{CaptureEvent, StreamInfo, Timestamp};

/// One TCP direction being reassembled.
pub(super) struct Direction {
    pub(super) info: StreamInfo,
    /// Sequence number of stream offset 0.
    base_seq: u32,
    syn_seen: bool,
    /// Whether any payload was seen.
    started: bool,
    /// Stream offset of the next byte to deliver.
    next: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    pub(super) pending_bytes: usize,
    /// Stream offset of the FIN, once seen.
    fin_at: Option<u64>,
    pub(super) ended: bool,
    /// Packet counter value when last active (for eviction).
    pub(super) last_seen: u64,
}

impl Direction {
    pub(super) fn new(info: StreamInfo, seg: &Segment<'_>) -> Self {
        Direction {
            info,
            base_seq: seg.seq.wrapping_add(u32::from(seg.syn)),
            syn_seen: seg.syn,
            started: false,
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            fin_at: None,
            ended: false,
            last_seen: 0,
        }
    }

    /// Whether a SYN with sequence number `seq` opens a new connection on this address pair.
    pub(super) fn is_new_connection(&self, seq: u32) -> bool {
        let duplicate = self.syn_seen && seq.wrapping_add(1) == self.base_seq;
        if self.ended {
            !duplicate
        } else {
            !duplicate && self.started
        }
    }

    /// Stream offset of sequence number `seq` (may be negative: before the stream start).
    fn offset_of(&self, seq: u32) -> i64 {
        let next_seq = self.base_seq.wrapping_add(self.next as u32);
        self.next as i64 + i64::from(seq.wrapping_sub(next_seq) as i32)
    }

    pub(super) fn segment(
        &mut self,
        seg: &Segment<'_>,
        ts: Timestamp,
        stats: &mut Stats,
        emit: &mut Emit<'_>,
    ) {
        let data_seq = seg.seq.wrapping_add(u32::from(seg.syn));
        let len = seg.payload.len() as i64;
        if self.ended {
            let start = self.offset_of(data_seq);
            let old = (self.next as i64).min(start + len) - start;
            stats.retransmitted_bytes += old.clamp(0, len) as u64;
            return;
        }
        if seg.syn && !self.started {
            self.base_seq = data_seq;
            self.syn_seen = true;
        }
        if len > 0 {
            self.started = true;
            self.data(data_seq, seg.payload, ts, stats, emit);
        }
        if seg.fin && self.fin_at.is_none() {
            self.fin_at = Some(self.offset_of(data_seq).saturating_add(len).max(0) as u64);
        }
        if seg.rst {
            self.close(ts, stats, emit);
        } else if self.fin_at.is_some_and(|fin| self.next >= fin) {
            self.end(ts, stats, emit);
        }
    }

    fn data(
        &mut self,
        seq: u32,
        payload: &[u8],
        ts: Timestamp,
        stats: &mut Stats,
        emit: &mut Emit<'_>,
    ) {
        let start = self.offset_of(seq);
        let len = payload.len() as i64;
        let next = self.next as i64;
        if start + len <= next {
            stats.retransmitted_bytes += len as u64;
        } else if start <= next {
            let skip = (next - start) as usize;
            stats.retransmitted_bytes += skip as u64;
            self.deliver(&payload[skip..], ts, emit);
            self.drain(ts, stats, emit);
        } else {
            self.buffer(start as u64, payload.to_vec(), stats);
            while self.pending_bytes > MAX_PENDING_BYTES_PER_DIRECTION {
                self.skip_gap(ts, stats, emit);
            }
        }
    }

    fn deliver(&mut self, data: &[u8], ts: Timestamp, emit: &mut Emit<'_>) {
        if !data.is_empty() {
            emit(CaptureEvent::Data {
                stream: &self.info,
                ts,
                data,
            });
            self.next += data.len() as u64;
        }
    }

    /// Delivers buffered segments that have become contiguous.
    fn drain(&mut self, ts: Timestamp, stats: &mut Stats, emit: &mut Emit<'_>) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let bytes = entry.remove();
            self.pending_bytes -= bytes.len();
            stats.pending_total -= bytes.len();
            let skip = ((self.next - start) as usize).min(bytes.len());
            stats.retransmitted_bytes += skip as u64;
            self.deliver(&bytes[skip..], ts, emit);
        }
    }

    fn buffer(&mut self, start: u64, bytes: Vec<u8>, stats: &mut Stats) {
        let len = bytes.len();
        match self.pending.entry(start) {
            Entry::Vacant(e) => {
                e.insert(bytes);
                self.pending_bytes += len;
                stats.pending_total += len;
            }
            Entry::Occupied(mut e) => {
                let old = e.get().len();
                if len > old {
                    e.insert(bytes);
                    self.pending_bytes += len - old;
                    stats.pending_total += len - old;
                }
                stats.retransmitted_bytes += len.min(old) as u64;
            }
        }
    }

    /// Gives up on the hole before the first buffered segment and continues after it.
    fn skip_gap(&mut self, ts: Timestamp, stats: &mut Stats, emit: &mut Emit<'_>) {
        let Some(&start) = self.pending.keys().next() else {
            return;
        };
        if start > self.next {
            emit(CaptureEvent::Gap {
                stream: &self.info,
                ts,
                missing: start - self.next,
            });
            stats.gaps += 1;
            self.next = start;
        }
        self.drain(ts, stats, emit);
    }

    /// Delivers everything buffered, reporting each hole as a gap.
    pub(super) fn flush(&mut self, ts: Timestamp, stats: &mut Stats, emit: &mut Emit<'_>) {
        while !self.pending.is_empty() {
            self.skip_gap(ts, stats, emit);
        }
    }

    /// Flushes and ends the direction (no-op if already ended).
    pub(super) fn close(&mut self, ts: Timestamp, stats: &mut Stats, emit: &mut Emit<'_>) {
        if !self.ended {
            self.flush(ts, stats, emit);
            self.end(ts, stats, emit);
        }
    }

    fn end(&mut self, ts: Timestamp, stats: &mut Stats, emit: &mut Emit<'_>) {
        stats.pending_total -= self.pending_bytes;
        self.pending.clear();
        self.pending_bytes = 0;
        self.ended = true;
        emit(CaptureEvent::End {
            stream: &self.info,
            ts,
        });
    }
}
