//! The server on a file system that fills up: a tmpfs of a few megabytes that each test mounts and
//! unmounts itself (root only; CI runs as root). Where mounting is not permitted the tests say so and
//! pass without running.
//!
//! - A full disk: commits fail, `/readyz` answers 503, retention keeps running, and once space is back
//!   every event is committed and `/readyz` answers 200 again.
//! - A store over `store.max-size-mb` on a disk smaller than its traffic heals itself: retention runs
//!   early and while commits fail, the write-ahead log counts and is truncated, no event is lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_server::Stats;
use alarm_center_store::{Db, EventQuery};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mb` megabytes, or says why not and returns `None`.
    fn mount(size_mb: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs {
                path: dir.path().to_owned(),
                _dir: dir,
            }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a {size_mb} MB tmpfs (mount needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a failed test may leave the server's files open; the mount must not stay behind.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system holding `path` to the last byte with a file at `path`.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let mut byte = [0x5a];
    while file.write_all(&byte).is_ok() {
        byte[0] ^= 1;
    }
}

async fn readyz(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `/readyz` until `done(status, body)`, panicking after [`WAIT`].
async fn readyz_until(base: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = readyz(base).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: /readyz still {status} {body}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A DHIP alarm of device `serial` with `pad` bytes of data.
fn alarm(serial: &str, code: &str, index: usize, pad: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"Code":"{code}","Action":"Pulse","Index":{index},"SerialNo":"{serial}","Data":{{"Pad":"{}"}}}}"#,
        "p".repeat(pad)
    );
    encode::dhip(1, index as u32, &body)
}

/// The indexes of the committed events of `code`, in log order, once there are `n` (panics after
/// [`WAIT`]).
async fn committed_indexes(dir: &Path, code: &str, n: usize) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (dir, wanted) = (dir.to_owned(), code.to_owned());
        let indexes = tokio::task::spawn_blocking(move || {
            let db = Db::open_read_only(&dir).unwrap();
            let events = db
                .events(&EventQuery {
                    code: Some(wanted),
                    ascending: true,
                    limit: Some(100_000),
                    ..Default::default()
                })
                .unwrap();
            events
                .iter()
                .map(|e| e.event.index.unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        if indexes.len() >= n {
            return indexes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} {code} events committed",
            indexes.len()
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_server_unready_runs_retention_and_loses_no_event() {
    let Some(fs) = Tmpfs::mount(16) else { return };
    let data = fs.path.join("data");
    let mut t = start(|c| {
        c.store.data_dir = data.clone();
        c.store.min_free_mb = 1;
    })
    .await;
    let base = format!("http://{}", t.server.api_addr().unwrap());
    let stats = t.server.stats();
    let mut device = t.connect().await;
    for i in 0..10 {
        send(&mut device, &alarm("FULL-1", "Warm", i, 10)).await;
    }
    t.until(WAIT, |e| e.event.code == "Warm" && e.event.index == Some(9))
        .await;
    assert_eq!(readyz(&base).await.0, 200);

    fill(&fs.path.join("ballast"));
    // About 4 MB of events (each ~30 KB of data, in its frame and in the event) on a full disk.
    const BIG: usize = 70;
    let sender = tokio::spawn(async move {
        for i in 0..BIG {
            device
                .write_all(&alarm("FULL-1", "Big", i, 30_000))
                .await
                .unwrap();
        }
        device
    });
    let body = readyz_until(&base, "commits on a full disk", |status, _| status == 503).await;
    assert_eq!(body["ready"], false, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("store writes are failing")),
        "{body}"
    );
    // Retention runs while commits fail (not only after a successful commit).
    let runs = Stats::get(&stats.retention_runs);
    let deadline = tokio::time::Instant::now() + WAIT;
    while Stats::get(&stats.retention_runs) == runs {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retention while failing"
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(readyz(&base).await.0, 503, "still failing");
    assert!(Stats::get(&stats.store_errors) > 0);

    std::fs::remove_file(fs.path.join("ballast")).unwrap();
    readyz_until(&base, "after space came back", |status, _| status == 200).await;
    let _device = sender.await.unwrap();
    let indexes = committed_indexes(&data, "Big", BIG).await;
    assert_eq!(
        indexes,
        (0..BIG as i64).collect::<Vec<_>>(),
        "every event, in order"
    );
    assert_eq!(Stats::get(&stats.events_discarded), 0);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_its_size_limit_on_a_small_disk_heals_itself() {
    // The hostile run: max-size-mb = 8 on a 30 MB disk stalled for good once the write-ahead log had
    // grown. Here 60 MB of junk frames (64 KiB each) with 50 alarms among them go through the same.
    let Some(fs) = Tmpfs::mount(30) else { return };
    let data = fs.path.join("data");
    let t = start(|c| {
        c.store.data_dir = data.clone();
        c.store.max_size_mb = 8;
        c.store.min_free_mb = 4;
    })
    .await;
    let base = format!("http://{}", t.server.api_addr().unwrap());
    let stats = t.server.stats();
    let mut device = t.connect().await;
    const ALARMS: usize = 50;
    const JUNK_PER_ALARM: usize = 18;
    let junk = vec![0x01; 64 * 1024];
    for i in 0..ALARMS {
        for _ in 0..JUNK_PER_ALARM {
            send(&mut device, &junk).await;
        }
        send(&mut device, &alarm("SMALL-1", "Kept", i, 10)).await;
    }
    let indexes = committed_indexes(&data, "Kept", ALARMS).await;
    assert_eq!(
        indexes,
        (0..ALARMS as i64).collect::<Vec<_>>(),
        "every event, in order"
    );
    readyz_until(&base, "after catching up", |status, _| status == 200).await;
    assert!(Stats::get(&stats.retention_runs) > 1);
    let (size, frames) = tokio::task::spawn_blocking(move || {
        let db = Db::open_read_only(&data).unwrap();
        (db.size_bytes().unwrap(), db.frame_count().unwrap())
    })
    .await
    .unwrap();
    assert!(
        frames < (ALARMS * JUNK_PER_ALARM) as i64,
        "old frames were deleted: {frames}"
    );
    // The limit, plus at most one batch committed since the last pass (4 MB).
    assert!(size <= 12 * 1024 * 1024, "{size}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_on_a_full_disk_ends_within_seconds_and_counts_what_is_lost() {
    // The hostile run: SIGTERM on a stalled store took 217 s, 10 s per queued batch.
    let Some(fs) = Tmpfs::mount(8) else { return };
    let data = fs.path.join("data");
    let mut t = start(|c| {
        c.store.data_dir = data.clone();
        c.store.min_free_mb = 1;
    })
    .await;
    let base = format!("http://{}", t.server.api_addr().unwrap());
    let stats = t.server.stats();
    let mut device = t.connect().await;
    send(&mut device, &alarm("FULL-2", "Warm", 0, 10)).await;
    t.until(WAIT, |e| e.event.code == "Warm").await;
    fill(&fs.path.join("ballast"));
    // About 36 MB: nine batches of 4 MB wait for the writer.
    const BIG: usize = 600;
    for i in 0..BIG {
        send(&mut device, &alarm("FULL-2", "Big", i, 30_000)).await;
    }
    readyz_until(&base, "commits on a full disk", |status, _| status == 503).await;
    let started = std::time::Instant::now();
    t.server.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "shutdown took {took:?}");
    let committed = committed_indexes(&data, "Big", 0).await.len();
    // Where they went, should they not add up: what the server read and decoded.
    let read = format!(
        "bytes received {}, frames {}, events received {}, committed {}, discarded {}",
        Stats::get(&stats.bytes_received),
        Stats::get(&stats.frames),
        Stats::get(&stats.events_received),
        Stats::get(&stats.events_committed),
        Stats::get(&stats.events_discarded)
    );
    assert_eq!(
        Stats::get(&stats.events_discarded) as usize + committed,
        BIG,
        "every event is either committed or counted as lost ({read})"
    );
    assert!(Stats::get(&stats.events_discarded) > 0);
}
