//! `[sinks.stdout]` (`serve --stdout`): every event committed while the server runs, as one JSON line
//! on standard output, in log order and none missing. It runs on a thread of its own, so a reader that
//! does not keep up blocks this thread, not the runtime's workers. The writer's broadcast brings the
//! events; whatever it could not keep for this sink (a reader that fell more than the broadcast's
//! capacity behind) is read back from the store, and so is whatever was committed after the broadcast's
//! last message at shutdown.

use std::io::Write;
use std::path::PathBuf;

use alarm_center_store::{Db, EventQuery, StoredEvent};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::Committed;

/// Events read back from the store at a time.
const READ_BACK: u32 = 1000;

/// Starts the sink; it prints the events after `after` (the log's end at start) until the broadcast
/// closes, then what is left in the store, and ends.
pub fn spawn(
    rx: broadcast::Receiver<Committed>,
    data_dir: PathBuf,
    after: i64,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stdout-sink".into())
        .spawn(move || {
            let stdout = std::io::stdout();
            let mut sink = StdoutSink {
                out: stdout.lock(),
                data_dir,
                db: None,
                printed: after,
            };
            if let Err(e) = sink.run(rx) {
                tracing::warn!(error = %e, "stdout sink stopped: standard output is closed or failing");
            }
        })
}

struct StdoutSink<W: Write> {
    out: W,
    data_dir: PathBuf,
    /// Opened the first time events must be read back.
    db: Option<Db>,
    /// The last event id printed.
    printed: i64,
}

impl<W: Write> StdoutSink<W> {
    fn run(&mut self, mut rx: broadcast::Receiver<Committed>) -> std::io::Result<()> {
        loop {
            match rx.blocking_recv() {
                Ok(batch) => {
                    if let Some(first) = batch.first() {
                        if first.id > self.printed + 1 {
                            self.read_back(first.id - 1)?;
                        }
                    }
                    self.print(&batch)?;
                }
                // The gap shows with the next batch (or at the end) and is read back then.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return self.read_back(i64::MAX),
            }
        }
    }

    fn print(&mut self, events: &[StoredEvent]) -> std::io::Result<()> {
        for event in events {
            if event.id <= self.printed {
                continue;
            }
            serde_json::to_writer(&mut self.out, event)?;
            self.out.write_all(b"\n")?;
            self.printed = event.id;
        }
        self.out.flush()
    }

    /// Prints the events after the last printed one up to `until` from the store.
    fn read_back(&mut self, until: i64) -> std::io::Result<()> {
        loop {
            let query = EventQuery {
                after_id: Some(self.printed),
                before_id: until.checked_add(1),
                limit: Some(READ_BACK),
                ascending: true,
                ..EventQuery::default()
            };
            let events = match self.store().and_then(|db| db.events(&query)) {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, after = self.printed, "stdout sink cannot read back from the store: events are missing on standard output (they are in the store)");
                    return Ok(());
                }
            };
            if events.is_empty() {
                return Ok(());
            }
            self.print(&events)?;
        }
    }

    fn store(&mut self) -> alarm_center_store::Result<&Db> {
        let db = match self.db.take() {
            Some(db) => db,
            None => Db::open_read_only(&self.data_dir)?,
        };
        Ok(self.db.insert(db))
    }
}
