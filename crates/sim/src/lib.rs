//! Device simulator for alarm-center: many simulated Dahua/XM devices, one TCP connection each, that push
//! keepAlives and alarms in every Alarm Center wire variant (see `docs/protocol.md`).
//!
//! [`run`] connects `devices` simulated devices to a target, ramping up at `connect_rate` connections
//! per second. Every device then
//!
//! - identifies itself on each connection: JSON variants carry `SerialNo` in every keepAlive and event,
//!   XM carries `SerialID` in every alarm and keepAlive, HTTP (whose bodies have no serial) sends an
//!   `X-Serial-Number` header field with every request, and the DVRIP mask/text variants (which cannot
//!   carry a serial) start each connection with a 0x69 type-120 self-report whose `Domain name` is
//!   `<serial>.sim.invalid`;
//! - sends a keepAlive on connecting and then every `keepalive` period;
//! - sends its share of `alarm_rate` alarm events per second, jittered, one event per frame, alternating
//!   start/stop per (code, index) so that nothing stays active; every counted event is exactly one
//!   start or stop that the server's decoder extracts;
//! - over HTTP, waits for the server's answer to each request before sending the next (no pipelining)
//!   and counts it ([`SimReport::http_answers_ok`], [`SimReport::http_answers_failed`]); a request not
//!   answered within 5 s, or answered with `Connection: close`, ends the connection;
//! - reconnects after a short backoff (200 ms, jittered, doubling up to 5 s while connections keep
//!   failing fast) when the server closes the connection or a write fails. Reconnects are not held
//!   to `connect_rate`: after a server restart every device comes back within its backoff.
//!
//! Network errors never panic: they are counted ([`SimReport::connect_failures`],
//! [`SimReport::disconnects`], [`SimReport::http_unanswered`]) and the device retries.
//!
//! # Scale
//!
//! One task per device, sleeping on a single timer between sends: 10,000 devices are cheap on two
//! cores. High per-device alarm rates are sent in bursts: a device wakes at most every 10 ms and sends
//! every event that has fallen due, one frame each (at most 1,024 per wake, about 100,000 events/s per
//! device; a device more than a second behind its schedule drops the backlog instead of flooding).
//! HTTP devices wait for an answer per request, so their rate is bounded by the server's answer latency
//! (it answers after committing).
//!
//! Each connection uses one file descriptor and one ephemeral port: `ulimit -n` must allow at least the
//! device count plus a few dozen (the simulator cannot raise `RLIMIT_NOFILE` itself), and a server on
//! the same machine needs as many again. Connects beyond the limit fail and are counted and retried.
#![forbid(unsafe_code)]

mod answer;
mod device;
mod frames;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Serialize, Serializer};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::task::TaskTracker;

/// The token that stops [`run`], re-exported so that callers need not depend on `tokio-util`.
pub use tokio_util::sync::CancellationToken;

/// The wire variant a simulated device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// DVRIP 0x69 alarms with a binary channel bitmask (body format 0), 0xA1 heartbeats, and a type-120
    /// self-report at the start of each connection.
    DvripMask,
    /// DVRIP 0x69 alarms with a `Key:Value` text body (`alarm channel:<decimal mask>`, `Time:`), 0xA1
    /// heartbeats, and a type-120 self-report at the start of each connection.
    DvripText,
    /// JSON-RPC (`global.keepAlive`, `client.notifyEventStream`) in DVRIP 0xF6 frames.
    DvripJson,
    /// JSON-RPC in DHIP frames.
    Dhip,
    /// JSON-RPC as bare newline-delimited JSON objects.
    Json,
    /// XM/HiSilicon: message 1508 alarm-center pushes and message 1006 keepAlives.
    Xm,
    /// Dahua's HTTP Alarm Center mode: each event is a `POST /cgi-bin/NotifyEvent` with a JSON body,
    /// each keepAlive a `GET /cgi-bin/keepAlive`, on one keep-alive connection; every request carries
    /// `X-Serial-Number` and waits for the server's answer.
    Http,
    /// Device `i` speaks `Variant::CONCRETE[i % 7]`.
    Mixed,
}

impl Variant {
    /// The seven concrete variants, in the order [`Variant::Mixed`] assigns them to devices.
    pub const CONCRETE: [Variant; 7] = [
        Variant::DvripMask,
        Variant::DvripText,
        Variant::DvripJson,
        Variant::Dhip,
        Variant::Json,
        Variant::Xm,
        Variant::Http,
    ];

    /// Every variant, [`Variant::Mixed`] last.
    pub const ALL: [Variant; 8] = [
        Variant::DvripMask,
        Variant::DvripText,
        Variant::DvripJson,
        Variant::Dhip,
        Variant::Json,
        Variant::Xm,
        Variant::Http,
        Variant::Mixed,
    ];

    /// The command-line name: `dvrip-mask`, `dvrip-text`, `dvrip-json`, `dhip`, `json`, `xm`, `http`,
    /// `mixed`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::DvripMask => "dvrip-mask",
            Variant::DvripText => "dvrip-text",
            Variant::DvripJson => "dvrip-json",
            Variant::Dhip => "dhip",
            Variant::Json => "json",
            Variant::Xm => "xm",
            Variant::Http => "http",
            Variant::Mixed => "mixed",
        }
    }

    /// The concrete variant device `index` speaks under this setting.
    pub fn for_device(self, index: usize) -> Variant {
        match self {
            Variant::Mixed => Variant::CONCRETE[index % Variant::CONCRETE.len()],
            concrete => concrete,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text given to [`Variant::from_str`] names no variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variant {input:?}; expected one of dvrip-mask, dvrip-text, dvrip-json, dhip, json, xm, http, mixed")]
pub struct ParseVariantError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for Variant {
    type Err = ParseVariantError;

    /// Parses a command-line name, ignoring ASCII case (`_` is accepted for `-`).
    fn from_str(text: &str) -> Result<Variant, ParseVariantError> {
        let wanted = text.trim().replace('_', "-");
        Variant::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| ParseVariantError {
                input: text.to_owned(),
            })
    }
}

impl Serialize for Variant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The server to connect to.
    pub target: SocketAddr,
    /// Number of simulated devices, each with its own TCP connection (at least 1).
    pub devices: usize,
    /// KeepAlive period of each device; the first keepAlive goes out on connecting. Zero sends none.
    pub keepalive: Duration,
    /// Alarm events per second in total across all devices, split evenly between them and jittered.
    /// Zero sends no alarms.
    pub alarm_rate: f64,
    /// The wire variant; [`Variant::Mixed`] gives device `i` the variant `Variant::CONCRETE[i % 7]`.
    pub variant: Variant,
    /// How long to run; `None` runs until cancelled.
    pub duration: Option<Duration>,
    /// Device `i` (0-based) has the serial `format!("{serial_prefix}{i:06}")`, e.g. `SIM000001`. ASCII
    /// letters, digits, `-` and `_` only, at most 32 characters (the serial also forms a domain name).
    pub serial_prefix: String,
    /// New devices started per second while ramping up; zero starts all devices at once.
    pub connect_rate: f64,
    /// Local addresses to connect from: device `i` binds `sources[i % len]` before connecting, with a
    /// port of its own from 10,000–65,535. Empty: the kernel picks address and port. The kernel's
    /// ~28,000 ephemeral ports per address limit one address, so more devices need several (on Linux
    /// every address of 127.0.0.0/8 is local).
    pub sources: Vec<IpAddr>,
}

impl Default for SimConfig {
    /// One mixed-variant device against `127.0.0.1:15002`: keepAlive every 10 s, one alarm event per
    /// second, until cancelled, serial prefix `SIM`, ramp-up at 1,000 connections per second.
    fn default() -> SimConfig {
        SimConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 15002)),
            devices: 1,
            keepalive: Duration::from_secs(10),
            alarm_rate: 1.0,
            variant: Variant::Mixed,
            duration: None,
            serial_prefix: "SIM".to_owned(),
            connect_rate: 1000.0,
            sources: Vec::new(),
        }
    }
}

impl SimConfig {
    /// Checks the settings [`run`] relies on.
    pub fn validate(&self) -> Result<(), SimError> {
        let invalid = |why: String| Err(SimError::InvalidConfig(why));
        if self.devices == 0 {
            return invalid("devices must be at least 1".into());
        }
        if !(self.alarm_rate.is_finite() && self.alarm_rate >= 0.0) {
            return invalid(format!(
                "alarm rate must be a finite number >= 0, not {}",
                self.alarm_rate
            ));
        }
        if !(self.connect_rate.is_finite() && self.connect_rate >= 0.0) {
            return invalid(format!(
                "connect rate must be a finite number >= 0, not {}",
                self.connect_rate
            ));
        }
        let prefix_ok = self.serial_prefix.len() <= 32
            && self
                .serial_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if let Some(ip) = self
            .sources
            .iter()
            .find(|ip| ip.is_ipv4() != self.target.is_ipv4())
        {
            return invalid(format!(
                "source address {ip} and target {} are not of the same IP version",
                self.target
            ));
        }
        if !prefix_ok {
            return invalid(format!(
                "serial prefix {:?} must be at most 32 ASCII letters, digits, '-' or '_'",
                self.serial_prefix
            ));
        }
        Ok(())
    }

    /// The local address device `index` connects from (`None`: the kernel's choice).
    pub fn source(&self, index: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[index % self.sources.len()])
    }

    /// The serial of device `index`.
    pub fn serial(&self, index: usize) -> String {
        format!("{}{index:06}", self.serial_prefix)
    }
}

/// Parses a list of source addresses: comma-separated IP addresses or IPv4 ranges `FIRST-LAST`
/// (inclusive), e.g. `127.0.0.1-127.0.0.8,127.0.1.1`. At most 65,536 addresses in all.
pub fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    const MAX: usize = 65_536;
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let ip = |t: &str| {
            t.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{t:?} is not an IP address"))
        };
        match item.split_once('-') {
            None => out.push(ip(item)?),
            Some((first, last)) => {
                let (IpAddr::V4(first), IpAddr::V4(last)) = (ip(first)?, ip(last)?) else {
                    return Err(format!("{item:?}: ranges are IPv4 only"));
                };
                let (first, last) = (u32::from(first), u32::from(last));
                if last < first || (last - first) as usize >= MAX {
                    return Err(format!(
                        "{item:?}: a range goes upwards and holds at most {MAX} addresses"
                    ));
                }
                out.extend((first..=last).map(|n| IpAddr::from(std::net::Ipv4Addr::from(n))));
            }
        }
        if out.len() > MAX {
            return Err(format!("more than {MAX} source addresses"));
        }
    }
    if out.is_empty() {
        return Err("no source address given".into());
    }
    Ok(out)
}

/// Why [`run`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A [`SimConfig`] value is out of range.
    #[error("invalid simulator configuration: {0}")]
    InvalidConfig(String),
}

/// Totals of a run (or, from [`SimStats::snapshot`], of a run so far).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimReport {
    /// Devices whose connection was up when the run stopped (for a snapshot: right now).
    pub connected: usize,
    /// Connection attempts that failed (refused, timed out after 5 s, out of file descriptors, …).
    pub connect_failures: usize,
    /// Frames written whole, of every kind.
    pub frames_sent: u64,
    /// Alarm events sent: each is exactly one start or stop the server should extract.
    pub alarm_events_sent: u64,
    /// KeepAlive frames sent.
    pub keepalives_sent: u64,
    /// Bytes of the frames counted in `frames_sent`.
    pub bytes_sent: u64,
    /// Connections re-established after a device lost its previous one.
    pub reconnects: u64,
    /// Connections lost before the run stopped: closed or reset by the server, a write failed, or (HTTP)
    /// an answer was missing or said `Connection: close`.
    pub disconnects: u64,
    /// HTTP variant: requests answered with a 2xx status.
    pub http_answers_ok: u64,
    /// HTTP variant: requests not answered with a 2xx status: answered with another status (counted in
    /// `http_answer_statuses`) or not answered at all (`http_unanswered`).
    pub http_answers_failed: u64,
    /// HTTP variant: requests without a readable answer within 5 s (the connection closed first, the
    /// answer did not parse, or the run stopped and 1 s more passed); part of `http_answers_failed`.
    pub http_unanswered: u64,
    /// HTTP variant: answers by status code (serialised with the codes as keys, e.g. `{"200":812}`).
    pub http_answer_statuses: BTreeMap<u16, u64>,
    /// Time from the start until the run stopped (serialised as seconds, a float).
    #[serde(serialize_with = "as_secs_f64")]
    pub elapsed: Duration,
}

fn as_secs_f64<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// One frame a device sent, as passed to the `on_sent` callback of [`run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentFrame {
    /// 0-based device index.
    pub device: usize,
    /// The device's serial.
    pub serial: String,
    /// The concrete variant the device speaks.
    pub variant: Variant,
    /// `"alarm"`, `"keepalive"`, or `"report"` (the DVRIP type-120 self-report opening a connection).
    pub kind: &'static str,
    /// Event code of an alarm (`VideoMotion`, …); empty otherwise.
    pub code: String,
    /// `"start"` or `"stop"` for an alarm; empty otherwise.
    pub action: &'static str,
    /// 0-based channel index of an alarm; 0 otherwise.
    pub index: u32,
    /// Frame length in bytes.
    pub bytes: usize,
}

/// The callback [`run`] calls for every frame sent.
pub type OnSent = Box<dyn Fn(&SentFrame) + Send + Sync>;

/// Live counters of a run, shared with [`run_with_stats`] so that a caller can report progress.
/// Cloning shares the counters; use a new `SimStats` for each run.
#[derive(Debug, Clone, Default)]
pub struct SimStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    started: OnceLock<Instant>,
    connected: AtomicUsize,
    connect_failures: AtomicUsize,
    frames: AtomicU64,
    alarm_events: AtomicU64,
    keepalives: AtomicU64,
    bytes: AtomicU64,
    reconnects: AtomicU64,
    disconnects: AtomicU64,
    http_ok: AtomicU64,
    http_failed: AtomicU64,
    http_unanswered: AtomicU64,
    http_statuses: Mutex<BTreeMap<u16, u64>>,
}

impl SimStats {
    /// Fresh counters.
    pub fn new() -> SimStats {
        SimStats::default()
    }

    /// The totals so far; `connected` is the number of devices connected right now.
    pub fn snapshot(&self) -> SimReport {
        let c = &*self.0;
        SimReport {
            connected: c.connected.load(Ordering::Relaxed),
            connect_failures: c.connect_failures.load(Ordering::Relaxed),
            frames_sent: c.frames.load(Ordering::Relaxed),
            alarm_events_sent: c.alarm_events.load(Ordering::Relaxed),
            keepalives_sent: c.keepalives.load(Ordering::Relaxed),
            bytes_sent: c.bytes.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            http_answers_ok: c.http_ok.load(Ordering::Relaxed),
            http_answers_failed: c.http_failed.load(Ordering::Relaxed),
            http_unanswered: c.http_unanswered.load(Ordering::Relaxed),
            http_answer_statuses: c
                .http_statuses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            elapsed: c.started.get().map_or(Duration::ZERO, |t| t.elapsed()),
        }
    }
}

/// What every device task shares.
struct Shared {
    target: SocketAddr,
    keepalive: Duration,
    /// Mean time between two alarm events of one device; `None` when no alarms are sent.
    alarm_gap: Option<Duration>,
    stop: CancellationToken,
    stats: SimStats,
    on_sent: Option<OnSent>,
    /// Local ports handed out to connections from a source address, in turn (see `device::connect`).
    next_port: AtomicUsize,
}

/// Runs the simulation until `config.duration` elapses or `cancel` fires, then closes every
/// connection and returns the totals. `on_sent`, when given, is called for every frame written (from
/// the device tasks; keep it quick). Fails only on an invalid configuration.
pub async fn run(
    config: SimConfig,
    cancel: CancellationToken,
    on_sent: Option<OnSent>,
) -> Result<SimReport, SimError> {
    run_with_stats(config, cancel, on_sent, SimStats::new()).await
}

/// [`run`], updating `stats` as it goes so that another task can watch progress with
/// [`SimStats::snapshot`].
pub async fn run_with_stats(
    config: SimConfig,
    cancel: CancellationToken,
    on_sent: Option<OnSent>,
    stats: SimStats,
) -> Result<SimReport, SimError> {
    config.validate()?;
    let started = Instant::now();
    let _ = stats.0.started.set(started);
    let per_device_rate = config.alarm_rate / config.devices as f64;
    let alarm_gap = (per_device_rate > 0.0)
        .then(|| Duration::try_from_secs_f64(1.0 / per_device_rate).ok())
        .flatten();
    // Not a child of `cancel`: the devices must still be connected when the final `connected` count
    // is read.
    let stop = CancellationToken::new();
    let shared = Arc::new(Shared {
        target: config.target,
        keepalive: config.keepalive,
        alarm_gap,
        stop: stop.clone(),
        stats: stats.clone(),
        on_sent,
        next_port: AtomicUsize::new(0),
    });
    let tracker = TaskTracker::new();
    tracker.spawn(start_devices(config.clone(), shared, tracker.clone()));

    let deadline = async {
        match config.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        () = deadline => {}
    }
    let mut report = stats.snapshot();
    report.elapsed = started.elapsed();
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    // Frames whose write was in flight when the run stopped count too.
    let last = stats.snapshot();
    Ok(SimReport {
        connected: report.connected,
        elapsed: report.elapsed,
        ..last
    })
}

/// Starts the device tasks, `connect_rate` per second (all at once when it is zero).
async fn start_devices(config: SimConfig, shared: Arc<Shared>, tracker: TaskTracker) {
    let mut seeds = SmallRng::from_rng(&mut rand::rng());
    let mut spawn = |index: usize| {
        let dev = device::Device::new(index, &config, SmallRng::from_rng(&mut seeds));
        tracker.spawn(dev.run(shared.clone()));
    };
    if config.connect_rate == 0.0 {
        (0..config.devices).for_each(&mut spawn);
        return;
    }
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next = 0;
    while next < config.devices {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = (start.elapsed().as_secs_f64() * config.connect_rate) as usize + 1;
        while next < due.min(config.devices) {
            spawn(next);
            next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(v.to_string().parse::<Variant>(), Ok(v));
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{v}\""));
        }
        assert_eq!("DVRIP_MASK".parse::<Variant>(), Ok(Variant::DvripMask));
        assert!("dvrip".parse::<Variant>().is_err());
        assert_eq!("http".parse::<Variant>(), Ok(Variant::Http));
        assert_eq!(Variant::Mixed.for_device(6), Variant::Http);
        assert_eq!(Variant::Mixed.for_device(8), Variant::DvripText);
        assert_eq!(Variant::Xm.for_device(7), Variant::Xm);
    }

    #[test]
    fn config_is_validated() {
        let ok = SimConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.serial(1), "SIM000001");
        for bad in [
            SimConfig {
                devices: 0,
                ..ok.clone()
            },
            SimConfig {
                alarm_rate: f64::NAN,
                ..ok.clone()
            },
            SimConfig {
                connect_rate: -1.0,
                ..ok.clone()
            },
            SimConfig {
                serial_prefix: "a:b".into(),
                ..ok.clone()
            },
        ] {
            assert!(matches!(bad.validate(), Err(SimError::InvalidConfig(_))));
        }
    }

    #[test]
    fn sources_are_parsed_and_spread_over_devices() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let sources = parse_sources("127.0.0.1-127.0.0.3, ::1").unwrap();
        assert_eq!(
            sources,
            [ip("127.0.0.1"), ip("127.0.0.2"), ip("127.0.0.3"), ip("::1")]
        );
        assert_eq!(parse_sources("127.0.0.255-127.0.1.0").unwrap().len(), 2);
        for bad in [
            "",
            "localhost",
            "127.0.0.2-127.0.0.1",
            "::1-::2",
            "10.0.0.0-10.1.0.0",
        ] {
            assert!(parse_sources(bad).is_err(), "{bad:?}");
        }
        let config = SimConfig {
            sources: parse_sources("127.0.0.1-127.0.0.2").unwrap(),
            ..SimConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.source(0), Some(ip("127.0.0.1")));
        assert_eq!(config.source(3), Some(ip("127.0.0.2")));
        assert_eq!(SimConfig::default().source(3), None);
        let mixed = SimConfig {
            sources: vec![ip("::1")],
            ..SimConfig::default()
        };
        assert!(mixed.validate().is_err());
    }

    #[test]
    fn report_serialises_elapsed_as_seconds() {
        let report = SimReport {
            elapsed: Duration::from_millis(1500),
            ..SimReport::default()
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["elapsed"], 1.5);
        let report = SimReport {
            http_answer_statuses: BTreeMap::from([(200, 7), (503, 1)]),
            ..SimReport::default()
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["http_answer_statuses"],
            serde_json::json!({"200": 7, "503": 1})
        );
    }
}
