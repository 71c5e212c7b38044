//! The writer between records: a timed receive on the ingest channel, and the steps of an addition
//! to the per-device index taken while nothing comes (D70).

use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::Db;
use tokio::sync::mpsc;

use super::{LogKeeper, Record};

/// Waits for the next record (`None` once the channel is closed and empty). When none has come for
/// [`IDLE`] and an addition to the per-device index is under way or due, it goes on a step at a
/// time (D70): otherwise the events of a burst would wait for the next write to be added, and
/// queries by device would scan them in the events table meanwhile. Under a stream of records
/// nothing changes: the steps follow the writes.
pub(super) fn next_record(
    rx: &mut mpsc::Receiver<Record>,
    db: &mut Db,
    log_keeper: &LogKeeper,
) -> Option<Record> {
    loop {
        let Some(due_in) = db.device_index_due_in() else {
            return rx.blocking_recv();
        };
        if let Some(record) = recv_timeout(rx, due_in.max(IDLE)) {
            return record;
        }
        let log_pages = db.add_to_device_index_while_idle();
        log_keeper.after_commit(db, log_pages);
    }
}

/// How long the writer waits for a record before it takes a step of an addition to the per-device
/// index on its own: longer than the gaps of a stream, short enough that an addition of 16,384
/// events (eight steps) completes in about a tenth of a second once the stream stops.
const IDLE: Duration = Duration::from_millis(10);

/// [`mpsc::Receiver::blocking_recv`] for at most `timeout`: `None` when it elapsed first. The
/// channel wakes this thread through the waker; no runtime (nor its timer) is needed, so that the
/// writer does not depend on one still running.
fn recv_timeout(rx: &mut mpsc::Receiver<Record>, timeout: Duration) -> Option<Option<Record>> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let deadline = std::time::Instant::now() + timeout;
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(record) = rx.poll_recv(&mut context) {
            return Some(record);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        // Woken by the channel, at the deadline, or spuriously: the channel is polled again.
        std::thread::park_timeout(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_receive_returns_at_its_deadline_or_with_what_comes_first() {
        let (tx, mut rx) = mpsc::channel(4);
        // Nothing comes: back after the timeout.
        let started = std::time::Instant::now();
        assert!(recv_timeout(&mut rx, Duration::from_millis(30)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(30));
        // A record sent by another thread while it waits wakes it.
        let sender = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                tx.blocking_send(Record::Forget(vec![])).unwrap();
            })
        };
        let got = recv_timeout(&mut rx, Duration::from_secs(60));
        assert!(matches!(got, Some(Some(Record::Forget(_)))), "{got:?}");
        sender.join().unwrap();
        // A closed channel answers at once.
        drop(tx);
        let started = std::time::Instant::now();
        assert!(matches!(
            recv_timeout(&mut rx, Duration::from_secs(60)),
            Some(None)
        ));
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
