//! Device connections run on shards (decision D62): one thread per shard, each with a current-thread
//! tokio runtime of its own (its own epoll and timer wheel). Every shard accepts from the device port
//! (a duplicate of the listening descriptor, registered in the shard's own epoll) and serves what it
//! accepted until that connection ends, so a connection never moves between threads: a frame wakes only
//! the thread that owns its socket, where the runtime's work-stealing workers woke each other for most
//! frames. The rest of the server (API, sinks, supervision) stays on the multi-thread runtime.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::{IngestError, Shared};

/// The shards to run: `configured`, or one per core when 0.
pub(crate) fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Starts `shards` threads that accept from `listener` and serve the connections they accept until
/// `shared.shutdown` is cancelled and their connections have ended; `tasks` tracks each shard, so
/// waiting for it waits for every connection.
pub(crate) fn start(
    shared: &Arc<Shared>,
    listener: TcpListener,
    shards: usize,
    tasks: &TaskTracker,
) -> Result<(), IngestError> {
    let internal = |what: &str, e: std::io::Error| IngestError::Internal(format!("{what}: {e}"));
    let listener = listener
        .into_std()
        .map_err(|e| internal("device listener", e))?;
    for index in 0..shards.max(1) {
        let listener = listener
            .try_clone()
            .map_err(|e| internal("device listener", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| internal("connection runtime", e))?;
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("connections-{index}"))
            .spawn(move || {
                runtime.block_on(run(shared, listener));
                // The runtime goes first (with whatever its connections left behind), then the shard
                // counts as ended: `done` is dropped last, even when a panic unwinds the thread.
                drop(runtime);
                drop(done);
            })
            .map_err(|e| internal("connection thread", e))?;
        tasks.spawn(async move {
            let _ = finished.await;
        });
    }
    Ok(())
}

/// One shard: accepts until shutdown, then waits for the connections it serves.
async fn run(shared: Arc<Shared>, listener: std::net::TcpListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "a connection thread cannot watch the device port");
            return;
        }
    };
    let connections = TaskTracker::new();
    crate::accept_loop(shared, listener, connections.clone()).await;
    connections.close();
    connections.wait().await;
}
