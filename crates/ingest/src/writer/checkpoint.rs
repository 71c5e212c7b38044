//! The write-ahead log: copied into the database by a checkpointer thread on a connection of its own,
//! and started again from its beginning by the writer, which only finishes the copy.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::Db;
use tokio::time::Instant;

use super::upkeep::WARN_EVERY;

/// How often the write-ahead log is checkpointed when the writer does not ask sooner.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Length of the log, bytes, past which the writer asks the checkpointer for a pass.
const COPY_AT_BYTES: u32 = 16 * 1024 * 1024;
/// Most bytes left uncopied that the writer copies itself to start the log again.
const FINISH_AT_MOST_BYTES: u32 = 4 * 1024 * 1024;
/// Length of the log past which the writer copies whatever is left itself (the bound on its size).
const RESTART_AT_BYTES: u32 = 32 * 1024 * 1024;

/// The log's thresholds in pages of one store (SQLite counts the log in pages, whose size is the
/// store's: 4 KiB in stores created before D67, 16 KiB since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    copy_at: u32,
    finish_at_most: u32,
    restart_at: u32,
}

impl Limits {
    fn for_page_size(page_size: u32) -> Limits {
        let page_size = page_size.max(1);
        Limits {
            copy_at: COPY_AT_BYTES / page_size,
            finish_at_most: FINISH_AT_MOST_BYTES / page_size,
            restart_at: RESTART_AT_BYTES / page_size,
        }
    }
}

/// Tries, 1 ms apart, of a writer at the log's bound while a pass of the checkpointer is under way.
const TRIES_AT_BOUND: u32 = 100;

/// What the writer and the checkpointer thread share.
struct Shared {
    stop: AtomicBool,
    /// Pages of the log copied into the database, as of the checkpointer's last pass (0 once the
    /// writer has finished a copy: the log starts again).
    copied: AtomicU32,
}

/// The checkpointer thread, stopped with [`Checkpointer::stop`].
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<()>,
}

/// The writer's side: keeps the log short without copying much of it itself.
pub(crate) struct LogKeeper {
    shared: Arc<Shared>,
    checkpointer: std::thread::Thread,
    limits: Limits,
}

impl Checkpointer {
    /// Stops the thread (the writer's connection checkpoints what is left when it closes).
    pub(crate) fn stop(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// Starts the checkpointer on `db`; the writer keeps the [`LogKeeper`].
pub(crate) fn spawn_checkpointer(db: Db) -> Result<(Checkpointer, LogKeeper), crate::IngestError> {
    let limits = Limits::for_page_size(db.page_size()?);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        copied: AtomicU32::new(0),
    });
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_until_stopped(&db, &shared))
            .map_err(|e| {
                crate::IngestError::Internal(format!("cannot start the checkpointer: {e}"))
            })?
    };
    let keeper = LogKeeper {
        shared: shared.clone(),
        checkpointer: thread.thread().clone(),
        limits,
    };
    Ok((Checkpointer { shared, thread }, keeper))
}

fn checkpoint_until_stopped(db: &Db, shared: &Shared) {
    let mut last_warning: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        match db.checkpoint() {
            Ok((_, copied)) => {
                shared
                    .copied
                    .store(u32::try_from(copied).unwrap_or(0), Ordering::Relaxed);
            }
            Err(e) => {
                // A full disk fails every checkpoint: say so once a minute, not twice a second.
                if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(error = %e, "checkpoint failed (logged once a minute)");
                }
            }
        }
        std::thread::park_timeout(CHECKPOINT_EVERY);
    }
}

impl LogKeeper {
    /// Called by the writer after each commit, with the log's length then (`WriteResult::log_pages`).
    ///
    /// SQLite starts the log again from its beginning only when a write begins with every frame of
    /// it copied into the database. The checkpointer's passes never catch the last commit under a
    /// steady stream of them, and the log grew by gigabytes a minute (each new page of the file
    /// costing the kernel a fresh page to zero); so the copy has to be finished between two
    /// transactions, by the writer. Finishing all of it there (up to 32 MiB, with the two `fsync`s
    /// of a checkpoint) held commits for 20–70 ms. So past [`COPY_AT_BYTES`] the writer wakes the
    /// checkpointer, which copies the bulk while commits go on, and finishes the copy itself only once
    /// at most [`FINISH_AT_MOST_BYTES`] are left. Past [`RESTART_AT_BYTES`] (under the 64 MiB
    /// `journal_size_limit`, so the file is reused rather than truncated) it copies whatever is left
    /// whoever is slow. A checkpoint busy in the other thread, or a reader still on an old snapshot,
    /// only defers it to a later commit. (Waking the checkpointer at every commit past 4 MiB, with
    /// no pause between log restarts, kept commits short too, but its continual checkpoints tripled
    /// the MQTT sink's delivery latency at 20,000 events/s: D51, D55.)
    pub(crate) fn after_commit(&self, db: &Db, log_pages: Option<u32>) {
        let Some(log) = log_pages else { return };
        let copied = self.shared.copied.load(Ordering::Relaxed);
        match next_step(log, copied, self.limits) {
            Step::Nothing => {}
            Step::Wake => self.checkpointer.unpark(),
            Step::Finish => self.finish(db, log >= self.limits.restart_at),
        }
    }

    /// Copies what is left of the log. At its bound, a pass of the checkpointer under way (the copy
    /// is then busy) is waited for ([`TRIES_AT_BOUND`] ms at most) rather than letting the log grow on.
    fn finish(&self, db: &Db, at_bound: bool) {
        let tries = if at_bound { TRIES_AT_BOUND } else { 1 };
        for _ in 0..tries {
            match db.checkpoint() {
                // -1: another connection is checkpointing.
                Ok((-1, _)) => std::thread::sleep(Duration::from_millis(1)),
                Ok((log, copied)) => {
                    if log == copied {
                        // The next write starts the log again: what the checkpointer copied of it
                        // is past.
                        self.shared.copied.store(0, Ordering::Relaxed);
                    }
                    tracing::trace!(log, copied, "write-ahead log checkpointed by the writer");
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "write-ahead log not checkpointed by the writer");
                    return;
                }
            }
        }
    }
}

/// What the writer does about the log after a commit.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Nothing,
    /// Ask the checkpointer for a pass.
    Wake,
    /// Checkpoint itself (the next write starts the log again).
    Finish,
}

/// The writer's step for a log of `log` pages of which the checkpointer's last pass had copied
/// `copied` (more than `log` when that pass was before the log started again: nothing copied).
fn next_step(log: u32, copied: u32, limits: Limits) -> Step {
    let copied = if copied > log { 0 } else { copied };
    if log < limits.copy_at {
        Step::Nothing
    } else if log - copied <= limits.finish_at_most || log >= limits.restart_at {
        Step::Finish
    } else {
        Step::Wake
    }
}

#[cfg(test)]
mod tests {
    use super::{Limits, Step};

    /// The limits of a store of 4 KiB pages (what these tests were written for).
    const SMALL: Limits = Limits {
        copy_at: 4096,
        finish_at_most: 1024,
        restart_at: 8192,
    };
    const COPY_AT_PAGES: u32 = SMALL.copy_at;
    const FINISH_AT_MOST_PAGES: u32 = SMALL.finish_at_most;
    const RESTART_AT_PAGES: u32 = SMALL.restart_at;

    fn next_step(log: u32, copied: u32) -> Step {
        super::next_step(log, copied, SMALL)
    }

    #[test]
    fn the_limits_are_the_same_bytes_whatever_the_page_size() {
        assert_eq!(Limits::for_page_size(4096), SMALL);
        let large = Limits::for_page_size(16 * 1024);
        assert_eq!(
            (large.copy_at, large.finish_at_most, large.restart_at),
            (1024, 256, 2048)
        );
        let (smallest, largest) = (Limits::for_page_size(512), Limits::for_page_size(65_536));
        assert_eq!((smallest.copy_at, smallest.restart_at), (32_768, 65_536));
        assert_eq!((largest.copy_at, largest.restart_at), (256, 512));
    }

    #[test]
    fn a_short_log_is_left_alone() {
        assert_eq!(next_step(0, 0), Step::Nothing);
        assert_eq!(next_step(COPY_AT_PAGES - 1, 0), Step::Nothing);
        assert_eq!(
            next_step(COPY_AT_PAGES - 1, COPY_AT_PAGES - 1),
            Step::Nothing
        );
    }

    #[test]
    fn the_checkpointer_copies_the_bulk_of_a_long_log() {
        // The writer's own copy held commits 20-70 ms when it did all of it.
        assert_eq!(next_step(COPY_AT_PAGES, 0), Step::Wake);
        assert_eq!(next_step(RESTART_AT_PAGES - 1, 0), Step::Wake);
        let log = COPY_AT_PAGES + 2 * FINISH_AT_MOST_PAGES;
        assert_eq!(next_step(log, log - FINISH_AT_MOST_PAGES - 1), Step::Wake);
    }

    #[test]
    fn the_writer_finishes_a_copy_that_is_nearly_done() {
        let log = COPY_AT_PAGES + 2 * FINISH_AT_MOST_PAGES;
        assert_eq!(next_step(log, log - FINISH_AT_MOST_PAGES), Step::Finish);
        assert_eq!(next_step(log, log), Step::Finish);
    }

    #[test]
    fn the_writer_copies_whatever_is_left_of_a_log_at_its_bound() {
        assert_eq!(next_step(RESTART_AT_PAGES, 0), Step::Finish);
        assert_eq!(next_step(RESTART_AT_PAGES * 4, 0), Step::Finish);
    }

    #[test]
    fn a_pass_from_before_the_log_started_again_counts_as_nothing_copied() {
        assert_eq!(next_step(COPY_AT_PAGES, RESTART_AT_PAGES), Step::Wake);
        assert_eq!(
            next_step(RESTART_AT_PAGES, RESTART_AT_PAGES + 5),
            Step::Finish
        );
    }
}
