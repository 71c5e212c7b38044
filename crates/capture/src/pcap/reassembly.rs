//! TCP reassembly: turns segments of each direction into in-order bytes.
//!
//! Sequence numbers are mapped to 64-bit stream offsets relative to the next expected byte,
//! so 32-bit wraparound needs no special case. Out-of-order data waits in a per-direction map
//! until the hole before it is filled; retransmitted and overlapping bytes are delivered once.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::link::Segment;
use super::{CaptureEvent, StreamInfo, Timestamp};

mod direction;

use direction::Direction;

/// Out-of-order bytes buffered for one direction before the reader gives up on the hole in
/// front of them, reports a [`CaptureEvent::Gap`] and continues after it (8 MiB).
pub const MAX_PENDING_BYTES_PER_DIRECTION: usize = 8 * 1024 * 1024;
/// Out-of-order bytes buffered over all directions; past this the direction holding the most
/// is flushed with gaps (64 MiB).
pub const MAX_PENDING_BYTES_TOTAL: usize = 64 * 1024 * 1024;
/// Directions tracked at once; past this, ended directions are forgotten and then the least
/// recently active ones are ended.
pub const MAX_DIRECTIONS: usize = 100_000;

pub(crate) type Emit<'e> = dyn FnMut(CaptureEvent<'_>) + 'e;

/// Counters kept while reassembling.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) retransmitted_bytes: u64,
    pub(crate) gaps: u64,
    pub(crate) pending_total: usize,
}

/// Reassembles all TCP directions of a capture.
pub(crate) struct Reassembler {
    port: Option<u16>,
    dirs: HashMap<(SocketAddr, SocketAddr), Direction>,
    next_id: u32,
    clock: u64,
    pub(crate) stats: Stats,
}

impl Reassembler {
    /// `port`: keep only directions whose destination port is this one.
    pub(crate) fn new(port: Option<u16>) -> Self {
        Reassembler {
            port,
            dirs: HashMap::new(),
            next_id: 1,
            clock: 0,
            stats: Stats::default(),
        }
    }

    /// Number of directions (streams) created so far.
    pub(crate) fn streams(&self) -> u32 {
        self.next_id - 1
    }

    /// Processes one segment captured at `ts`.
    pub(crate) fn segment(&mut self, seg: &Segment<'_>, ts: Timestamp, emit: &mut Emit<'_>) {
        if self.port.is_some_and(|p| seg.dst.port() != p) {
            return;
        }
        self.clock += 1;
        let key = (seg.src, seg.dst);
        let restart = match self.dirs.get(&key) {
            Some(d) => seg.syn && d.is_new_connection(seg.seq),
            None => true,
        };
        if restart {
            if let Some(mut old) = self.dirs.remove(&key) {
                old.close(ts, &mut self.stats, emit);
            }
            self.make_room(ts, emit);
            let info = StreamInfo {
                id: self.next_id,
                src: seg.src,
                dst: seg.dst,
            };
            self.next_id = self.next_id.saturating_add(1);
            self.dirs.insert(key, Direction::new(info, seg));
        }
        if let Some(dir) = self.dirs.get_mut(&key) {
            dir.last_seen = self.clock;
            dir.segment(seg, ts, &mut self.stats, emit);
        }
        if seg.rst {
            // A reset aborts the whole connection: the other direction ends too.
            if let Some(rev) = self.dirs.get_mut(&(seg.dst, seg.src)) {
                rev.close(ts, &mut self.stats, emit);
            }
        }
        while self.stats.pending_total > MAX_PENDING_BYTES_TOTAL {
            let Some(fullest) = self.dirs.values_mut().max_by_key(|d| d.pending_bytes) else {
                break;
            };
            fullest.flush(ts, &mut self.stats, emit);
        }
    }

    /// End of capture: flushes every direction still open, in stream id order.
    pub(crate) fn finish(&mut self, ts: Timestamp, emit: &mut Emit<'_>) {
        let mut open: Vec<_> = self
            .dirs
            .iter()
            .filter(|(_, d)| !d.ended)
            .map(|(k, d)| (d.info.id, *k))
            .collect();
        open.sort_unstable_by_key(|(id, _)| *id);
        for (_, key) in open {
            if let Some(dir) = self.dirs.get_mut(&key) {
                dir.close(ts, &mut self.stats, emit);
            }
        }
    }

    /// Keeps the number of tracked directions under [`MAX_DIRECTIONS`].
    fn make_room(&mut self, ts: Timestamp, emit: &mut Emit<'_>) {
        if self.dirs.len() < MAX_DIRECTIONS {
            return;
        }
        self.dirs.retain(|_, d| !d.ended);
        let target = MAX_DIRECTIONS * 3 / 4;
        if self.dirs.len() <= target {
            return;
        }
        let mut by_age: Vec<_> = self.dirs.iter().map(|(k, d)| (d.last_seen, *k)).collect();
        by_age.sort_unstable_by_key(|(seen, _)| *seen);
        let excess = self.dirs.len() - target;
        for (_, key) in by_age.into_iter().take(excess) {
            if let Some(mut dir) = self.dirs.remove(&key) {
                dir.close(ts, &mut self.stats, emit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Ev {
        Data(u32, Vec<u8>),
        Gap(u32, u64),
        End(u32),
    }

    struct Harness {
        r: Reassembler,
        events: Vec<Ev>,
    }

    const A: &str = "10.0.0.1:40000";
    const B: &str = "10.0.0.2:15002";

    impl Harness {
        fn new(port: Option<u16>) -> Self {
            Harness {
                r: Reassembler::new(port),
                events: Vec::new(),
            }
        }

        fn seg(&mut self, src: &str, dst: &str, seq: u32, flags: &str, payload: &[u8]) {
            let seg = Segment {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                seq,
                syn: flags.contains('S'),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
                payload,
            };
            let events = &mut self.events;
            self.r.segment(&seg, Timestamp::default(), &mut |ev| {
                events.push(convert(ev))
            });
        }

        fn finish(mut self) -> (Vec<Ev>, Stats) {
            let events = &mut self.events;
            self.r
                .finish(Timestamp::default(), &mut |ev| events.push(convert(ev)));
            (self.events, self.r.stats)
        }
    }

    fn convert(ev: CaptureEvent<'_>) -> Ev {
        match ev {
            CaptureEvent::Data { stream, data, .. } => Ev::Data(stream.id, data.to_vec()),
            CaptureEvent::Gap {
                stream, missing, ..
            } => Ev::Gap(stream.id, missing),
            CaptureEvent::End { stream, .. } => Ev::End(stream.id),
        }
    }

    fn d(id: u32, s: &[u8]) -> Ev {
        Ev::Data(id, s.to_vec())
    }

    #[test]
    fn in_order_with_syn_and_fin() {
        let mut h = Harness::new(None);
        h.seg(A, B, 100, "S", b"");
        h.seg(A, B, 101, "", b"abc");
        h.seg(A, B, 104, "F", b"de");
        h.seg(A, B, 106, "", b"");
        let (ev, st) = h.finish();
        assert_eq!(ev, [d(1, b"abc"), d(1, b"de"), Ev::End(1)]);
        assert_eq!(
            (st.retransmitted_bytes, st.gaps, st.pending_total),
            (0, 0, 0)
        );
    }

    #[test]
    fn out_of_order_overlap_and_retransmission() {
        let mut h = Harness::new(None);
        h.seg(A, B, 0, "S", b"");
        h.seg(A, B, 7, "", b"hij"); // buffered
        h.seg(A, B, 4, "", b"def"); // buffered
        h.seg(A, B, 4, "", b"de"); // duplicate of buffered, shorter
        h.seg(A, B, 1, "", b"abcd"); // fills, overlaps "d" of the buffered segment
        h.seg(A, B, 1, "", b"abc"); // pure retransmission
        h.seg(A, B, 9, "", b"jkl"); // overlaps one byte
        let (ev, st) = h.finish();
        assert_eq!(
            ev,
            [
                d(1, b"abcd"),
                d(1, b"ef"),
                d(1, b"hij"),
                d(1, b"kl"),
                Ev::End(1)
            ]
        );
        assert_eq!(st.retransmitted_bytes, 2 + 1 + 3 + 1);
    }

    #[test]
    fn wraparound() {
        let mut h = Harness::new(None);
        h.seg(A, B, u32::MAX - 1, "S", b"");
        h.seg(A, B, 2, "", b"yz"); // after the wrap, out of order
        h.seg(A, B, u32::MAX, "", b"wx"); // covers MAX, 0
        h.seg(A, B, 1, "", b"X"); // the byte at seq 1
        let (ev, _) = h.finish();
        assert_eq!(ev, [d(1, b"wx"), d(1, b"X"), d(1, b"yz"), Ev::End(1)]);
    }

    #[test]
    fn hole_becomes_gap_at_end_and_at_limit() {
        let mut h = Harness::new(None);
        h.seg(A, B, 10, "", b"ab");
        h.seg(A, B, 20, "F", b"cd");
        let (ev, st) = h.finish();
        assert_eq!(ev, [d(1, b"ab"), Ev::Gap(1, 8), d(1, b"cd"), Ev::End(1)]);
        assert_eq!(st.gaps, 1);

        let mut h = Harness::new(None);
        h.seg(A, B, 0, "", b"a");
        let chunk = vec![7u8; 1 << 20];
        for i in 0..9u32 {
            h.seg(A, B, 100 + i * (1 << 20), "", &chunk);
        }
        let (ev, st) = h.finish();
        assert_eq!(ev[1], Ev::Gap(1, 99));
        assert_eq!(ev.len(), 1 + 1 + 9 + 1);
        assert_eq!((st.gaps, st.pending_total), (1, 0));
    }

    #[test]
    fn rst_ends_both_directions_and_port_filter() {
        let mut h = Harness::new(None);
        h.seg(A, B, 0, "", b"a");
        h.seg(B, A, 50, "", b"b");
        h.seg(A, B, 5, "", b"late"); // buffered behind a hole
        h.seg(B, A, 51, "R", b"");
        let (ev, _) = h.finish();
        assert_eq!(
            ev,
            [
                d(1, b"a"),
                d(2, b"b"),
                Ev::End(2),
                Ev::Gap(1, 4),
                d(1, b"late"),
                Ev::End(1)
            ]
        );

        let mut h = Harness::new(Some(15002));
        h.seg(A, B, 0, "", b"a");
        h.seg(B, A, 50, "", b"b");
        let (ev, _) = h.finish();
        assert_eq!(ev, [d(1, b"a"), Ev::End(1)]);
    }

    #[test]
    fn new_syn_after_close_starts_new_stream() {
        let mut h = Harness::new(None);
        h.seg(A, B, 0, "S", b"");
        h.seg(A, B, 0, "S", b""); // SYN retransmission
        h.seg(A, B, 1, "F", b"one");
        h.seg(A, B, 1, "", b"one"); // after End: retransmission
        h.seg(A, B, 5000, "S", b"");
        h.seg(A, B, 5001, "", b"two");
        let (ev, st) = h.finish();
        assert_eq!(ev, [d(1, b"one"), Ev::End(1), d(2, b"two"), Ev::End(2)]);
        assert_eq!(st.retransmitted_bytes, 3);
    }
}
