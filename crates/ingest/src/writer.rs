//! The store writer: one thread owns the database, takes records from the ingest channel and commits
//! them in batches; committed events are then published to the sinks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::{
    Batch, ConnectionClose, ConnectionIdentified, ConnectionOpen, Db, DeviceRemoval, DeviceUpdate,
    NewEvent, NewFrame, Retention, StoredEvent,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

mod checkpoint;
mod idle;
mod upkeep;

pub(crate) use checkpoint::{spawn_checkpointer, Checkpointer, LogKeeper};
use idle::next_record;
use upkeep::Upkeep;

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
    /// `store.commit-interval`.
    pub(crate) commit_interval: Duration,
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
    /// Records taken, and roughly their bytes (see [`record_bytes`]).
    records: usize,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, record: Record) {
        self.records += 1;
        self.bytes += record_bytes(&record);
        self.received
            .extend(add(&mut self.batch, record, &mut self.acks));
    }

    /// Whether the batch holds `batch_max` records or about [`BATCH_MAX_BYTES`].
    fn full(&self, batch_max: usize) -> bool {
        self.records >= batch_max || self.bytes >= BATCH_MAX_BYTES
    }

    /// Adds whatever is waiting in the channel until the batch is [`full`](Pending::full).
    fn fill(&mut self, rx: &mut mpsc::Receiver<Record>, batch_max: usize) {
        while !self.full(batch_max) {
            let Ok(record) = rx.try_recv() else { break };
            self.push(record);
        }
    }
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

/// Longest sleep of the writer while it gathers records for a commit (see `store.commit-interval`).
const WAIT_STEP: Duration = Duration::from_millis(1);

/// Runs the writer until the channel closes (every sender dropped), committing what remains.
pub(crate) fn run(
    mut db: Db,
    mut rx: mpsc::Receiver<Record>,
    config: WriterConfig,
    stats: Arc<Stats>,
    committed: broadcast::Sender<Committed>,
    stopping: CancellationToken,
    log_keeper: LogKeeper,
) {
    let batch_max = config.batch_max;
    let interval = config.commit_interval;
    let mut upkeep = Upkeep::new(config);
    let mut last_commit: Option<Instant> = None;
    while let Some(first) = next_record(&mut rx, &mut db, &log_keeper) {
        let mut pending = Pending::default();
        pending.push(first);
        pending.fill(&mut rx, batch_max);
        // Group commit: a commit costs the pages it touches whatever its size (the tail pages of
        // each table, one index page per device), so under a stream of records a transaction every
        // `interval` writes far less than one per record. Not when someone waits for this commit (an
        // HTTP request's answer): such a sender sends nothing more until answered, so waiting would
        // only slow it, and the requests of many senders gather on their own while a commit runs.
        let until = last_commit.map_or_else(Instant::now, |at| at + interval);
        // In steps of at most WAIT_STEP, so that a request arriving meanwhile (behind a record of
        // its connection that waits for nobody) is held that long at most.
        while pending.acks.is_empty() && !pending.full(batch_max) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(WAIT_STEP));
            pending.fill(&mut rx, batch_max);
        }
        last_commit = Some(Instant::now());
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
        Stats::inc(&stats.store_commits);
        stats.events_committed.fetch_add(
            pending.batch.events.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let log_pages = ids.log_pages;
        publish(pending.batch, &ids, &committed);
        log_keeper.after_commit(&db, log_pages);
    }
    tracing::debug!("store writer finished");
}

/// Hands the committed events to the subscribers (stdout, the live stream, sinks' wake-ups); they are
/// moved, not copied.
fn publish(
    batch: Batch,
    ids: &alarm_center_store::WriteResult,
    committed: &broadcast::Sender<Committed>,
) {
    if batch.events.is_empty() || committed.receiver_count() == 0 {
        return;
    }
    let events = batch
        .events
        .into_iter()
        .zip(&ids.event_ids)
        .map(|(e, id)| {
            let frame_id = e
                .frame
                .in_batch()
                .and_then(|i| ids.frame_ids.get(i).copied());
            StoredEvent::from_new(*id, e, frame_id)
        })
        .collect();
    let _ = committed.send(Arc::new(events));
}

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
    // 50 ms, doubling up to 5 s, for as long as it takes.
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build();
    loop {
        let started = Instant::now();
        let error = match db.write(batch) {
            Ok(ids) => {
                stats.record_write(started.elapsed());
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
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        tracing::error!(error = %error, retry_in = ?delay, records = batch.events.len() + batch.frames.len(), "store write failed (not ready); retrying after retention");
        upkeep.on_failure(db, stats);
        std::thread::sleep(delay);
    }
}
