//! The writer's housekeeping: retention, space checks and their rate-limited warnings.

use std::time::Duration;

use alarm_center_store::{Db, Retention, RetentionReport};
use tokio::time::Instant;

use super::WriterConfig;
use crate::stats::Stats;

/// How often retention runs when nothing presses.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// After an early pass that could delete nothing, how long until the next early one.
const STUCK_RETRY_EVERY: Duration = Duration::from_secs(5);
/// Least time between two recoveries (log truncation and retention) while commits fail.
const RECOVER_EVERY: Duration = Duration::from_secs(1);
/// Least time between two warnings of the same kind about space.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(60);

/// The writer's housekeeping: retention (every [`RETENTION_EVERY`], before a commit when the store is
/// over its size or the file system under its free-space reserve, and at once while commits fail),
/// and how long the store has failed at shutdown.
pub(super) struct Upkeep {
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
    pub(super) failing_at_shutdown: Option<Instant>,
    /// What retention deleted since it was last logged, and when that was.
    deleted_since_log: RetentionReport,
    last_deleted_log: Option<Instant>,
}

/// Least time between two "retention deleted" lines.
const DELETED_LOG_EVERY: Duration = Duration::from_secs(10);

impl Upkeep {
    pub(super) fn new(config: WriterConfig) -> Upkeep {
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
    /// the disk under its reserve. The look costs a `statvfs`, plus a file size and three pragmas when
    /// `store.max-size-mb` is set and two pragmas when the disk is short of its reserve; checking every
    /// commit keeps the store from ever taking the last of the disk itself (once the write-ahead log
    /// needs the database file to grow and the disk is full, neither a checkpoint nor retention can
    /// run until space comes back).
    pub(super) fn before_commit(&mut self, db: &mut Db, stats: &Stats) {
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
    pub(super) fn on_failure(&mut self, db: &mut Db, stats: &Stats) {
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
        if available >= reserve {
            // The usual case, checked before every commit: no need to ask the store for its free
            // pages (two pragmas, each prepared anew).
            return None;
        }
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
