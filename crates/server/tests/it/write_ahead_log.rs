//! The write-ahead log under a steady stream of commits. SQLite starts the log again from its
//! beginning only when a write begins with all of it copied into the database; a checkpointer in the
//! background never catches the last commit while commits keep coming, and the log grew with
//! everything written (gigabytes a minute at full rate, counted against `store.max-size-mb`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;

/// A DHIP alarm of device `serial` carrying `pad` bytes of data.
fn alarm(serial: &str, index: usize, pad: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"Code":"VideoMotion","Action":"Pulse","Index":{index},"SerialNo":"{serial}","Data":{{"Pad":"{}"}}}}"#,
        "p".repeat(pad)
    );
    encode::dhip(1, index as u32, &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_under_a_steady_stream_of_commits() {
    const SENDERS: usize = 4;
    const ALARMS: usize = 2_000;
    // Each alarm is written twice (the raw frame and the event's data), ~16 KiB: ~130 MB in all.
    const PAD: usize = 8 * 1024;
    let mut server = start(|_| {}).await;
    let wal = server.dir.path().join("alarm-center.db-wal");
    let done = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, largest, wal) = (done.clone(), largest.clone(), wal.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(meta) = std::fs::metadata(&wal) {
                    largest.fetch_max(meta.len(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut senders = Vec::new();
    for k in 0..SENDERS {
        let mut stream = server.connect().await;
        senders.push(tokio::spawn(async move {
            for i in 0..ALARMS {
                send(&mut stream, &alarm(&format!("WAL{k}"), i, PAD)).await;
            }
            stream
        }));
    }
    // The device-online events come too.
    let events = server
        .events(SENDERS * ALARMS + SENDERS, Duration::from_secs(120))
        .await;
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    for sender in senders {
        drop(sender.await.unwrap());
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.code == "VideoMotion")
            .count(),
        SENDERS * ALARMS
    );
    let largest = largest.load(Ordering::Relaxed);
    // The writer restarts the log past 32 MiB; 64 MiB is its `journal_size_limit`.
    assert!(
        largest <= 64 * 1024 * 1024,
        "the write-ahead log grew to {} MiB",
        largest / (1024 * 1024)
    );
}

/// Alarms arriving within `store.commit-interval` of a commit wait for the next one and go together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_within_the_commit_interval_share_a_transaction() {
    const ALARMS: usize = 50;
    let mut t = start(|c| c.store.commit_interval = Duration::from_secs(2)).await;
    let stats = t.server.stats();
    let commits = || alarm_center_server::Stats::get(&stats.store_commits);
    let mut stream = t.connect().await;
    // The first alarm after a quiet spell is committed at once (with its device coming online).
    send(&mut stream, &alarm("GROUP1", 0, 16)).await;
    t.events(2, Duration::from_secs(10)).await;
    let before = commits();
    // The next ones, 5 ms apart (each would be committed alone without the interval), arrive
    // within the interval: they wait for one commit.
    for i in 1..=ALARMS {
        send(&mut stream, &alarm("GROUP1", i, 16)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.events(ALARMS, Duration::from_secs(30)).await;
    let used = commits() - before;
    assert!(
        used <= 2,
        "{ALARMS} alarms sent 5 ms apart took {used} commits"
    );
}

/// `store.page-size` is the page size of the store the server creates (D67); an existing store keeps
/// its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_created_with_the_configured_page_size() {
    let page_size = |dir: &std::path::Path| {
        alarm_center_store::Db::open_read_only(dir)
            .unwrap()
            .page_size()
            .unwrap()
    };
    let mut t = start(|_| {}).await;
    let mut stream = t.connect().await;
    send(&mut stream, &alarm("PAGE1", 0, 16)).await;
    t.events(2, Duration::from_secs(10)).await;
    assert_eq!(page_size(t.dir.path()), 16 * 1024);

    let mut t = start(|c| c.store.page_size = 4096).await;
    let mut stream = t.connect().await;
    send(&mut stream, &alarm("PAGE2", 0, 16)).await;
    t.events(2, Duration::from_secs(10)).await;
    assert_eq!(page_size(t.dir.path()), 4096);
}
