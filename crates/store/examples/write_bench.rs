//! The store's write path alone, without the server: `batches` transactions of `batch` alarm events,
//! each with its raw frame (~230 bytes) and ~300 bytes of event data, from `devices` devices, written
//! with `Db::write` into a new store of `page-size` bytes per page. The write-ahead log is checkpointed
//! (in this thread) whenever it holds 4 MiB, whatever the page size (SQLite's own automatic checkpoint
//! counts pages, which would favour large pages). Prints events/s and µs of CPU per event (this
//! process's user + system time); run it under `valgrind --tool=callgrind` for instruction counts that
//! do not depend on what else the machine does.
//!
//! Prints, too, the median, 99th percentile and longest of the writes.
//!
//! `cargo run --release -p alarm-center-store --example write_bench -- [batches] [batch] [devices] [normal|full] [page-size]`
//! (defaults 400, 250, 100, normal, the store's default page size).

use alarm_center_store::{
    Batch, Db, EventAction, EventKind, FrameRef, NewEvent, NewFrame, SyncMode,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> usize {
        args.get(i)
            .map(|a| a.parse().expect("a number"))
            .unwrap_or(default)
    };
    let (batches, batch_len, devices) = (arg(0, 400), arg(1, 250), arg(2, 100).max(1));
    let sync = match args.get(3).map(String::as_str) {
        Some("full") => SyncMode::Full,
        _ => SyncMode::Normal,
    };
    let page_size = args
        .get(4)
        .map_or(alarm_center_store::DEFAULT_PAGE_SIZE, |a| {
            a.parse().expect("a page size in bytes")
        });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut db = Db::open_with_page_size(dir.path(), sync, page_size).expect("a new store");
    db.disable_auto_checkpoint().expect("manual checkpoints");
    let checkpoint_at = (4 * 1024 * 1024 / page_size).max(1);
    let data = format!(r#"{{"Pad":"{}"}}"#, "d".repeat(290));
    let frame_bytes = bytes::Bytes::from(vec![0x20u8; 230]);
    let cpu_before = cpu_seconds();
    let started = std::time::Instant::now();
    // How long each write took (`Db::write`: statements, commit, per-device index step).
    let mut durations = Vec::with_capacity(batches);
    let mut n = 0usize;
    for _ in 0..batches {
        let mut batch = Batch::default();
        for _ in 0..batch_len {
            let device = format!("bench-device-{:05}", n % devices);
            batch.frames.push(NewFrame {
                received_at: 1_700_000_000_000 + n as i64,
                device: Some(device.clone()),
                connection: (n % devices) as i64,
                stream_offset: n as u64 * 230,
                protocol: "dhip",
                command: None,
                kind: "alarm",
                body_format: "json",
                error: None,
                bytes: frame_bytes.clone(),
            });
            batch.events.push(NewEvent {
                frame: FrameRef::InBatch(batch.frames.len() - 1),
                device,
                code: "VideoMotion".into(),
                action: EventAction::Start,
                index: Some(0),
                channel: Some(1),
                channel_name: None,
                kind: EventKind::Alarm,
                device_time: Some("2026-11-30T12:00:00+01:00".into()),
                received_at: 1_700_000_000_000 + n as i64,
                data: Some(data.clone()),
                synthetic: None,
            });
            n += 1;
        }
        let write_started = std::time::Instant::now();
        let written = db.write(&batch).expect("a commit");
        durations.push(write_started.elapsed());
        if written
            .log_pages
            .is_some_and(|pages| pages >= checkpoint_at)
        {
            db.checkpoint().expect("a checkpoint");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    durations.sort_unstable();
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "{n} events in {batches} commits of {batch_len} from {devices} devices ({sync:?}, \
         {page_size}-byte pages): \
         {:.0} events/s, {:.2} µs CPU per event, {:.2} µs wall per event; \
         write p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        n as f64 / wall,
        cpu * 1e6 / n as f64,
        wall * 1e6 / n as f64,
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// This process's user + system CPU time so far, in seconds (`/proc/self/stat` fields 14 and 15, in
/// clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    (ticks(11) + ticks(12)) / 100.0
}
