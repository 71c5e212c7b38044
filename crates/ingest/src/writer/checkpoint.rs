//! The checkpointer: the write-ahead log is copied into the database on a connection of its own.

use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::Db;
use tokio::time::Instant;

use super::upkeep::WARN_EVERY;

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
