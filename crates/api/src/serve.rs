//! The API's accept loop: at most `api.max-connections` connections (more are closed at once and
//! counted), HTTP/1.1 with a header-read timeout (`api.header-timeout`, which also closes idle
//! keep-alive connections), and a graceful end at shutdown. The API can then never hold more file
//! descriptors than its limit, whatever clients do, and device ingest keeps its own.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::{app, Api, ApiState, Limits};

/// How long shutdown waits for the API's connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves the API on `listener` until `stop` is cancelled, then lets the open requests finish (for at
/// most [`SHUTDOWN_GRACE`]).
/// Serves the API on `listener` until `state.shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: ApiState) {
    let stop = state.shutdown.clone();
    let config = (*state.config).clone();
    let limits = Arc::new(Limits::new(&config));
    let metrics = Arc::new(super::metrics::registry(&state.live, &limits));
    let router = app(Api {
        state,
        limits: limits.clone(),
        metrics,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and similar: wait a little instead of spinning.
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
            limits.connections_refused.fetch_add(1, Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            if last_refusal_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                last_refusal_log = Some(now);
                tracing::warn!(peer = %peer, max = config.max_connections, "API connection closed: api.max-connections reached (logged once a minute)");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %e, "API connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API connections still busy after {SHUTDOWN_GRACE:?}: closed");
    }
    connections.shutdown().await;
}
