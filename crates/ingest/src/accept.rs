//! Accepting device connections. Every connection thread (D62) runs [`accept_loop`] on the same
//! listening socket; the accept itself, the connection's id and its place in its address's arrival line
//! are taken under one lock, so ids and arrival tickets follow the kernel's accept order whichever
//! thread accepted (D33 relies on it: an XM camera's start and stop come on two connections a
//! millisecond apart).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::arrival::Ticket;
use crate::slots::{Refused, Slot};
use crate::{connection, Shared, Stats};

/// Addresses remembered for rate-limiting the refusal log line.
const MAX_REFUSAL_LOG: usize = 10_000;

/// What the threads that accept share.
#[derive(Default)]
pub(crate) struct AcceptState {
    /// Held while accepting and numbering one connection.
    order: Mutex<()>,
    /// When a refusal was last logged, per address: one line per address per minute whichever thread
    /// refused.
    refusals: Mutex<HashMap<IpAddr, Instant>>,
    /// When a failed accept was last logged: one line a second whichever thread failed.
    failure_logged: Mutex<Option<Instant>>,
}

/// One connection accepted, numbered and placed in its address's arrival line; or refused by the limits.
enum Accepted {
    Served {
        stream: TcpStream,
        peer: SocketAddr,
        slot: Slot,
        id: i64,
        arrival: Option<Ticket>,
    },
    Refused(SocketAddr, Refused),
}

/// Accepts connections and serves each on a task of `tasks`, on the runtime it runs on (a connection
/// thread's), until shutdown.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tasks: TaskTracker,
    thread: usize,
) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = std::future::poll_fn(|cx| poll_accept_in_order(&shared, &listener, cx)) => accepted,
        };
        match accepted {
            Ok(Accepted::Served {
                stream,
                peer,
                slot,
                id,
                arrival,
            }) => {
                Stats::inc(&shared.stats.connections_accepted);
                let _ = stream.set_nodelay(true);
                let conn_shared = shared.clone();
                let on_thread = OnThread::new(shared.stats.clone(), thread);
                tasks.spawn(async move {
                    // Given back when the task ends, however it ends.
                    let (_slot, _on_thread) = (slot, on_thread);
                    connection::Connection::new(conn_shared, id, peer, arrival)
                        .run(stream)
                        .await;
                });
            }
            Ok(Accepted::Refused(peer, refused)) => log_refusal(&shared.accept, peer, &refused),
            Err(e) => {
                // Out of file descriptors and similar: wait a little instead of spinning.
                log_accept_failure(&shared.accept, &e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts one connection and, under the same lock, takes its slot, its id and its arrival ticket.
fn poll_accept_in_order(
    shared: &Shared,
    listener: &TcpListener,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<Accepted>> {
    let _order = shared
        .accept
        .order
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (stream, peer) = std::task::ready!(listener.poll_accept(cx))?;
    let accepted = match shared.slots.take(peer.ip()) {
        Ok(slot) => {
            let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
            let arrival = shared.arrivals.enter(peer.ip(), id);
            Accepted::Served {
                stream,
                peer,
                slot,
                id,
                arrival,
            }
        }
        // The refused connection closes here.
        Err(refused) => Accepted::Refused(peer, refused),
    };
    Poll::Ready(Ok(accepted))
}

/// Every connection thread fails alike while the process is out of descriptors: one line a second.
fn log_accept_failure(state: &AcceptState, error: &std::io::Error) {
    let now = Instant::now();
    let mut last = state
        .failure_logged
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
        *last = Some(now);
        drop(last);
        tracing::warn!(error = %error, "accept failed (logged once a second)");
    }
}

/// One log line per address per minute: a flood must not flood the log too. The memory of whom was
/// logged is bounded: past MAX_REFUSAL_LOG addresses it starts again.
fn log_refusal(state: &AcceptState, peer: SocketAddr, refused: &Refused) {
    let now = Instant::now();
    let mut logged = state
        .refusals
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if logged.len() >= MAX_REFUSAL_LOG {
        logged.clear();
    }
    let due = logged
        .get(&peer.ip())
        .is_none_or(|last| now.duration_since(*last) >= Duration::from_secs(60));
    if due {
        logged.insert(peer.ip(), now);
        drop(logged);
        tracing::warn!(peer = %peer, reason = %refused, "connection refused (logged once a minute per address)");
    }
}

/// Counts a connection on its thread's gauge while it lives.
struct OnThread {
    stats: Arc<Stats>,
    thread: usize,
}

impl OnThread {
    fn new(stats: Arc<Stats>, thread: usize) -> OnThread {
        if let Some(n) = stats
            .connections_by_thread
            .get()
            .and_then(|t| t.get(thread))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        OnThread { stats, thread }
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
