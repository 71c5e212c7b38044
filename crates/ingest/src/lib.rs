//! Ingest: accepts device connections on one port for every protocol, frames and decodes what they
//! send, attributes it to devices (whose state and decisions are `alarm_center_devices::Device`),
//! supervises them, and commits every frame and event to the store before anything reads it.
#![forbid(unsafe_code)]

mod accept;
mod arrival;
mod close_reason;
pub mod config;
mod connection;
mod handoff;
mod http_auth;
mod http_mode;
mod listener;
mod live;
mod metrics;
mod registry;
mod shards;
mod slots;
pub mod stats;
mod supervise;
pub mod time;
mod writer;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::{Committed, Db, Retention};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::IngestConfig;
pub use stats::Stats;

use crate::registry::Registry;
use crate::writer::{Record, WriterConfig};

/// Records waiting for the writer at most; beyond this, connections wait (backpressure, never loss).
const CHANNEL_CAPACITY: usize = 32_768;

/// Committed events broadcast at most before a slow receiver lags (and reads the log instead).
const COMMITTED_CAPACITY: usize = 1024;

/// Why ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] alarm_center_store::StoreError),
    /// A thread or the listener failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// State shared by the tasks of a running server.
pub(crate) struct Shared {
    pub(crate) config: Arc<IngestConfig>,
    pub(crate) registry: Registry,
    pub(crate) stats: Arc<Stats>,
    pub(crate) tx: mpsc::Sender<Record>,
    pub(crate) shutdown: CancellationToken,
    /// HTTP-mode devices: credentials and the paths already logged.
    pub(crate) http: http_mode::HttpMode,
    /// The device port's connection limits.
    slots: Arc<slots::Slots>,
    /// Connections before their first frame, per address, in accept order.
    arrivals: Arc<arrival::Arrivals>,
    /// What the connection threads share to accept in order.
    accept: accept::AcceptState,
    /// Counters of the open connections.
    pub(crate) live: live::LiveConnections,
    next_connection: AtomicI64,
}

/// What the API reads of the running server.
impl alarm_center_api::Live for Shared {
    fn online_count(&self) -> usize {
        self.registry.online_count()
    }

    fn connection_counters(&self, id: i64) -> Option<(u64, u64)> {
        self.live.get(id)
    }

    fn last_seen_ms(&self, device: &str) -> Option<i64> {
        self.registry.last_seen_ms(device)
    }

    fn store_failure(&self) -> Option<String> {
        self.stats.store_failure()
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(metrics::StatsCollector(self.stats.clone())));
    }
}

/// Running ingest: the device listener, its connections, supervision, the store writer and
/// checkpointer.
pub struct Ingest {
    shared: Arc<Shared>,
    committed: broadcast::Sender<Committed>,
    writer: std::thread::JoinHandle<()>,
    checkpointer: writer::Checkpointer,
    log_end: i64,
}

fn retention(config: &IngestConfig) -> Retention {
    let age = |d: Duration| (!d.is_zero()).then_some(d.as_millis() as i64);
    let store = &config.store;
    Retention {
        events_max_age_ms: age(store.events_max_age),
        frames_max_age_ms: age(store.frames_max_age),
        dead_letters_max_age_ms: age(store.dead_letters_max_age),
        dead_letters_max_count: (store.dead_letters_max_count > 0)
            .then_some(store.dead_letters_max_count),
        max_bytes: (store.max_size_mb > 0).then(|| store.max_size_mb * 1024 * 1024),
        keep_events_after: None,
        undelivered_after: None,
    }
}

impl Ingest {
    /// Opens the store, restores the devices it knows and starts the store writer; devices are served
    /// once [`Ingest::serve`] is called (the sinks open their cursors in between, so a new sink starts
    /// at the end of the log before any device is heard). Its tasks stop when `shutdown` is cancelled.
    pub fn open(config: IngestConfig, shutdown: CancellationToken) -> Result<Ingest, IngestError> {
        let config = Arc::new(config);
        let store = &config.store;
        let db = Db::open_with_page_size(&store.data_dir, store.sync, store.page_size)?;
        let page_size = db.page_size()?;
        tracing::info!(path = %db.path().display(), page_size, "store opened");
        if page_size != store.page_size {
            tracing::info!(
                page_size,
                configured = store.page_size,
                "store.page-size applies to new stores: this one keeps its page size (docs/config.example.toml tells how to change it)"
            );
        }
        let registry = Registry::new(&config);
        restore_devices(&db, &registry)?;
        let log_end = db.last_event_id()?;
        let next_connection = AtomicI64::new(db.max_connection_id()? + 1);
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (committed, _) = broadcast::channel(COMMITTED_CAPACITY);
        let stats = Arc::new(Stats::default());
        let writer_config = WriterConfig {
            batch_max: config.store.batch_max,
            commit_interval: config.store.commit_interval,
            retention: retention(&config),
            sinks: config.sinks.clone(),
            drop_undelivered: config.store.drop_undelivered,
            data_dir: config.store.data_dir.clone(),
            min_free_bytes: (config.store.min_free_mb > 0)
                .then(|| config.store.min_free_mb * 1024 * 1024),
        };
        db.disable_auto_checkpoint()?;
        let (checkpointer, log_keeper) = writer::spawn_checkpointer(Db::open_with_page_size(
            &store.data_dir,
            store.sync,
            store.page_size,
        )?)?;
        let writer = {
            let (stats, committed, stopping) = (stats.clone(), committed.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || {
                    writer::run(
                        db,
                        rx,
                        writer_config,
                        stats,
                        committed,
                        stopping,
                        log_keeper,
                    )
                })
                .map_err(|e| IngestError::Internal(format!("cannot start the store writer: {e}")))?
        };
        let slots = slots::Slots::new(
            config.server.max_connections,
            config.server.max_connections_per_ip,
            stats.clone(),
        );
        let shared = Arc::new(Shared {
            config: config.clone(),
            registry,
            stats,
            tx,
            shutdown,
            http: http_mode::HttpMode::new(),
            slots,
            arrivals: arrival::Arrivals::new(config.server.arrival_order_window),
            accept: accept::AcceptState::default(),
            live: live::LiveConnections::default(),
            next_connection,
        });
        Ok(Ingest {
            shared,
            committed,
            writer,
            checkpointer,
            log_end,
        })
    }

    /// Serves devices on `listener` (already bound), and supervises them, on `tasks`; returns the
    /// address devices connect to.
    pub fn serve(
        &self,
        listener: TcpListener,
        tasks: &TaskTracker,
    ) -> Result<std::net::SocketAddr, IngestError> {
        let local_addr = listener
            .local_addr()
            .map_err(|e| IngestError::Internal(format!("listener: {e}")))?;
        let shards = shards::count(self.shared.config.server.connection_threads);
        shards::start(&self.shared, listener, shards, tasks)?;
        tasks.spawn(supervise::run(self.shared.clone()));
        tasks.spawn(stats_loop(self.shared.clone()));
        tracing::info!(connection_threads = shards, listen = %local_addr, "accepting devices (DVRIP, DHIP, XM, JSON, HTTP on one port)");
        Ok(local_addr)
    }

    /// Counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// The id of the last event in the log when ingest started.
    pub fn log_end(&self) -> i64 {
        self.log_end
    }

    /// The broadcast of committed events (in batches, in log order).
    pub fn committed(&self) -> &broadcast::Sender<Committed> {
        &self.committed
    }

    /// What the API reads of the running server.
    pub fn live(&self) -> Arc<dyn alarm_center_api::Live> {
        self.shared.clone()
    }

    /// After its tasks ended (the shutdown token cancelled, the task tracker waited for): commits what
    /// is left, stops the checkpointer and closes the store. The broadcast of committed events ends
    /// with it.
    pub async fn finish(self) -> Result<(), IngestError> {
        let Ingest {
            shared,
            writer,
            checkpointer,
            committed,
            ..
        } = self;
        checkpointer.stop();
        // The connections are closed: the last `last_seen` of each device heard from goes too.
        let _ = supervise::flush_last_seen(&shared).await;
        drop(shared); // the last sender: the writer commits what is left and stops
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| IngestError::Internal(e.to_string()))?
            .map_err(|_| IngestError::Internal("the store writer panicked".into()))?;
        drop(committed);
        Ok(())
    }
}

/// Registers the devices the store knows: each gets a whole period plus grace to reconnect, and the
/// silence before the start counts towards its expiry.
fn restore_devices(db: &Db, registry: &Registry) -> Result<(), IngestError> {
    let now_ms = crate::time::now_ms();
    for device in db.devices()? {
        let silent_ms = u64::try_from(now_ms.saturating_sub(device.last_seen_ms)).unwrap_or(0);
        registry.restore(
            &device.id,
            device.state == alarm_center_store::DeviceState::Online,
            device.keepalive_period,
            silent_ms,
        );
    }
    Ok(())
}

/// Binds the device port with an accept queue of `backlog` connections (the kernel caps it at
/// `net.core.somaxconn`, and a lower cap is logged). Bursts of cameras that open a connection per
/// alarm overflow a short queue: the kernel drops their SYNs and they retry a second later.
pub fn bind_devices(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    if let Some(cap) = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|cap| *cap < backlog)
    {
        tracing::warn!(
            requested = backlog,
            somaxconn = cap,
            "the kernel caps the device port's accept queue below server.listen-backlog; raise net.core.somaxconn"
        );
    }
    socket.listen(backlog)
}

/// Raises the soft limit of open files to the hard limit, and warns when it stays below what
/// `max-connections` needs (each connection is a file descriptor; the store and API need more).
pub fn raise_open_files_limit(config: &config::ServerConfig) -> Option<u64> {
    let needed = (config.max_connections as u64).saturating_add(256);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < needed => {
            tracing::warn!(limit, needed, "open-files limit (ulimit -n) is below server.max-connections + 256: accepts will fail before the connection limit; raise LimitNOFILE");
            Some(limit)
        }
        Ok(limit) => {
            tracing::debug!(limit, "open-files limit");
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            None
        }
    }
}

/// Logs a statistics line every `server.stats-interval`.
async fn stats_loop(shared: Arc<Shared>) {
    let every = shared.config.server.stats_interval;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let stats = &shared.stats;
    let (mut frames, mut events, mut commits) = (0, 0, 0);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (f, e, c) = (
            Stats::get(&stats.frames),
            Stats::get(&stats.events_committed),
            Stats::get(&stats.store_commits),
        );
        let secs = every.as_secs_f64();
        let latency = stats.take_latency_ms();
        let writes = stats.take_write_ms();
        tracing::info!(
            connections = Stats::get(&stats.connections_open),
            devices_online = shared.registry.online_count(),
            frames_per_s = ((f - frames) as f64 / secs).round(),
            events_committed_per_s = ((e - events) as f64 / secs).round(),
            commits_per_s = ((c - commits) as f64 / secs).round(),
            commit_latency_p50_ms = latency.map(|l| l.0),
            commit_latency_p99_ms = latency.map(|l| l.1),
            commit_latency_max_ms = latency.map(|l| l.2),
            write_p99_ms = writes.map(|w| w.1),
            write_max_ms = writes.map(|w| w.2),
            rss_mb = stats::rss_bytes().map(|b| b / (1024 * 1024)),
            refused =
                Stats::get(&stats.refused_total_limit) + Stats::get(&stats.refused_per_ip_limit),
            junk_frames = Stats::get(&stats.frames_junk),
            "stats"
        );
        (frames, events, commits) = (f, e, c);
    }
}
