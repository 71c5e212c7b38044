//! Arrival order across connections from one address (issue 9, item 5; decision D33).
//!
//! XM cameras open one connection per alarm, so an alarm's start and its stop arrive on two connections
//! a millisecond apart and two connection tasks race to decide them. The accept loop hands out
//! connections in the order the kernel completed them; every connection takes a [`Ticket`] there, and
//! its first frame waits until each earlier connection from the same address has handed over its own
//! first frame, closed, or stayed silent for `server.arrival-order-window` since it was accepted. After
//! its first frame a connection's frames are in order by themselves (one task reads them in turn), and
//! one device's frames are decided under its order lock.
//!
//! A waiter waits on its nearest earlier pending connection only (one wake-up per hand-over, not one
//! per waiter), and no longer than that connection's accept time plus the window: a silent or slow
//! connection delays the others from its address by at most the window, and nobody else.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A connection accepted and not yet past its first frame.
struct Pending {
    accepted: Instant,
    /// Woken when this connection hands over its first frame or closes.
    done: Arc<Notify>,
}

/// Connections whose first frame is not yet handed over, per source address, by connection id (ids
/// grow in accept order).
pub(crate) struct Arrivals {
    lines: Mutex<HashMap<IpAddr, BTreeMap<i64, Pending>>>,
    window: Duration,
}

/// One connection's place in its address's line; leaving the line (drop) lets later ones through.
pub(crate) struct Ticket {
    arrivals: Arc<Arrivals>,
    ip: IpAddr,
    id: i64,
}

impl Arrivals {
    pub(crate) fn new(window: Duration) -> Arc<Arrivals> {
        Arc::new(Arrivals {
            lines: Mutex::default(),
            window,
        })
    }

    /// Puts connection `id`, accepted now from `ip`, in its address's line. `None` when ordering is off
    /// (a zero window).
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr, id: i64) -> Option<Ticket> {
        if self.window.is_zero() {
            return None;
        }
        let pending = Pending {
            accepted: Instant::now(),
            done: Arc::new(Notify::new()),
        };
        self.lock().entry(ip).or_default().insert(id, pending);
        Some(Ticket {
            arrivals: self.clone(),
            ip,
            id,
        })
    }

    /// Connections in all lines (for tests and metrics).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().values().map(BTreeMap::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, BTreeMap<i64, Pending>>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ticket {
    /// Waits for this connection's turn: returns when no earlier connection from the same address is
    /// still before its first frame within the window.
    pub(crate) async fn wait_turn(&self) {
        let window = self.arrivals.window;
        loop {
            let (deadline, done) = {
                let lines = self.arrivals.lock();
                let Some(earlier) = lines
                    .get(&self.ip)
                    .and_then(|line| line.range(..self.id).next_back())
                    .map(|(_, pending)| pending)
                else {
                    return;
                };
                // Accept times grow with ids: when the nearest earlier connection is past its window,
                // all earlier ones are.
                let deadline = earlier.accepted + window;
                if deadline <= Instant::now() {
                    return;
                }
                (deadline, earlier.done.clone())
            };
            // A hand-over between the lock's release and this wait is not missed: `notify_one`
            // stores a permit when nobody waits yet, which this `notified()` takes at once.
            let _ = tokio::time::timeout_at(deadline, done.notified()).await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut lines = self.arrivals.lock();
        if let Some(line) = lines.get_mut(&self.ip) {
            if let Some(pending) = line.remove(&self.id) {
                // At most one connection waits on this one (its nearest later neighbour); a permit is
                // kept if it is between its check and its wait.
                pending.done.notify_one();
            }
            if line.is_empty() {
                lines.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test(start_paused = true)]
    async fn the_first_connection_goes_at_once() {
        let arrivals = Arrivals::new(Duration::from_millis(250));
        let first = arrivals.enter(IP, 1).unwrap();
        let started = Instant::now();
        first.wait_turn().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_connection_waits_for_the_earlier_first_frame() {
        let arrivals = Arrivals::new(Duration::from_millis(250));
        let first = arrivals.enter(IP, 1).unwrap();
        let second = arrivals.enter(IP, 2).unwrap();
        let started = Instant::now();
        let waiting = tokio::spawn(async move {
            second.wait_turn().await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(40)).await;
        drop(first);
        let went = waiting.await.unwrap();
        assert_eq!(went - started, Duration::from_millis(40));
        assert_eq!(arrivals.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_earlier_connection_delays_by_the_window_at_most() {
        let arrivals = Arrivals::new(Duration::from_millis(250));
        let _silent = arrivals.enter(IP, 1).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = arrivals.enter(IP, 2).unwrap();
        let started = Instant::now();
        second.wait_turn().await;
        // 250 ms after the silent one's accept, 150 ms after this one's.
        assert_eq!(started.elapsed(), Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn other_addresses_and_later_connections_do_not_delay() {
        let arrivals = Arrivals::new(Duration::from_millis(250));
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
        let _elsewhere = arrivals.enter(other, 1).unwrap();
        let mine = arrivals.enter(IP, 2).unwrap();
        let _later = arrivals.enter(IP, 3).unwrap();
        let started = Instant::now();
        mine.wait_turn().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_goes_through_in_accept_order() {
        let arrivals = Arrivals::new(Duration::from_secs(10));
        let order = Arc::new(Mutex::new(Vec::new()));
        let tickets: Vec<Ticket> = (1..=20).map(|id| arrivals.enter(IP, id).unwrap()).collect();
        let mut tasks = Vec::new();
        // Started last-first: each one still goes after all earlier ones.
        for (n, ticket) in tickets.into_iter().enumerate().rev() {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                ticket.wait_turn().await;
                order.lock().unwrap().push(n);
                drop(ticket);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
        assert_eq!(arrivals.waiting(), 0);
    }

    #[test]
    fn a_zero_window_turns_ordering_off() {
        assert!(Arrivals::new(Duration::ZERO).enter(IP, 1).is_none());
    }
}
