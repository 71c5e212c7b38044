//! The alarm-center server: ingest (`alarm_center_ingest`), the sinks (`alarm_center_sinks`) and the
//! HTTP API (`alarm_center_api`) started together on one configuration, and stopped in order.
#![forbid(unsafe_code)]

pub mod config;
pub mod data_dir_lock;

use std::sync::Arc;

use alarm_center_ingest::Ingest;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use alarm_center_ingest::{bind_devices, time, Stats};
pub use alarm_center_store::Committed;
pub use config::Config;

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Ingest could not start (the store, the writer).
    #[error(transparent)]
    Ingest(#[from] alarm_center_ingest::IngestError),
    /// A sink could not start.
    #[error(transparent)]
    Sink(#[from] alarm_center_sinks::SinkError),
    /// A listener could not be bound (the message names the address and what to change).
    #[error("{0}")]
    Listen(String),
    /// A task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A running server.
pub struct Server {
    ingest: Ingest,
    /// The address devices connect to.
    local_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The HTTP API's address, when enabled.
    api_addr: Option<std::net::SocketAddr>,
    /// The stdout sink ends after the writer: it prints what the writer committed last.
    stdout: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Opens the store and starts serving `listener` (already bound, so tests can use port 0); binds
    /// the API's listener itself when the API is enabled.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Server, ServerError> {
        let api = match config.api.enabled {
            true => Some(TcpListener::bind(config.api.listen).await.map_err(|e| {
                ServerError::Listen(format!(
                    "cannot listen for the API on {}: {e}",
                    config.api.listen
                ))
            })?),
            false => None,
        };
        Server::start_bound(config, listener, api).await
    }

    /// Opens the store and starts serving listeners bound beforehand: the device port's, and the
    /// API's when the API is enabled (`alarm-center serve` binds both before it touches the store).
    pub async fn start_bound(
        config: Config,
        listener: TcpListener,
        api: Option<TcpListener>,
    ) -> Result<Server, ServerError> {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ingest = Ingest::open(config.ingest(), shutdown.clone())?;
        // TLS for the outputs: one crypto provider for the whole process.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let context = alarm_center_sinks::Context {
            data_dir: config.store.data_dir.clone(),
            stats_interval: config.server.stats_interval,
            auto_clear: config.auto_clear.clone(),
        };
        alarm_center_sinks::start(
            &config.sinks,
            &context,
            ingest.committed(),
            &shutdown,
            &tasks,
        )?;
        let api_addr = match api {
            Some(api) => Some(start_api(&config, api, &ingest, &shutdown, &tasks)?),
            None => None,
        };
        let local_addr = ingest.serve(listener, &tasks)?;
        let stdout = match config.sinks.stdout.enabled {
            true => Some(
                alarm_center_sinks::stdout::spawn(
                    ingest.committed().subscribe(),
                    config.store.data_dir.clone(),
                    ingest.log_end(),
                )
                .map_err(|e| ServerError::Internal(format!("cannot start the stdout sink: {e}")))?,
            ),
            false => None,
        };
        Ok(Server {
            ingest,
            local_addr,
            shutdown,
            tasks,
            api_addr,
            stdout,
        })
    }

    /// The address devices connect to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// The HTTP API's address, when enabled.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api_addr
    }

    /// Counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.ingest.stats()
    }

    /// Events as they are committed (in batches, in log order).
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.ingest.committed().subscribe()
    }

    /// Stops accepting, drains the connections (their buffered frames are decoded and stored), commits
    /// everything and closes the store.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        tracing::info!("shutting down: no new connections; draining");
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.ingest.finish().await?;
        if let Some(stdout) = self.stdout {
            // It prints what the writer committed last, then ends.
            let _ = tokio::task::spawn_blocking(move || stdout.join()).await;
        }
        tracing::info!("store flushed and closed");
        Ok(())
    }
}

/// Raises the soft limit of open files to the hard limit, and warns when it stays below what
/// `server.max-connections` needs.
pub fn raise_open_files_limit(config: &Config) -> Option<u64> {
    alarm_center_ingest::raise_open_files_limit(&config.server)
}

/// Serves the HTTP API on `listener` until shutdown.
fn start_api(
    config: &Config,
    listener: TcpListener,
    ingest: &Ingest,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<std::net::SocketAddr, ServerError> {
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let state = alarm_center_api::ApiState {
        data_dir: config.store.data_dir.clone(),
        config: Arc::new(config.api.clone()),
        live: ingest.live(),
        max_frame: config.server.max_frame,
        committed: ingest.committed().clone(),
        shutdown: shutdown.clone(),
    };
    // Connection limit, header timeout and graceful shutdown: see `alarm_center_api::serve`.
    tasks.spawn(alarm_center_api::serve(listener, state));
    tracing::info!(api = %addr, "HTTP API listening");
    Ok(addr)
}
