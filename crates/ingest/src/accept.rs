//! Accepting device connections. Every connection thread runs [`accept_loop`]: the acceptor with the
//! listening socket in its epoll, the others only while it is behind (D73, `listener.rs`), serving
//! meanwhile the connections handed to them. The accept itself, the connection's id and its place in
//! its address's arrival line are taken under one lock, so ids and arrival tickets follow the kernel's
//! accept order whichever thread accepted (D33 relies on it: an XM camera's start and stop come on
//! two connections a millisecond apart). The same lock decides which thread serves the connection
//! (D64, `handoff.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::handoff::{self, Handoff, Handoffs, Incoming, OnThread};
use crate::listener::{Backlog, Helpers, Listener, ACCEPTOR};
use crate::slots::Refused;
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
    /// The way to each connection thread, for connections another thread accepted (D64).
    pub(crate) handoffs: Handoffs,
    /// Whether the threads other than the acceptor accept too (D73).
    pub(crate) helpers: Helpers,
}

/// One connection accepted, numbered, placed in its address's arrival line and given the thread
/// that serves it; or refused by the limits.
enum Accepted {
    Served(TcpStream, Incoming),
    Refused(SocketAddr, Refused),
}

/// What woke the accept loop.
enum Next {
    Accepted(std::io::Result<Accepted>),
    HandedOver(Box<Handoff>),
    /// The acceptor called the other threads in, or dismissed them.
    Helpers,
}

/// Accepts connections, while `listener` is in this thread's epoll (always on the acceptor, on the
/// others while the acceptor calls them in, D73), and serves each on a task of `tasks`, on the runtime
/// it runs on (a connection thread's) or, when another thread has clearly fewer connections, on that
/// thread's (D64); serves what the other threads hand to this one (`handoffs`); until shutdown.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    mut listener: Listener,
    tasks: TaskTracker,
    thread: usize,
    mut handoffs: mpsc::UnboundedReceiver<Box<Handoff>>,
) {
    let mut helpers = shared.accept.helpers.watch();
    // A thread that starts after the acceptor called the others in (or after it ended) must see that
    // call: its receiver counts the current value as seen.
    helpers.mark_changed();
    let mut backlog = Backlog::default();
    // The acceptor calls the others in only when there are others.
    let acceptor = thread == ACCEPTOR
        && shared
            .stats
            .connections_by_thread
            .get()
            .is_some_and(|threads| threads.len() > 1);
    // After a failed accept (out of descriptors and similar) this thread pauses accepting for a
    // moment instead of spinning, and still takes hand-offs meanwhile.
    let mut paused_until = None;
    loop {
        let accepting = listener.accepting().is_some() && paused_until.is_none();
        let next = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            Some(handoff) = handoffs.recv() => Next::HandedOver(handoff),
            () = sleep_until(paused_until) => {
                paused_until = None;
                continue;
            }
            Ok(()) = helpers.changed(), if thread != ACCEPTOR => Next::Helpers,
            accepted = std::future::poll_fn(|cx| match listener.accepting() {
                Some(listener) => {
                    let accepted = poll_accept_in_order(&shared, listener, thread, cx);
                    if accepted.is_pending() {
                        backlog.emptied();
                    }
                    accepted
                }
                None => Poll::Pending,
            }), if accepting => Next::Accepted(accepted),
        };
        if let (true, Next::Accepted(accepted)) = (acceptor, &next) {
            call_in_or_dismiss(&shared, &mut backlog, accepted);
        }
        match next {
            Next::Accepted(Ok(Accepted::Served(stream, incoming))) => {
                Stats::inc(&shared.stats.connections_accepted);
                if thread != ACCEPTOR {
                    Stats::inc(&shared.stats.connections_accepted_by_helpers);
                }
                let _ = stream.set_nodelay(true);
                if incoming.on_thread.thread() == thread {
                    serve(&shared, &tasks, stream, incoming);
                } else {
                    hand_over(&shared, &tasks, thread, stream, incoming);
                }
            }
            Next::Accepted(Ok(Accepted::Refused(peer, refused))) => {
                log_refusal(&shared.accept, peer, &refused)
            }
            Next::Accepted(Err(e)) => {
                log_accept_failure(&shared.accept, "accept failed", &e);
                paused_until = Some(tokio::time::Instant::now() + Duration::from_millis(50));
            }
            Next::HandedOver(handoff) => serve_handed_over(&shared, &tasks, *handoff),
            Next::Helpers => {
                let called = *helpers.borrow_and_update();
                change_listener(&mut listener, called, thread);
            }
        }
    }
    // Connections handed to this thread before it stopped are served here like the ones it accepted
    // (their drain reads what they sent); a thread that hands one over from now on serves it itself.
    // `recv` after `close` also waits for a hand-off whose send had begun before the close.
    handoffs.close();
    while let Some(handoff) = handoffs.recv().await {
        serve_handed_over(&shared, &tasks, *handoff);
    }
}

/// The acceptor's side of D73, after each accept (`accepted`: a connection taken off the queue, or a
/// failure): calls the other threads in when it is behind or failed, dismisses them once calm.
fn call_in_or_dismiss(
    shared: &Shared,
    backlog: &mut Backlog,
    accepted: &std::io::Result<Accepted>,
) {
    let now = Instant::now();
    let helpers = &shared.accept.helpers;
    let called = helpers.called();
    let wanted = match accepted {
        Ok(_) => backlog.accepted(now, called),
        Err(_) => {
            backlog.failed(now);
            true
        }
    };
    // Most accepts change nothing: no write to the channel then.
    if wanted != called && helpers.set(wanted) && wanted {
        Stats::inc(&shared.stats.accept_helpers_called);
    }
}

/// Puts this thread's listener in its epoll (`accept`) or takes it out; an error (logged) leaves
/// this thread without a listener, the acceptor still accepting.
fn change_listener(listener: &mut Listener, accept: bool, thread: usize) {
    let changed = if accept {
        listener.accept()
    } else {
        listener.stand()
    };
    if let Err(e) = changed {
        tracing::error!(thread, error = %e, accept, "a connection thread could not change whether it accepts: it no longer does");
    }
}

/// Completes at `until`, never when `None`.
async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// Serves a connection on a task of this thread's `tasks`.
fn serve(shared: &Arc<Shared>, tasks: &TaskTracker, stream: TcpStream, incoming: Incoming) {
    let shared = shared.clone();
    tasks.spawn(async move {
        let Incoming {
            peer,
            slot,
            id,
            arrival,
            on_thread,
        } = incoming;
        // Given back when the task ends, however it ends.
        let (_slot, _on_thread) = (slot, on_thread);
        connection::Connection::new(shared, id, peer, arrival)
            .run(stream)
            .await;
    });
}

/// Sends a connection this thread accepted to the thread its `on_thread` names; serves it here when
/// that thread no longer takes any.
fn hand_over(
    shared: &Arc<Shared>,
    tasks: &TaskTracker,
    thread: usize,
    stream: TcpStream,
    incoming: Incoming,
) {
    let to = incoming.on_thread.thread();
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            // Not out of this epoll: the connection closes, as after a failed accept.
            log_accept_failure(
                &shared.accept,
                "a connection could not be handed over: closed",
                &e,
            );
            return;
        }
    };
    match shared
        .accept
        .handoffs
        .send(to, Box::new(Handoff { stream, incoming }))
    {
        Ok(()) => Stats::inc(&shared.stats.connections_handed_over),
        Err(mut handoff) => {
            handoff.incoming.on_thread = OnThread::new(shared.stats.clone(), thread);
            serve_handed_over(shared, tasks, *handoff);
        }
    }
}

/// Registers a handed-over socket in this thread's epoll and serves it.
fn serve_handed_over(shared: &Arc<Shared>, tasks: &TaskTracker, handoff: Handoff) {
    let Handoff { stream, incoming } = handoff;
    match TcpStream::from_std(stream) {
        Ok(stream) => serve(shared, tasks, stream, incoming),
        Err(e) => log_accept_failure(
            &shared.accept,
            "a handed-over connection could not be registered: closed",
            &e,
        ),
    }
}

/// Accepts one connection and, under the same lock, takes its slot, its id, its arrival ticket and
/// the thread that serves it (`thread` accepts it; see `handoff::target`).
fn poll_accept_in_order(
    shared: &Shared,
    listener: &TcpListener,
    thread: usize,
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
            let counts = shared.stats.connections_by_thread.get();
            let taking = |i| shared.accept.handoffs.taking(i);
            let to = counts.map_or(thread, |counts| handoff::target(counts, thread, taking));
            let on_thread = OnThread::new(shared.stats.clone(), to);
            Accepted::Served(
                stream,
                Incoming {
                    peer,
                    slot,
                    id,
                    arrival,
                    on_thread,
                },
            )
        }
        // The refused connection closes here.
        Err(refused) => Accepted::Refused(peer, refused),
    };
    Poll::Ready(Ok(accepted))
}

/// Every connection thread fails alike while the process is out of descriptors: one line a second.
fn log_accept_failure(state: &AcceptState, what: &str, error: &std::io::Error) {
    let now = Instant::now();
    let mut last = state
        .failure_logged
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
        *last = Some(now);
        drop(last);
        tracing::warn!(error = %error, "{what} (failures to accept are logged once a second)");
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
