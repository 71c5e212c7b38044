//! The store writer: one thread owns the database, takes records from the ingest channel and commits
//! them in batches; committed events are then published to the sinks.

use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::{
    Batch, ConnectionClose, ConnectionOpen, Db, DeviceUpdate, NewEvent, NewFrame, Retention,
    StoredEvent,
};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// What the ingest side hands to the writer.
#[derive(Debug)]
pub(crate) enum Record {
    /// A connection was accepted.
    Opened(ConnectionOpen),
    /// A connection closed, or learned its device.
    Closed(ConnectionClose),
    /// A frame and what it carried.
    Frame(Box<FrameRecord>),
    /// Events not tied to a frame (online/offline, synthetic stops) and device updates.
    Events {
        /// Events in order.
        events: Vec<NewEvent>,
        /// Device rows to update.
        devices: Vec<DeviceUpdate>,
    },
}

/// A received frame with its events and device update.
#[derive(Debug)]
pub(crate) struct FrameRecord {
    /// The raw frame, unless not archived (keepAlives when so configured).
    pub(crate) frame: Option<NewFrame>,
    /// Device updates (first contact, online, last seen) written before the events.
    pub(crate) devices: Vec<DeviceUpdate>,
    /// Events: `frame == Some(0)` means "this frame".
    pub(crate) events: Vec<NewEvent>,
    /// When the frame's last byte was read.
    pub(crate) received: Instant,
    /// Told once the frame and its events are committed (HTTP answers wait for it); dropped unsent
    /// when they could not be.
    pub(crate) committed: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Committed events, published after each commit.
pub type Committed = Arc<Vec<StoredEvent>>;

/// Writer settings.
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    pub(crate) batch_max: usize,
    pub(crate) retention: Retention,
    /// Enabled sinks: their undelivered events are kept by retention, or counted when dropped.
    pub(crate) sinks: Vec<String>,
    /// `store.drop-undelivered`.
    pub(crate) drop_undelivered: bool,
}

/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Adds a record to the batch; returns its receive time when it is a frame. Commit notifications go
/// to `acks`.
fn add(
    batch: &mut Batch,
    record: Record,
    acks: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> Option<Instant> {
    match record {
        Record::Opened(open) => batch.opened.push(open),
        Record::Closed(close) => batch.closed.push(close),
        Record::Events { events, devices } => {
            batch.devices.extend(devices);
            batch.events.extend(events);
        }
        Record::Frame(record) => {
            let FrameRecord {
                frame,
                devices,
                events,
                received,
                committed,
            } = *record;
            acks.extend(committed);
            let index = frame.map(|f| {
                batch.frames.push(f);
                batch.frames.len() - 1
            });
            batch.devices.extend(devices.into_iter().map(|mut d| {
                d.first_frame = d.first_frame.and(index);
                d
            }));
            batch.events.extend(events.into_iter().map(|mut e| {
                e.frame = e.frame.and(index);
                e
            }));
            return Some(received);
        }
    }
    None
}

/// Runs the writer until the channel closes (every sender dropped), committing what remains.
pub(crate) fn run(
    mut db: Db,
    mut rx: mpsc::Receiver<Record>,
    config: WriterConfig,
    stats: Arc<Stats>,
    committed: broadcast::Sender<Committed>,
    stopping: CancellationToken,
) {
    let mut last_retention: Option<Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Batch::default();
        let mut received = Vec::new();
        let mut acks = Vec::new();
        received.extend(add(&mut batch, first, &mut acks));
        let mut records = 1;
        while records < config.batch_max {
            match rx.try_recv() {
                Ok(record) => {
                    received.extend(add(&mut batch, record, &mut acks));
                    records += 1;
                }
                Err(_) => break,
            }
        }
        let Some(ids) = commit(&mut db, &batch, &stats, &stopping) else {
            continue;
        };
        for ack in acks {
            let _ = ack.send(());
        }
        let done = Instant::now();
        stats.record_latencies(received.iter().map(|r| {
            done.duration_since(*r)
                .as_micros()
                .min(u128::from(u32::MAX)) as u32
        }));
        stats.events_committed.fetch_add(
            batch.events.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if !batch.events.is_empty() && committed.receiver_count() > 0 {
            let events = batch
                .events
                .iter()
                .zip(&ids.event_ids)
                .map(|(e, id)| {
                    StoredEvent::from_new(
                        *id,
                        e,
                        e.frame.and_then(|i| ids.frame_ids.get(i).copied()),
                    )
                })
                .collect();
            let _ = committed.send(Arc::new(events));
        }
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            last_retention = Some(Instant::now());
            let mut policy = config.retention;
            if !config.sinks.is_empty() {
                let lowest = db
                    .min_sink_position(&config.sinks)
                    .ok()
                    .flatten()
                    .or(Some(0));
                if config.drop_undelivered {
                    policy.undelivered_after = lowest;
                } else {
                    policy.keep_events_after = lowest;
                }
            }
            match db.apply_retention(&policy, crate::time::now_ms()) {
                Ok(r) if r.events + r.frames + r.kept_undelivered + r.dropped_undelivered > 0 => {
                    tracing::info!(
                        events = r.events,
                        frames = r.frames,
                        kept_undelivered = r.kept_undelivered,
                        dropped_undelivered = r.dropped_undelivered,
                        "retention deleted old records"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            }
        }
    }
    tracing::debug!("store writer finished");
}

/// How long a failing store may hold up shutdown before the batch is given up (and counted).
const GIVE_UP_AT_SHUTDOWN: Duration = Duration::from_secs(10);

/// Commits a batch, retrying until it succeeds: events are never dropped while the server runs. While
/// the store fails, ingest slows down through the bounded channel instead. Only at shutdown, after
/// [`GIVE_UP_AT_SHUTDOWN`] of failures, is the batch given up (`None`), so that the process can stop.
fn commit(
    db: &mut Db,
    batch: &Batch,
    stats: &Stats,
    stopping: &CancellationToken,
) -> Option<alarm_center_store::WriteResult> {
    let mut delay = Duration::from_millis(50);
    let mut failing_since: Option<Instant> = None;
    loop {
        match db.write(batch) {
            Ok(ids) => return Some(ids),
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if stopping.is_cancelled() && since.elapsed() >= GIVE_UP_AT_SHUTDOWN {
                    Stats::inc(&stats.store_errors);
                    tracing::error!(error = %e, events = batch.events.len(), frames = batch.frames.len(), "store still failing at shutdown: these records are lost");
                    return None;
                }
                Stats::inc(&stats.store_errors);
                tracing::error!(error = %e, retry_in = ?delay, records = batch.events.len() + batch.frames.len(), "store write failed; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How often the write-ahead log is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A thread that checkpoints the write-ahead log on its own connection, so commits never wait for it.
pub(crate) struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// Stops the thread (the writer's connection checkpoints what is left when it closes).
    pub(crate) fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

pub(crate) fn spawn_checkpointer(db: Db) -> Result<Checkpointer, crate::ServerError> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = db.checkpoint() {
                    tracing::warn!(error = %e, "checkpoint failed");
                }
                std::thread::park_timeout(CHECKPOINT_EVERY);
            }
        })
        .map_err(|e| crate::ServerError::Internal(format!("cannot start the checkpointer: {e}")))?;
    Ok(Checkpointer { stop, thread })
}
