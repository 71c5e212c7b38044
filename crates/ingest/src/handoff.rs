//! Spreading connections over the connection threads (decision D64). One thread accepts, the others
//! only while it is behind (D73); when every thread raced to accept, the race was uneven (100 devices
//! connecting at once landed 65/35, 60/40 and 31/69 on two threads). The thread that accepts decides,
//! under the accept lock, which thread serves the connection: itself, unless it has clearly more open
//! connections than the thread with the fewest, which then gets the socket through a channel and
//! registers it in its own epoll.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use crate::arrival::Ticket;
use crate::slots::Slot;
use crate::Stats;

/// A connection accepted and numbered, before its task starts: what serving it needs besides the socket.
pub(crate) struct Incoming {
    pub(crate) peer: SocketAddr,
    /// Its place under the connection limits, given back when the connection ends.
    pub(crate) slot: Slot,
    pub(crate) id: i64,
    /// Its place in its address's arrival line (D33).
    pub(crate) arrival: Option<Ticket>,
    /// Counts it on the thread that serves it.
    pub(crate) on_thread: OnThread,
}

/// A connection on its way to the thread that will serve it. The socket is out of every epoll
/// (`into_std`) until that thread registers it; dropped on the way, it closes like a refused one.
pub(crate) struct Handoff {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) incoming: Incoming,
}

/// The senders to each connection thread's hand-off channel, set when the threads start. Unbounded:
/// what is in them was accepted under the connection limits, which bound it.
#[derive(Default)]
pub(crate) struct Handoffs(OnceLock<Box<[mpsc::UnboundedSender<Box<Handoff>>]>>);

impl Handoffs {
    /// Makes one channel per thread; returns the receivers, in thread order.
    pub(crate) fn open(&self, threads: usize) -> Vec<mpsc::UnboundedReceiver<Box<Handoff>>> {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
        let _ = self.0.set(senders.into());
        receivers
    }

    /// Whether thread `thread` takes hand-offs: started, and neither stopping nor ended.
    pub(crate) fn taking(&self, thread: usize) -> bool {
        let sender = self.0.get().and_then(|senders| senders.get(thread));
        sender.is_some_and(|sender| !sender.is_closed())
    }

    /// Sends `handoff` to thread `thread`; gives it back when that thread no longer takes any (it is
    /// stopping, or it ended).
    pub(crate) fn send(&self, thread: usize, handoff: Box<Handoff>) -> Result<(), Box<Handoff>> {
        match self.0.get().and_then(|senders| senders.get(thread)) {
            Some(sender) => sender.send(handoff).map_err(|e| e.0),
            None => Err(handoff),
        }
    }
}

/// Connections a thread may have beyond the thread with the fewest before it hands new ones over:
/// 4, plus 1/16 of its own. A small imbalance costs nothing worth a hand-off (two `epoll_ctl` calls
/// and a wake-up of the other thread); with many connections the threads end within about 6 % of
/// each other.
fn slack(open: u64) -> u64 {
    4 + open / 16
}

/// The thread that should serve a connection `thread` accepted: `thread` itself, or the thread with
/// the fewest open connections among those `taking` hand-offs when `thread` has more than that plus
/// [`slack`]. `counts` are the threads' open connections (`Stats::connections_by_thread`); called
/// under the accept lock, so every decision sees the ones before it. A thread that ended (its gauge
/// fell to 0) or is stopping takes none: it would attract every decision.
pub(crate) fn target(counts: &[AtomicU64], thread: usize, taking: impl Fn(usize) -> bool) -> usize {
    let Some(mine) = counts.get(thread).map(|n| n.load(Ordering::Relaxed)) else {
        return thread;
    };
    let fewest = counts
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .enumerate()
        .filter(|&(i, _)| i != thread && taking(i))
        .min_by_key(|&(_, n)| n);
    match fewest {
        Some((least, n)) if mine > n + slack(mine) => least,
        _ => thread,
    }
}

/// Counts a connection on its thread's gauge while it lives.
pub(crate) struct OnThread {
    stats: Arc<Stats>,
    thread: usize,
}

impl OnThread {
    pub(crate) fn new(stats: Arc<Stats>, thread: usize) -> OnThread {
        if let Some(n) = stats
            .connections_by_thread
            .get()
            .and_then(|t| t.get(thread))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        OnThread { stats, thread }
    }

    /// The thread it is counted on.
    pub(crate) fn thread(&self) -> usize {
        self.thread
    }
}

impl Drop for OnThread {
    fn drop(&mut self) {
        let by_thread = self.stats.connections_by_thread.get();
        if let Some(n) = by_thread.and_then(|t| t.get(self.thread)) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: usize) -> bool {
        true
    }

    fn counts(open: &[u64]) -> Vec<AtomicU64> {
        open.iter().map(|&n| AtomicU64::new(n)).collect()
    }

    #[test]
    fn a_thread_keeps_what_it_accepts_unless_it_has_clearly_more_than_another() {
        // Within the slack (4 + 1/16 of its own): kept.
        assert_eq!(target(&counts(&[5, 1]), 0, all), 0);
        assert_eq!(target(&counts(&[0, 0]), 1, all), 1);
        assert_eq!(target(&counts(&[3, 9]), 0, all), 0);
        // Beyond it: to the thread with the fewest.
        assert_eq!(target(&counts(&[6, 1]), 0, all), 1);
        assert_eq!(target(&counts(&[60, 40, 12, 30]), 0, all), 2);
        assert_eq!(target(&counts(&[1_000, 900]), 0, all), 1);
        assert_eq!(target(&counts(&[1_000, 940]), 0, all), 0);
        // No gauges (the threads have not started): kept.
        assert_eq!(target(&[], 0, all), 0);
        // A thread that takes no hand-offs (ended, stopping) gets none, however few it has.
        let no_1 = |i| i != 1;
        assert_eq!(target(&counts(&[60, 0, 12, 30]), 0, no_1), 2);
        assert_eq!(target(&counts(&[60, 0]), 0, no_1), 0);
    }

    #[test]
    fn accepting_in_turn_ends_within_the_slack() {
        // One thread wins every race: the others still end up close to it.
        let open = counts(&[0, 0, 0]);
        for _ in 0..3_000 {
            let to = target(&open, 0, all);
            open[to].fetch_add(1, Ordering::Relaxed);
        }
        let n: Vec<u64> = open.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        let (max, min) = (*n.iter().max().unwrap(), *n.iter().min().unwrap());
        assert!(max - min <= slack(max) + 1, "{n:?}");
    }
}
