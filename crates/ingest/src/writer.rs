//! The store writer: one thread owns the database, takes records from the ingest channel and commits
//! them in batches; committed events are then published to the sinks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::{
    Batch, ConnectionClose, ConnectionIdentified, ConnectionOpen, Db, DeviceRemoval, DeviceUpdate,
    NewEvent, NewFrame, Retention, RetentionReport, StoredEvent,
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
    /// A connection learned its device.
    Identified(ConnectionIdentified),
    /// A connection closed.
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
    /// Expired devices whose rows go (after the rest of the batch).
    Forget(Vec<DeviceRemoval>),
}

/// A received frame with its events and device update.
#[derive(Debug)]
pub(crate) struct FrameRecord {
    /// The raw frame, unless not archived (keepAlives when so configured).
    pub(crate) frame: Option<NewFrame>,
    /// Device updates (first contact, online, last seen) written before the events.
    pub(crate) devices: Vec<DeviceUpdate>,
    /// Events; those of the frame refer to it as `FrameRef::Carrier`.
    pub(crate) events: Vec<NewEvent>,
    /// When the frame's last byte was read.
    pub(crate) received: Instant,
    /// Told once the frame and its events are committed (HTTP answers wait for it); dropped unsent
    /// when they could not be.
    pub(crate) committed: Option<tokio::sync::oneshot::Sender<()>>,
}

use alarm_center_sinks::Committed;

/// Writer settings.
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    pub(crate) batch_max: usize,
    pub(crate) retention: Retention,
    /// Enabled sinks: their undelivered events are kept by retention, or counted when dropped.
    pub(crate) sinks: Vec<String>,
    /// `store.drop-undelivered`.
    pub(crate) drop_undelivered: bool,
    /// The data directory: the free space of its file system is watched.
    pub(crate) data_dir: PathBuf,
    /// `store.min-free-mb` in bytes; `None` when free space is not watched.
    pub(crate) min_free_bytes: Option<u64>,
}

/// How often retention runs when nothing presses.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// After an early pass that could delete nothing, how long until the next early one.
const STUCK_RETRY_EVERY: Duration = Duration::from_secs(5);
/// Least time between two recoveries (log truncation and retention) while commits fail.
const RECOVER_EVERY: Duration = Duration::from_secs(1);
/// Least time between two warnings of the same kind about space.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Adds a record to the batch; returns its receive time when it is a frame. Commit notifications go
/// to `acks`.
fn add(
    batch: &mut Batch,
    record: Record,
    acks: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> Option<Instant> {
    match record {
        Record::Opened(open) => batch.opened.push(open),
        Record::Forget(removals) => batch.removed_devices.extend(removals),
        Record::Identified(identified) => batch.identified.push(identified),
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
                d.first_frame = d.first_frame.resolve(index);
                d
            }));
            batch.events.extend(events.into_iter().map(|mut e| {
                e.frame = e.frame.resolve(index);
                e
            }));
            return Some(received);
        }
    }
    None
}

/// Records taken from the channel for one transaction.
#[derive(Default)]
struct Pending {
    batch: Batch,
    /// Receive times of the frames, for the latency statistics.
    received: Vec<Instant>,
    /// Told once the batch is committed.
    acks: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Most bytes (frames and event data) in one transaction. In WAL mode a transaction needs free disk
/// for all of it in the write-ahead log, whatever retention freed inside the database: a bounded batch
/// still commits on a nearly full disk once retention has made room.
const BATCH_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Bytes a record adds to a transaction, roughly: its frame and its events' data.
fn record_bytes(record: &Record) -> usize {
    let data = |events: &[NewEvent]| -> usize {
        events
            .iter()
            .map(|e| e.data.as_ref().map_or(0, String::len))
            .sum()
    };
    match record {
        Record::Frame(r) => r.frame.as_ref().map_or(0, |f| f.bytes.len()) + data(&r.events),
        Record::Events { events, .. } => data(events),
        Record::Opened(_) | Record::Identified(_) | Record::Closed(_) | Record::Forget(_) => 0,
    }
}

/// `first` and whatever else is waiting, up to `batch_max` records and about [`BATCH_MAX_BYTES`].
fn take_batch(first: Record, rx: &mut mpsc::Receiver<Record>, batch_max: usize) -> Pending {
    let mut pending = Pending::default();
    let mut bytes = record_bytes(&first);
    pending
        .received
        .extend(add(&mut pending.batch, first, &mut pending.acks));
    let mut records = 1;
    while records < batch_max && bytes < BATCH_MAX_BYTES {
        let Ok(record) = rx.try_recv() else { break };
        bytes += record_bytes(&record);
        pending
            .received
            .extend(add(&mut pending.batch, record, &mut pending.acks));
        records += 1;
    }
    pending
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
    let batch_max = config.batch_max;
    let mut upkeep = Upkeep::new(config);
    while let Some(first) = rx.blocking_recv() {
        let pending = take_batch(first, &mut rx, batch_max);
        upkeep.before_commit(&mut db, &stats);
        let Some(ids) = commit(&mut db, &pending.batch, &stats, &stopping, &mut upkeep) else {
            continue;
        };
        for ack in pending.acks {
            let _ = ack.send(());
        }
        let done = Instant::now();
        stats.record_latencies(pending.received.iter().map(|r| {
            done.duration_since(*r)
                .as_micros()
                .min(u128::from(u32::MAX)) as u32
        }));
        stats.events_committed.fetch_add(
            pending.batch.events.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        publish(&pending.batch, &ids, &committed);
    }
    tracing::debug!("store writer finished");
}

/// Hands the committed events to the subscribers (stdout, the live stream, sinks' wake-ups).
fn publish(
    batch: &Batch,
    ids: &alarm_center_store::WriteResult,
    committed: &broadcast::Sender<Committed>,
) {
    if batch.events.is_empty() || committed.receiver_count() == 0 {
        return;
    }
    let events = batch
        .events
        .iter()
        .zip(&ids.event_ids)
        .map(|(e, id)| {
            StoredEvent::from_new(
                *id,
                e,
                e.frame
                    .in_batch()
                    .and_then(|i| ids.frame_ids.get(i).copied()),
            )
        })
        .collect();
    let _ = committed.send(Arc::new(events));
}

/// The writer's housekeeping: retention (every [`RETENTION_EVERY`], before a commit when the store is
/// over its size or the file system under its free-space reserve, and at once while commits fail),
/// and how long the store has failed at shutdown.
struct Upkeep {
    config: WriterConfig,
    last_retention: Option<Instant>,
    last_recovery: Option<Instant>,
    last_space_warning: Option<Instant>,
    last_unmet_warning: Option<Instant>,
    /// The last pass could not bring the size down and deleted nothing: the next early pass waits
    /// [`STUCK_RETRY_EVERY`].
    stuck: bool,
    /// When commits first failed after shutdown began; past [`GIVE_UP_AT_SHUTDOWN`] batches that fail
    /// are given up at once.
    failing_at_shutdown: Option<Instant>,
    /// What retention deleted since it was last logged, and when that was.
    deleted_since_log: RetentionReport,
    last_deleted_log: Option<Instant>,
}

/// Least time between two "retention deleted" lines.
const DELETED_LOG_EVERY: Duration = Duration::from_secs(10);

impl Upkeep {
    fn new(config: WriterConfig) -> Upkeep {
        Upkeep {
            config,
            last_retention: None,
            last_recovery: None,
            last_space_warning: None,
            last_unmet_warning: None,
            stuck: false,
            failing_at_shutdown: None,
            deleted_since_log: RetentionReport::default(),
            last_deleted_log: None,
        }
    }

    /// Before each commit: retention when due, or at once when the store is over its size limit or
    /// the disk under its reserve. The look costs a `statvfs`, a file size and three pragmas; checking
    /// every commit keeps the store from ever taking the last of the disk itself (once the write-ahead
    /// log needs the database file to grow and the disk is full, neither a checkpoint nor retention
    /// can run until space comes back).
    fn before_commit(&mut self, db: &mut Db, stats: &Stats) {
        if self
            .last_retention
            .is_none_or(|t| t.elapsed() >= RETENTION_EVERY)
        {
            let target = self.space_target(db);
            self.retention(db, stats, target);
            return;
        }
        if self.stuck
            && self
                .last_retention
                .is_some_and(|t| t.elapsed() < STUCK_RETRY_EVERY)
        {
            return;
        }
        let target = self.space_target(db);
        if target.is_some() || self.over_size_limit(db) {
            self.retention(db, stats, target);
        }
    }

    /// While commits fail: gives the write-ahead log's disk space back and runs retention at once (at
    /// most every [`RECOVER_EVERY`]).
    fn on_failure(&mut self, db: &mut Db, stats: &Stats) {
        if self
            .last_recovery
            .is_some_and(|t| t.elapsed() < RECOVER_EVERY)
        {
            return;
        }
        self.last_recovery = Some(Instant::now());
        match db.checkpoint_truncate() {
            Ok(true) => tracing::debug!("write-ahead log checkpointed and truncated"),
            Ok(false) => tracing::debug!("write-ahead log not truncated: readers still use it"),
            Err(e) => tracing::debug!(error = %e, "write-ahead log not truncated"),
        }
        let target = self.space_target(db);
        self.retention(db, stats, target);
    }

    /// True when the store is over `store.max-size-mb` (pages in use plus the write-ahead log).
    fn over_size_limit(&self, db: &Db) -> bool {
        self.config
            .retention
            .max_bytes
            .is_some_and(|max| db.size_bytes().is_ok_and(|size| size > max))
    }

    /// The size, in bytes, that retention must bring the store down to for the free-space reserve:
    /// its size less what the file system lacks beyond the store's own free pages (new rows take
    /// those first). `None` when the reserve is met, not watched, or cannot be read.
    fn space_target(&mut self, db: &Db) -> Option<u64> {
        let reserve = self.config.min_free_bytes?;
        let available = match alarm_center_store::available_bytes(&self.config.data_dir) {
            Ok(bytes) => bytes,
            Err(e) => {
                if self.warn_now(Warning::Space) {
                    tracing::warn!(dir = %self.config.data_dir.display(), error = %e, "cannot read the free space of the data directory's file system");
                }
                return None;
            }
        };
        let inside = db.free_page_bytes().unwrap_or(0);
        let short = reserve.saturating_sub(available.saturating_add(inside));
        if short == 0 {
            return None;
        }
        if self.warn_now(Warning::Space) {
            tracing::warn!(
                available_mb = available / MB,
                free_pages_mb = inside / MB,
                min_free_mb = reserve / MB,
                "free space on the data directory's file system is below store.min-free-mb: retention runs now \
                 and deletes the oldest frames, dead letters, then events (never the newest {} events, nor \
                 undelivered ones) until the store's free pages make up the difference",
                alarm_center_store::SIZE_KEEPS_EVENTS
            );
        }
        Some(db.size_bytes().ok()?.saturating_sub(short))
    }

    /// One retention pass; `space_target` (bytes) tightens the size limit for the free-space reserve.
    fn retention(&mut self, db: &mut Db, stats: &Stats, space_target: Option<u64>) {
        self.last_retention = Some(Instant::now());
        Stats::inc(&stats.retention_runs);
        let policy = self.policy(db, space_target);
        match db.apply_retention(&policy, crate::time::now_ms()) {
            Ok(report) => {
                self.stuck = report.size_unmet.is_some() && report.deleted() == 0;
                self.log_report(&report);
            }
            Err(e) => tracing::warn!(error = %e, "retention failed"),
        }
    }

    /// The configured policy with the sinks' cursors and the free-space target applied.
    fn policy(&self, db: &Db, space_target: Option<u64>) -> Retention {
        let mut policy = self.config.retention;
        if !self.config.sinks.is_empty() {
            let lowest = db
                .min_sink_position(&self.config.sinks)
                .ok()
                .flatten()
                .or(Some(0));
            if self.config.drop_undelivered {
                policy.undelivered_after = lowest;
            } else {
                policy.keep_events_after = lowest;
            }
        }
        if let Some(target) = space_target {
            policy.max_bytes = Some(policy.max_bytes.map_or(target, |max| max.min(target)));
        }
        policy
    }

    /// Logs what retention did, summed over at most [`DELETED_LOG_EVERY`] (under space pressure it
    /// runs several times a second), and warns when a size limit cannot be met.
    fn log_report(&mut self, r: &RetentionReport) {
        let sum = &mut self.deleted_since_log;
        sum.events += r.events;
        sum.frames += r.frames;
        sum.dead_letters += r.dead_letters;
        sum.dropped_undelivered += r.dropped_undelivered;
        sum.kept_undelivered = r.kept_undelivered;
        let due = self
            .last_deleted_log
            .is_none_or(|t| t.elapsed() >= DELETED_LOG_EVERY);
        if due && sum.deleted() + sum.kept_undelivered + sum.dropped_undelivered > 0 {
            self.last_deleted_log = Some(Instant::now());
            let sum = std::mem::take(&mut self.deleted_since_log);
            tracing::info!(
                events = sum.events,
                frames = sum.frames,
                dead_letters = sum.dead_letters,
                kept_undelivered = sum.kept_undelivered,
                dropped_undelivered = sum.dropped_undelivered,
                "retention deleted old records"
            );
        }
        if let Some(unmet) = &r.size_unmet {
            if self.warn_now(Warning::SizeUnmet) {
                tracing::warn!(
                    size_mb = unmet.size_bytes / MB,
                    limit_mb = unmet.max_bytes / MB,
                    "the store cannot be brought under its size limit (store.max-size-mb, or what the \
                     free-space reserve store.min-free-mb leaves): {}",
                    unmet.reason
                );
            }
        }
    }

    /// True (and remembered) when a warning of this kind was not logged for [`WARN_EVERY`].
    fn warn_now(&mut self, kind: Warning) -> bool {
        let last = match kind {
            Warning::Space => &mut self.last_space_warning,
            Warning::SizeUnmet => &mut self.last_unmet_warning,
        };
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// Rate-limited warnings.
#[derive(Clone, Copy)]
enum Warning {
    Space,
    SizeUnmet,
}

/// Bytes per megabyte.
const MB: u64 = 1024 * 1024;

/// How long a failing store may hold up shutdown, counted once from the first failure after shutdown
/// began (not per batch): past it every batch that fails is given up (and counted), so that the
/// process stops within seconds.
const GIVE_UP_AT_SHUTDOWN: Duration = Duration::from_secs(10);

/// Commits a batch, retrying until it succeeds: events are never dropped while the server runs; while
/// the store fails, ingest slows down through the bounded channel instead, the server is not ready
/// (`/readyz` 503), and each retry first gives the write-ahead log back and runs retention. Only at
/// shutdown, once the store has failed for [`GIVE_UP_AT_SHUTDOWN`], is the batch given up (`None`).
fn commit(
    db: &mut Db,
    batch: &Batch,
    stats: &Stats,
    stopping: &CancellationToken,
    upkeep: &mut Upkeep,
) -> Option<alarm_center_store::WriteResult> {
    let mut delay = Duration::from_millis(50);
    loop {
        let error = match db.write(batch) {
            Ok(ids) => {
                upkeep.failing_at_shutdown = None;
                if stats.clear_store_failure() {
                    tracing::info!("store writes succeed again: ready");
                }
                return Some(ids);
            }
            Err(e) => e,
        };
        Stats::inc(&stats.store_errors);
        stats.set_store_failure(error.to_string());
        if stopping.is_cancelled() {
            let since = *upkeep.failing_at_shutdown.get_or_insert_with(Instant::now);
            if since.elapsed() >= GIVE_UP_AT_SHUTDOWN {
                stats.events_discarded.fetch_add(
                    batch.events.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tracing::error!(error = %error, events = batch.events.len(), frames = batch.frames.len(), "store still failing at shutdown: these records are lost");
                return None;
            }
        }
        tracing::error!(error = %error, retry_in = ?delay, records = batch.events.len() + batch.frames.len(), "store write failed (not ready); retrying after retention");
        upkeep.on_failure(db, stats);
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(5));
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

pub(crate) fn spawn_checkpointer(db: Db) -> Result<Checkpointer, crate::IngestError> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            let mut last_warning: Option<Instant> = None;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = db.checkpoint() {
                    // A full disk fails every checkpoint: say so once a minute, not twice a second.
                    if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(error = %e, "checkpoint failed (logged once a minute)");
                    }
                }
                std::thread::park_timeout(CHECKPOINT_EVERY);
            }
        })
        .map_err(|e| crate::IngestError::Internal(format!("cannot start the checkpointer: {e}")))?;
    Ok(Checkpointer { stop, thread })
}
