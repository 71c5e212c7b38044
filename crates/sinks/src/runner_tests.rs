//! The runner with a destination that keeps events in flight (returns fewer outcomes than events
//! without a failure), against a real store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alarm_center_store::{Batch, Db, FrameRef, NewEvent, StoredEvent, SyncMode};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Destination, Outcome, Runner};

/// Settles one event per call, the oldest it was offered, and notes each call's offer.
struct OneAtATime {
    offers: Arc<Mutex<Vec<Vec<i64>>>>,
}

impl Destination for OneAtATime {
    async fn deliver(&mut self, events: &[StoredEvent]) -> (Vec<Outcome>, Option<String>) {
        self.offers
            .lock()
            .unwrap()
            .push(events.iter().map(|e| e.id).collect());
        if events.is_empty() {
            return (Vec::new(), None);
        }
        // Something is in flight: a moment passes before the oldest is acknowledged.
        tokio::time::sleep(Duration::from_millis(5)).await;
        (vec![Outcome::Delivered], None)
    }
}

fn alarm(n: i64) -> NewEvent {
    NewEvent {
        frame: FrameRef::None,
        device: "SN1".into(),
        code: format!("Code{n}"),
        action: "start".into(),
        index: Some(0),
        channel: None,
        channel_name: None,
        kind: "alarm".into(),
        device_time: None,
        received_at: 1_700_000_000_000 + n,
        data: None,
        synthetic: None,
    }
}

fn append(db: &mut Db, events: impl IntoIterator<Item = i64>) {
    let batch = Batch {
        events: events.into_iter().map(alarm).collect(),
        ..Batch::default()
    };
    db.write(&batch).unwrap();
}

#[tokio::test]
async fn events_in_flight_are_offered_again_first_and_new_ones_join_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), SyncMode::Normal).unwrap();
    let (wake, listener) = broadcast::channel(16);
    let shutdown = CancellationToken::new();
    let runner = Runner::open(
        "test",
        dir.path(),
        Default::default(),
        listener,
        shutdown.clone(),
        Duration::from_secs(60),
    )
    .unwrap();
    append(&mut db, 1..=3);
    let _ = wake.send(Arc::new(Vec::new()));
    let offers = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn(runner.run(OneAtATime {
        offers: offers.clone(),
    }));
    // While the first three are being worked through, three more are committed.
    tokio::time::sleep(Duration::from_millis(7)).await;
    append(&mut db, 4..=6);
    let _ = wake.send(Arc::new(Vec::new()));
    let delivered = || db_delivered(dir.path());
    for _ in 0..200 {
        if offers.lock().unwrap().iter().any(|o| o.first() == Some(&6)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    let offers = offers.lock().unwrap().clone();
    // Every offer starts with the oldest event not yet settled: 1, 2, 3, … in turn, each once.
    let firsts: Vec<i64> = offers.iter().filter_map(|o| o.first().copied()).collect();
    let ids: Vec<i64> = firsts.iter().copied().take(6).collect();
    assert_eq!(ids.len(), 6, "{offers:?}");
    let first_id = ids[0];
    assert_eq!(
        ids,
        (first_id..first_id + 6).collect::<Vec<_>>(),
        "{offers:?}"
    );
    // The events committed meanwhile joined an offer while older ones were still in flight (without
    // the top-up the runner offered 4–6 only once 1–3 were all settled).
    let (old, new) = (first_id + 2, first_id + 3);
    assert!(
        offers.iter().any(|o| o.contains(&old) && o.contains(&new)),
        "new events were not offered alongside those in flight: {offers:?}"
    );
    assert_eq!(delivered(), 6);
}

/// The sink's delivered count as saved in the store.
fn db_delivered(dir: &std::path::Path) -> u64 {
    let db = Db::open(dir, SyncMode::Normal).unwrap();
    db.sink_cursor("test").unwrap().map_or(0, |c| c.delivered)
}
