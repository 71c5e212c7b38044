//! Device connections run on connection threads (decision D62): each has a current-thread tokio runtime
//! of its own (its own epoll and timer wheel) and a duplicate of the listening descriptor. One of them
//! has it in its epoll and accepts, the others only while it is behind (D73, `listener.rs`); each
//! serves the connections it accepted and kept, or was handed by another (D64), until that connection
//! ends: a connection never moves once served, and a frame wakes only the thread that owns its
//! socket, where the multi-thread runtime's workers woke each other to steal work. The rest of the
//! server (API, sinks, supervision) stays on the multi-thread runtime.

use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};

use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_util::task::TaskTracker;

use crate::listener::{Listener, ACCEPTOR};
use crate::{IngestError, Shared};

/// The connection threads to run: `configured`, or one per core when 0 (at most
/// [`crate::config::MAX_CONNECTION_THREADS`]).
pub(crate) fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(crate::config::MAX_CONNECTION_THREADS)
}

/// Starts `threads` connection threads that accept from `listener` and serve the connections they
/// accept until `shared.shutdown` is cancelled and their connections have ended; `tasks` tracks each
/// thread, so waiting for it waits for every connection. Either every thread starts and then accepts,
/// or none accepts anything and the error is returned.
pub(crate) fn start(
    shared: &Arc<Shared>,
    listener: TcpListener,
    threads: usize,
    tasks: &TaskTracker,
) -> Result<(), IngestError> {
    let internal = |what: &str, e: std::io::Error| IngestError::Internal(format!("{what}: {e}"));
    let listener = listener
        .into_std()
        .map_err(|e| internal("device listener", e))?;
    let mut listeners = Vec::with_capacity(threads);
    for _ in 0..threads.max(1) {
        listeners.push(
            listener
                .try_clone()
                .map_err(|e| internal("device listener", e))?,
        );
    }
    drop(listener);
    let gauges = (0..listeners.len()).map(|_| AtomicU64::new(0)).collect();
    let _ = shared.stats.connections_by_thread.set(gauges);
    let handoffs = shared.accept.handoffs.open(listeners.len());
    // Each thread builds its runtime (the acceptor registers its listener), says so on `ready`, then
    // waits for the word to accept (true) or to end (false).
    let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
    let mut started = Vec::new();
    let mut failure = None;
    for (index, (listener, handoffs)) in listeners.into_iter().zip(handoffs).enumerate() {
        let (go_tx, go) = mpsc::channel::<bool>();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let (shared, ready_tx) = (shared.clone(), ready_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("connections-{index}"))
            .spawn(move || {
                let Some(mut thread) = Prepared::new(index, listener, ready_tx, done) else {
                    return;
                };
                if go.recv() == Ok(true) {
                    thread.run(shared, index, handoffs);
                }
            });
        match spawned {
            Ok(_) => started.push((go_tx, finished)),
            Err(e) => {
                failure = Some(internal("connection thread", e));
                break;
            }
        }
    }
    drop(ready_tx);
    for _ in 0..started.len() {
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(IngestError::Internal(e))),
            Err(_) => {
                failure = failure.or(Some(IngestError::Internal(
                    "a connection thread ended while starting".into(),
                )))
            }
        }
    }
    let go = failure.is_none();
    for (index, (go_tx, finished)) in started.into_iter().enumerate() {
        let _ = go_tx.send(go);
        if go {
            tasks.spawn(watch(shared.clone(), index, finished));
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Waits for connection thread `index` to end; should the acceptor end before shutdown, the other
/// threads accept from then on (D73). Should this task be dropped unfinished (the server was dropped
/// without its shutdown, with the runtime that runs it), shutdown is cancelled so that the thread
/// stops too.
async fn watch(shared: Arc<Shared>, index: usize, finished: tokio::sync::oneshot::Receiver<()>) {
    let guard = shared.shutdown.clone().drop_guard();
    let _ = finished.await;
    if !shared.shutdown.is_cancelled() {
        if index == ACCEPTOR {
            shared.accept.helpers.set(true);
        }
        tracing::error!(
            thread = index,
            "a connection thread ended before shutdown: its connections are closed, the other threads go on accepting"
        );
    }
    guard.disarm();
}

/// A connection thread's runtime and listener, ready to accept. Dropped, it drops the runtime (with
/// whatever its connections left behind) and then says the thread has ended, whether the thread ends
/// normally or unwinds from a panic.
struct Prepared {
    runtime: Option<Runtime>,
    listener: Option<Listener>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Prepared {
    /// Builds thread `index`'s runtime and, for the acceptor, registers the listener in it; reports
    /// the outcome on `ready`, which it then drops (should a thread die before reporting, the starter
    /// learns it when every thread has reported or dropped its sender).
    fn new(
        index: usize,
        listener: std::net::TcpListener,
        ready: mpsc::Sender<Result<(), String>>,
        done: tokio::sync::oneshot::Sender<()>,
    ) -> Option<Prepared> {
        let prepared = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("connection runtime: {e}"))
            .and_then(|runtime| {
                let listener = if index == ACCEPTOR {
                    let _entered = runtime.enter();
                    let listener = TcpListener::from_std(listener)
                        .map_err(|e| format!("device listener: {e}"))?;
                    Listener::Accepting(listener)
                } else {
                    Listener::Standing(listener)
                };
                Ok(Prepared {
                    runtime: Some(runtime),
                    listener: Some(listener),
                    done: Some(done),
                })
            });
        match prepared {
            Ok(prepared) => {
                let _ = ready.send(Ok(()));
                Some(prepared)
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                None
            }
        }
    }

    /// Accepts until shutdown, then waits for the connections this thread serves (those it accepted
    /// and those other threads handed to it through `handoffs`).
    fn run(
        &mut self,
        shared: Arc<Shared>,
        index: usize,
        handoffs: tokio::sync::mpsc::UnboundedReceiver<Box<crate::handoff::Handoff>>,
    ) {
        let (Some(runtime), Some(listener)) = (&self.runtime, self.listener.take()) else {
            return;
        };
        runtime.block_on(async move {
            let connections = TaskTracker::new();
            crate::accept::accept_loop(shared, listener, connections.clone(), index, handoffs)
                .await;
            connections.close();
            connections.wait().await;
        });
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // The listener belongs to the runtime's reactor: it goes first, then the runtime, then `done`.
        self.listener.take();
        self.runtime.take();
        self.done.take();
    }
}
