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

/// Length of the log, in 4 KiB pages, past which the writer asks the checkpointer for a pass.
const COPY_AT_PAGES: u32 = 4096;
/// Most pages left uncopied that the writer copies itself to start the log again.
const FINISH_AT_MOST_PAGES: u32 = 1024;
/// Length of the log past which the writer copies whatever is left itself (the bound on its size).
const RESTART_AT_PAGES: u32 = 8192;

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
    /// of a checkpoint) held commits for 20–70 ms. So past [`COPY_AT_PAGES`] the writer wakes the
    /// checkpointer, which copies the bulk while commits go on, and finishes the copy itself only once
    /// at most [`FINISH_AT_MOST_PAGES`] are left. Past [`RESTART_AT_PAGES`] (under the 64 MiB
    /// `journal_size_limit`, so the file is reused rather than truncated) it copies whatever is left
    /// whoever is slow. A checkpoint busy in the other thread, or a reader still on an old snapshot,
    /// only defers it to a later commit. (Waking the checkpointer at every commit past 4 MiB, with
    /// no pause between log restarts, kept commits short too, but its continual checkpoints tripled
    /// the MQTT sink's delivery latency at 20,000 events/s: D51, D55.)
    pub(crate) fn after_commit(&self, db: &Db, log_pages: Option<u32>) {
        let Some(log) = log_pages else { return };
        let copied = self.shared.copied.load(Ordering::Relaxed);
        match next_step(log, copied) {
            Step::Nothing => {}
            Step::Wake => self.checkpointer.unpark(),
            Step::Finish => self.finish(db, log >= RESTART_AT_PAGES),
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
fn next_step(log: u32, copied: u32) -> Step {
    let copied = if copied > log { 0 } else { copied };
    if log < COPY_AT_PAGES {
        Step::Nothing
    } else if log - copied <= FINISH_AT_MOST_PAGES || log >= RESTART_AT_PAGES {
        Step::Finish
    } else {
        Step::Wake
    }
}

#[cfg(test)]
mod tests {
    use super::{next_step, Step, COPY_AT_PAGES, FINISH_AT_MOST_PAGES, RESTART_AT_PAGES};

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
