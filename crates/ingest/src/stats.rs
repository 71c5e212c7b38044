//! Counters and the periodic statistics line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use alarm_center_proto::{Kind, Protocol};
use prometheus_client::metrics::histogram::Histogram;

/// Server counters (monotonic unless noted). Read by the statistics line and, at each scrape, by
/// `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections_accepted: AtomicU64,
    /// Connections accepted by one connection thread and served by another that had fewer (D64).
    pub connections_handed_over: AtomicU64,
    /// Times the accepting connection thread fell behind (or an accept failed) and called the others
    /// in to accept too (D73).
    pub accept_helpers_called: AtomicU64,
    /// Connections accepted by the other connection threads while called in (D73).
    pub connections_accepted_by_helpers: AtomicU64,
    /// Connections refused: over the total limit.
    pub refused_total_limit: AtomicU64,
    /// Connections refused: over the per-address limit.
    pub refused_per_ip_limit: AtomicU64,
    /// Connections closed, by reason (`CloseReason::LABELS`: device, shutdown, idle, slow_sender,
    /// socket_error, http_answer, unknown_device, new_device_limit).
    pub closed_by_reason: [AtomicU64; 8],
    /// Connections closed because a newer connection of the same device replaced them (no longer
    /// happens: connections of one device coexist; kept at 0 for dashboards).
    pub closed_replaced: AtomicU64,
    /// Connections from another address claiming a device that already has open connections.
    pub identity_conflicts: AtomicU64,
    /// Alarm starts not tracked as active because their device had `MAX_ACTIVE` active already.
    pub active_alarms_untracked: AtomicU64,
    /// Connections closed because their frame would have created a device past
    /// `server.max-new-devices-per-ip-per-minute` or `server.max-new-devices-per-minute` (the frame
    /// is kept, without device).
    pub new_devices_refused: AtomicU64,
    /// Devices forgotten after `server.device-expiry` of silence (never configured ones only).
    pub devices_expired: AtomicU64,
    /// Connections open now (gauge).
    pub connections_open: AtomicU64,
    /// Connections open now on each connection thread (gauges, one per thread; set when the threads
    /// start).
    pub connections_by_thread: std::sync::OnceLock<Box<[AtomicU64]>>,
    /// Bytes received.
    pub bytes_received: AtomicU64,
    /// Frames decoded.
    pub frames: AtomicU64,
    /// Junk frames (unrecognised bytes).
    pub frames_junk: AtomicU64,
    /// Frames with a decode error (oversized, incomplete, invalid body).
    pub frames_error: AtomicU64,
    /// Events extracted from frames.
    pub events_received: AtomicU64,
    /// Events committed to the store (device and synthetic included).
    pub events_committed: AtomicU64,
    /// Store write failures (retried).
    pub store_errors: AtomicU64,
    /// Transactions committed by the store writer (events per commit = events committed / this).
    pub store_commits: AtomicU64,
    /// Events given up at shutdown because the store kept failing (lost).
    pub events_discarded: AtomicU64,
    /// Retention passes run: periodic, early (size limit, free-space reserve) and while commits fail.
    pub retention_runs: AtomicU64,
    /// True while commits fail (the server is not ready); the writer sets and clears it.
    store_failing: AtomicBool,
    /// The last commit error while `store_failing`.
    store_failure: Mutex<Option<String>>,
    /// Devices that went offline.
    pub offline_transitions: AtomicU64,
    /// Frames by (protocol, kind), without a lock: every frame of every connection thread counts.
    by_kind: FramesByKind,
    /// Decode errors by cause and events by code (`Labelled::frames` comes from `by_kind`).
    labelled: Mutex<Labelled>,
    /// Receive→commit latencies.
    latency: Durations,
    /// Durations of the store writer's write transactions.
    writes: Durations,
}

/// Upper bounds (milliseconds) of the receive→commit latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 9] = [1, 2, 5, 10, 25, 50, 100, 250, 1000];

/// Durations of one kind: a histogram since start (seconds, the bounds of [`LATENCY_BUCKETS_MS`])
/// for `/metrics`, and the current interval's samples (microseconds, at most [`MAX_SAMPLES`]) for the
/// statistics line.
#[derive(Debug)]
struct Durations {
    histogram: Histogram,
    interval_us: Mutex<Vec<u32>>,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            histogram: Histogram::new(LATENCY_BUCKETS_MS.map(|ms| ms as f64 / 1000.0)),
            interval_us: Mutex::default(),
        }
    }
}

impl Durations {
    /// Records durations in microseconds.
    fn record_us(&self, samples: impl IntoIterator<Item = u32>) {
        let mut all = self.interval_us.lock().unwrap_or_else(|p| p.into_inner());
        for s in samples {
            self.histogram.observe(f64::from(s) / 1e6);
            if all.len() < MAX_SAMPLES {
                all.push(s);
            }
        }
    }

    /// Takes the interval's samples and returns (p50, p99, max) in milliseconds; `None` without
    /// samples.
    fn take_ms(&self) -> Option<(f64, f64, f64)> {
        let mut all =
            std::mem::take(&mut *self.interval_us.lock().unwrap_or_else(|p| p.into_inner()));
        if all.is_empty() {
            return None;
        }
        all.sort_unstable();
        let at = |q: f64| f64::from(all[((all.len() - 1) as f64 * q) as usize]) / 1000.0;
        Some((at(0.5), at(0.99), at(1.0)))
    }
}

/// A counter for each (protocol, kind): indexed by the enums' declaration order.
#[derive(Debug)]
struct FramesByKind(Box<[AtomicU64]>);

impl Default for FramesByKind {
    fn default() -> Self {
        let n = Protocol::ALL.len() * Kind::ALL.len();
        FramesByKind((0..n).map(|_| AtomicU64::new(0)).collect())
    }
}

impl FramesByKind {
    fn counter(&self, protocol: Protocol, kind: Kind) -> &AtomicU64 {
        &self.0[protocol as usize * Kind::ALL.len() + kind as usize]
    }
}

/// Most distinct event codes counted separately; further codes count as `other`.
const MAX_CODES: usize = 500;

/// Counters with labels.
#[derive(Debug, Default, Clone)]
pub struct Labelled {
    /// Frames by (protocol, kind).
    pub frames: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    /// Decode errors by cause.
    pub errors: std::collections::BTreeMap<&'static str, u64>,
    /// Events by code.
    pub events: std::collections::BTreeMap<String, u64>,
}

/// Most latency samples kept per interval.
const MAX_SAMPLES: usize = 200_000;

impl Stats {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one; `true` for the first one ever (to log a condition once).
    pub fn inc_first(counter: &AtomicU64) -> bool {
        counter.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// Counts a decoded frame, its error cause and its events' codes. A frame without error or
    /// events (a keepAlive) takes no lock.
    pub fn count_frame<'a>(
        &self,
        protocol: Protocol,
        kind: Kind,
        error: Option<&'static str>,
        codes: impl IntoIterator<Item = &'a str>,
    ) {
        self.by_kind
            .counter(protocol, kind)
            .fetch_add(1, Ordering::Relaxed);
        let mut codes = codes.into_iter().peekable();
        if error.is_none() && codes.peek().is_none() {
            return;
        }
        let mut l = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cause) = error {
            *l.errors.entry(cause).or_default() += 1;
        }
        for code in codes {
            if let Some(n) = l.events.get_mut(code) {
                *n += 1;
            } else {
                let key = if l.events.len() < MAX_CODES {
                    code.to_owned()
                } else {
                    "other".to_owned()
                };
                *l.events.entry(key).or_default() += 1;
            }
        }
    }

    /// A copy of the labelled counters (frames by the (protocol, kind) pairs counted at least once).
    pub fn labelled(&self) -> Labelled {
        let mut labelled = self
            .labelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for &protocol in Protocol::ALL {
            for &kind in Kind::ALL {
                let n = Stats::get(self.by_kind.counter(protocol, kind));
                if n > 0 {
                    labelled
                        .frames
                        .insert((protocol.as_str(), kind.as_str()), n);
                }
            }
        }
        labelled
    }

    /// The receive→commit latency histogram since start (seconds), for `/metrics`.
    pub(crate) fn latency_histogram(&self) -> &Histogram {
        &self.latency.histogram
    }

    /// Records receive→commit latencies (microseconds).
    pub fn record_latencies(&self, samples: impl IntoIterator<Item = u32>) {
        self.latency.record_us(samples);
    }

    /// Takes the interval's latency samples and returns (p50, p99, max) in milliseconds.
    pub fn take_latency_ms(&self) -> Option<(f64, f64, f64)> {
        self.latency.take_ms()
    }

    /// The store writer's write transaction duration histogram since start (seconds), for `/metrics`.
    pub(crate) fn write_histogram(&self) -> &Histogram {
        &self.writes.histogram
    }

    /// Records how long one write transaction took (the batch's statements, its commit and the
    /// per-device index addition after it, if due).
    pub fn record_write(&self, took: std::time::Duration) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
        self.writes.record_us([us]);
    }

    /// Takes the interval's write durations and returns (p50, p99, max) in milliseconds.
    pub fn take_write_ms(&self) -> Option<(f64, f64, f64)> {
        self.writes.take_ms()
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records that a commit failed with `error`: the server is not ready until one succeeds.
    pub fn set_store_failure(&self, error: String) {
        *self.store_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.store_failing.store(true, Ordering::Release);
    }

    /// Records that a commit succeeded; true when commits had been failing until now.
    pub fn clear_store_failure(&self) -> bool {
        if !self.store_failing.swap(false, Ordering::AcqRel) {
            return false;
        }
        *self.store_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        true
    }

    /// The last commit error while commits fail; `None` while they succeed.
    pub fn store_failure(&self) -> Option<String> {
        if !self.store_failing.load(Ordering::Acquire) {
            return None;
        }
        self.store_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Stats {
    /// Connections closed for `reason` (a `connections_closed_total` label, e.g. `idle`).
    pub fn closed(&self, reason: &str) -> u64 {
        crate::close_reason::CloseReason::LABELS
            .iter()
            .position(|l| *l == reason)
            .map_or(0, |n| Stats::get(&self.closed_by_reason[n]))
    }
}

/// Resident set size of this process in bytes (Linux), for the statistics line: `VmRSS` of
/// `/proc/self/status`, which the kernel gives in KiB whatever the page size (`statm` counts pages, and
/// pages are 16 or 64 KiB on some ARM machines).
pub fn rss_bytes() -> Option<u64> {
    vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_by_protocol_and_kind_from_many_threads() {
        let stats = Stats::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        stats.count_frame(Protocol::Dhip, Kind::Keepalive, None, []);
                    }
                    stats.count_frame(Protocol::Xm, Kind::Alarm, None, ["HumanDetect"]);
                });
            }
        });
        stats.count_frame(Protocol::Junk, Kind::Unknown, Some("unrecognized"), []);
        let labelled = stats.labelled();
        let frames: Vec<_> = labelled.frames.into_iter().collect();
        assert_eq!(
            frames,
            [
                (("dhip", "keepalive"), 40_000),
                (("junk", "unknown"), 1),
                (("xm", "alarm"), 4)
            ]
        );
        assert_eq!(labelled.events.get("HumanDetect"), Some(&4));
        assert_eq!(labelled.errors.get("unrecognized"), Some(&1));
        // Every pair has a counter of its own.
        let mut all = std::collections::HashSet::new();
        for &p in Protocol::ALL {
            for &k in Kind::ALL {
                assert!(all.insert(std::ptr::from_ref(stats.by_kind.counter(p, k))));
            }
        }
        assert_eq!(all.len(), stats.by_kind.0.len());
    }

    #[test]
    fn rss_is_read_in_kib_from_the_status_file() {
        let status = "Name:\talarm-center\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(vm_rss(status), Some(20 * 1024 * 1024));
        assert_eq!(vm_rss("Name:\tx\n"), None);
        let own = rss_bytes().unwrap();
        assert!(own > 1024 * 1024, "{own}");
    }
}
