//! Runs the simulator against a plain TCP listener that decodes everything it receives (and answers
//! HTTP requests with `200`), and against a real server with its store.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alarm_center_proto::{http, Decoder, Kind, Protocol, Session};
use alarm_center_server::Server;
use alarm_center_sim::{run, SentFrame, SimConfig, SimReport, Variant};
use alarm_center_store::{Db, EventQuery};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the listener made of one frame.
#[derive(Debug)]
struct Got {
    at: Instant,
    protocol: Protocol,
    /// Framing or body error.
    error: Option<String>,
    kind: Kind,
    /// `(code, action, index)` of each event.
    events: Vec<(String, String, i64)>,
    serial: Option<String>,
    domain: Option<String>,
    len: usize,
}

/// One accepted connection, decoded.
#[derive(Debug)]
struct Conn {
    frames: Vec<Got>,
    /// The listener closed it on purpose.
    dropped: bool,
}

impl Conn {
    /// The serial the connection identified itself with (from a serial or a `<serial>.sim.invalid`
    /// domain), checking that every identity in it agrees.
    fn identity(&self) -> Option<String> {
        let mut ids = self.frames.iter().filter_map(|f| {
            f.serial.clone().or_else(|| {
                f.domain
                    .as_deref()
                    .and_then(|d| d.strip_suffix(".sim.invalid"))
                    .map(str::to_owned)
            })
        });
        let first = ids.next()?;
        assert!(ids.all(|id| id == first), "mixed identities in {self:?}");
        Some(first)
    }
}

struct Listener {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    done: Arc<Mutex<Vec<Conn>>>,
}

impl Listener {
    /// Listens on 127.0.0.1; the first `drop_first` connections are closed after `drop_after`. Every
    /// HTTP request is answered `200 OK` at once.
    async fn start(drop_first: usize, drop_after: Duration) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(Mutex::new(Vec::new()));
        let (acc, fin) = (accepted.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let nth = acc.fetch_add(1, Ordering::SeqCst);
                let fin = fin.clone();
                let deadline = (nth < drop_first).then(|| Instant::now() + drop_after);
                tokio::spawn(async move {
                    let mut decoder = Decoder::default();
                    let mut session = Session::new();
                    let mut frames = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut dropped = false;
                    loop {
                        let read = match deadline {
                            Some(at) => tokio::select! {
                                r = stream.read(&mut buf) => r,
                                () = tokio::time::sleep_until(at) => { dropped = true; break; }
                            },
                            None => stream.read(&mut buf).await,
                        };
                        let n = match read {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let at = Instant::now();
                        let mut answers = Vec::new();
                        for frame in decoder.feed(&buf[..n]) {
                            if frame.protocol == Protocol::Http {
                                answers.extend(http::response(200, &[], "OK\n", true, false));
                            }
                            frames.push(got(&mut session, &frame, at));
                        }
                        if !answers.is_empty() && stream.write_all(&answers).await.is_err() {
                            break;
                        }
                    }
                    drop(stream);
                    let at = Instant::now();
                    for frame in decoder.finish() {
                        frames.push(got(&mut session, &frame, at));
                    }
                    fin.lock().unwrap().push(Conn { frames, dropped });
                });
            }
        });
        Listener {
            addr,
            accepted,
            done,
        }
    }

    /// Waits until every accepted connection has ended, and returns them.
    async fn finish(&self) -> Vec<Conn> {
        let give_up = Instant::now() + Duration::from_secs(3);
        while self.done.lock().unwrap().len() < self.accepted.load(Ordering::SeqCst) {
            assert!(Instant::now() < give_up, "connections still open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::mem::take(&mut *self.done.lock().unwrap())
    }
}

fn got(session: &mut Session, frame: &alarm_center_proto::Frame, at: Instant) -> Got {
    let decoded = session.decode(frame);
    Got {
        at,
        protocol: frame.protocol,
        error: decoded.error.clone(),
        kind: decoded.kind,
        events: decoded
            .events
            .iter()
            .map(|e| {
                let index = e.index.unwrap_or(-1);
                (e.code.to_string(), e.action.as_str().to_owned(), index)
            })
            .collect(),
        serial: decoded.device.serial.clone(),
        domain: decoded.device.domain.clone(),
        len: frame.len(),
    }
}

/// Runs the simulator, collecting what `on_sent` reports.
async fn simulate(config: SimConfig) -> (SimReport, Vec<SentFrame>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let sink = sent.clone();
    let on_sent = Box::new(move |f: &SentFrame| sink.lock().unwrap().push(f.clone()));
    let report = run(config, CancellationToken::new(), Some(on_sent))
        .await
        .unwrap();
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    (report, sent)
}

fn config(target: SocketAddr, variant: Variant, devices: usize) -> SimConfig {
    SimConfig {
        target,
        devices,
        keepalive: Duration::from_millis(200),
        alarm_rate: 25.0 * devices as f64,
        variant,
        duration: Some(Duration::from_millis(1300)),
        serial_prefix: format!("T{}-", variant.name().replace('-', "")),
        connect_rate: 0.0,
        sources: Vec::new(),
    }
}

/// `(serial, code, action, index)` of every event, sorted.
type EventList = Vec<(String, String, String, i64)>;

/// Checks that every HTTP request sent (if any) was answered `200`.
fn check_http_answers(name: &str, report: &SimReport, sent: &[SentFrame]) {
    let requests = sent.iter().filter(|f| f.variant == Variant::Http).count() as u64;
    assert_eq!(report.http_answers_ok, requests, "{name}: {report:?}");
    // Every request is answered or counted as failed.
    assert_eq!(
        report.http_answers_ok + report.http_answers_failed,
        requests,
        "{name}: {report:?}"
    );
    assert_eq!(report.http_answers_failed, 0, "{name}: {report:?}");
    assert_eq!(report.http_unanswered, 0, "{name}: {report:?}");
    let statuses = match requests {
        0 => BTreeMap::new(),
        n => BTreeMap::from([(200, n)]),
    };
    assert_eq!(report.http_answer_statuses, statuses, "{name}: {report:?}");
}

/// `(serial, code, action, index)` of every alarm `on_sent` reported, sorted.
fn announced(sent: &[SentFrame], only: impl Fn(&SentFrame) -> bool) -> EventList {
    let mut events: EventList = sent
        .iter()
        .filter(|f| f.kind == "alarm" && only(f))
        .map(|f| {
            (
                f.serial.clone(),
                f.code.clone(),
                f.action.to_owned(),
                i64::from(f.index),
            )
        })
        .collect();
    events.sort();
    events
}

/// Checks a run whose connections were never dropped: clean frames, exact counts, identities,
/// alternating actions, keepAlive period. Returns the received events.
fn check_clean(
    name: &str,
    config: &SimConfig,
    report: &SimReport,
    sent: &[SentFrame],
    conns: &[Conn],
) {
    assert_eq!(report.connected, config.devices, "{name}: {report:?}");
    assert_eq!(
        conns.len(),
        config.devices,
        "{name}: one connection per device"
    );
    assert_eq!(report.reconnects, 0, "{name}");
    assert_eq!(report.connect_failures, 0, "{name}");
    let frames = conns.iter().flat_map(|c| &c.frames);
    for f in frames.clone() {
        assert_ne!(f.protocol, Protocol::Junk, "{name}: junk frame {f:?}");
        assert_eq!(f.error, None, "{name}: {f:?}");
        assert_ne!(f.kind, Kind::Unknown, "{name}: {f:?}");
    }
    let count = |kind: Kind| frames.clone().filter(|f| f.kind == kind).count() as u64;
    let events: u64 = frames.clone().map(|f| f.events.len() as u64).sum();
    assert_eq!(events, report.alarm_events_sent, "{name}: events");
    assert_eq!(
        count(Kind::Alarm),
        report.alarm_events_sent,
        "{name}: one event per frame"
    );
    assert_eq!(
        count(Kind::Keepalive),
        report.keepalives_sent,
        "{name}: keepalives"
    );
    assert_eq!(
        frames.clone().count() as u64,
        report.frames_sent,
        "{name}: frames"
    );
    // A bare JSON object's trailing newline is padding between frames, not part of the frame.
    let bytes: u64 = frames
        .clone()
        .map(|f| f.len as u64 + u64::from(f.protocol == Protocol::Json))
        .sum();
    assert_eq!(bytes, report.bytes_sent, "{name}: bytes");
    assert_eq!(
        sent.len() as u64,
        report.frames_sent,
        "{name}: on_sent calls"
    );
    check_http_answers(name, report, sent);
    // At least 60 % of the configured rate got out.
    let wanted = config.alarm_rate * config.duration.unwrap().as_secs_f64();
    assert!(
        report.alarm_events_sent as f64 > 0.6 * wanted,
        "{name}: {} events, wanted about {wanted}",
        report.alarm_events_sent
    );

    let mut received: EventList = Vec::new();
    let mut serials = Vec::new();
    for conn in conns {
        let serial = conn
            .identity()
            .unwrap_or_else(|| panic!("{name}: anonymous {conn:?}"));
        // The first frame already identifies the device.
        let first = &conn.frames[0];
        assert!(
            first.serial.is_some() || first.domain.is_some(),
            "{name}: {first:?}"
        );
        serials.push(serial.clone());
        // Actions alternate per (code, index), starting with a start.
        let mut state: HashMap<(String, i64), bool> = HashMap::new();
        for (code, action, index) in conn.frames.iter().flat_map(|f| &f.events) {
            let active = state.entry((code.clone(), *index)).or_default();
            let expected = if *active { "stop" } else { "start" };
            assert_eq!(action, expected, "{name}: {serial} {code} {index}");
            *active = !*active;
            received.push((serial.clone(), code.clone(), action.clone(), *index));
        }
        // KeepAlives: one on connecting, then one per period.
        let times: Vec<Instant> = conn
            .frames
            .iter()
            .filter(|f| f.kind == Kind::Keepalive)
            .map(|f| f.at)
            .collect();
        let periods = config.duration.unwrap().as_secs_f64() / config.keepalive.as_secs_f64();
        assert!(
            times.len() >= periods.floor() as usize,
            "{name}: {serial}: {} keepalives",
            times.len()
        );
        let gaps: Vec<f64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!(
            (0.17..0.24).contains(&mean),
            "{name}: {serial}: mean keepalive gap {mean}"
        );
        assert!(
            gaps.iter().all(|g| (0.05..0.45).contains(g)),
            "{name}: {serial}: {gaps:?}"
        );
    }
    serials.sort();
    let expected: Vec<String> = (0..config.devices).map(|i| config.serial(i)).collect();
    assert_eq!(serials, expected, "{name}: every device identified");

    // What the server extracted is exactly what the simulator says it sent.
    received.sort();
    assert_eq!(received, announced(sent, |_| true), "{name}: events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_variant_decodes_cleanly() {
    let mut runs = Vec::new();
    for variant in Variant::ALL {
        let devices = if variant == Variant::Mixed {
            Variant::CONCRETE.len()
        } else {
            4
        };
        runs.push(tokio::spawn(async move {
            let listener = Listener::start(0, Duration::ZERO).await;
            let config = config(listener.addr, variant, devices);
            let (report, sent) = simulate(config.clone()).await;
            let conns = listener.finish().await;
            check_clean(variant.name(), &config, &report, &sent, &conns);
            let variants: BTreeMap<String, usize> =
                sent.iter().fold(BTreeMap::new(), |mut m, f| {
                    *m.entry(f.variant.to_string()).or_default() += 1;
                    m
                });
            if variant == Variant::Mixed {
                assert_eq!(variants.len(), Variant::CONCRETE.len(), "{variants:?}");
            } else {
                assert_eq!(variants.keys().collect::<Vec<_>>(), [variant.name()]);
            }
        }));
    }
    for run in runs {
        run.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_rates_are_sent_in_bursts() {
    for variant in [Variant::Dhip, Variant::DvripMask] {
        let listener = Listener::start(0, Duration::ZERO).await;
        let config = SimConfig {
            alarm_rate: 8_000.0,
            duration: Some(Duration::from_millis(800)),
            ..config(listener.addr, variant, 4)
        };
        let (report, sent) = simulate(config.clone()).await;
        let conns = listener.finish().await;
        check_clean(variant.name(), &config, &report, &sent, &conns);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_reconnect_when_the_server_drops_them() {
    let devices = Variant::CONCRETE.len();
    let listener = Listener::start(devices, Duration::from_millis(300)).await;
    let config = SimConfig {
        duration: Some(Duration::from_millis(1200)),
        ..config(listener.addr, Variant::Mixed, devices)
    };
    let (report, _) = simulate(config.clone()).await;
    let conns = listener.finish().await;
    assert_eq!(report.connected, devices, "{report:?}");
    assert_eq!(report.reconnects, devices as u64, "{report:?}");
    assert_eq!(report.disconnects, devices as u64, "{report:?}");
    assert_eq!(conns.len(), 2 * devices);
    let mut per_serial: HashMap<String, usize> = HashMap::new();
    for conn in &conns {
        let serial = conn.identity().expect("identified");
        *per_serial.entry(serial).or_default() += 1;
        if !conn.dropped {
            // The second connection is clean and again opens with the device's identity.
            let first = &conn.frames[0];
            assert!(
                first.serial.is_some() || first.domain.is_some(),
                "{first:?}"
            );
            for f in &conn.frames {
                assert_ne!(f.protocol, Protocol::Junk, "{f:?}");
                assert_eq!(f.error, None, "{f:?}");
            }
        }
    }
    assert_eq!(per_serial.len(), devices);
    assert!(per_serial.values().all(|&n| n == 2), "{per_serial:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_an_unbounded_run() {
    let listener = Listener::start(0, Duration::ZERO).await;
    let config = SimConfig {
        duration: None,
        ..config(listener.addr, Variant::Xm, 3)
    };
    let cancel = CancellationToken::new();
    let run = tokio::spawn(run(config, cancel.clone(), None));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cancelled = Instant::now();
    cancel.cancel();
    let report = run.await.unwrap().unwrap();
    assert!(cancelled.elapsed() < Duration::from_millis(500));
    assert_eq!(report.connected, 3, "{report:?}");
    assert!(report.keepalives_sent >= 6, "{report:?}");
    let conns = listener.finish().await;
    let events: u64 = conns
        .iter()
        .flat_map(|c| &c.frames)
        .map(|f| f.events.len() as u64)
        .sum();
    assert_eq!(events, report.alarm_events_sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_and_retried() {
    // A port that was just free: nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = SimConfig {
        duration: Some(Duration::from_millis(700)),
        ..config(addr, Variant::Json, 3)
    };
    let report = run(config, CancellationToken::new(), None).await.unwrap();
    assert_eq!(report.connected, 0);
    assert_eq!(report.frames_sent, 0);
    // First attempt, then retries after 100–200 ms and 200–400 ms.
    assert!(report.connect_failures >= 6, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_up_follows_the_connect_rate() {
    let listener = Listener::start(0, Duration::ZERO).await;
    let config = SimConfig {
        connect_rate: 50.0,
        alarm_rate: 0.0,
        keepalive: Duration::ZERO,
        duration: Some(Duration::from_millis(300)),
        ..config(listener.addr, Variant::DvripText, 40)
    };
    let report = run(config, CancellationToken::new(), None).await.unwrap();
    // About 50/s × 0.3 s = 15 devices started (the first at once); a loaded machine starts fewer, never
    // more than the rate allows.
    assert!((5..=18).contains(&report.connected), "{report:?}");
    assert_eq!(report.keepalives_sent, 0);
    assert_eq!(report.alarm_events_sent, 0);
    // Only the identifying self-reports went out: one per device connected when the run ended, and
    // one or two from devices whose connect completed between that count and the stop.
    let sent = report.frames_sent as usize;
    assert!(
        (report.connected..=report.connected + 2).contains(&sent),
        "{report:?}"
    );
    let conns = listener.finish().await;
    // (A device stopped right after its connect completed may not have sent its report.)
    assert!(conns
        .iter()
        .all(|c| c.frames.iter().all(|f| f.kind == Kind::Report)));
    let reports: usize = conns.iter().map(|c| c.frames.len()).sum();
    assert_eq!(reports as u64, report.frames_sent);
}

/// The alarm events in the store at `dir`, as `(serial, code, action, index)`, sorted; a DVRIP device's
/// `<serial>.sim.invalid` id counts as its serial.
fn stored_events(dir: &std::path::Path, only: impl Fn(&str) -> bool) -> EventList {
    let db = Db::open_read_only(dir).unwrap();
    let query = EventQuery {
        ascending: true,
        limit: Some(u32::MAX),
        ..EventQuery::default()
    };
    let mut events: EventList = db
        .events(&query)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind != "device" && e.event.synthetic.is_none())
        .map(|e| {
            let serial = e.event.device.trim_end_matches(".sim.invalid").to_owned();
            (
                serial,
                e.event.code,
                e.event.action.to_string(),
                e.event.index.unwrap_or(-1),
            )
        })
        .filter(|(serial, ..)| only(serial))
        .collect();
    events.sort();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_answers_every_http_request_after_storing_it() {
    for variant in [Variant::Http, Variant::Mixed] {
        let name = variant.name();
        let dir = tempfile::tempdir().unwrap();
        let mut server_config = alarm_center_server::Config::default();
        server_config.store.data_dir = dir.path().to_owned();
        server_config.server.timezone = "UTC".into();
        // Every frame archived, keepAlives included (the default samples them): counted below.
        server_config.store.keepalive_sample_interval = std::time::Duration::ZERO;
        server_config.api.enabled = false;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(server_config, listener).await.unwrap();
        let devices = if variant == Variant::Mixed {
            Variant::CONCRETE.len()
        } else {
            4
        };
        let config = config(server.local_addr(), variant, devices);
        let (report, sent) = simulate(config.clone()).await;
        assert_eq!(report.connected, devices, "{name}: {report:?}");
        assert_eq!(
            (
                report.connect_failures,
                report.reconnects,
                report.disconnects
            ),
            (0, 0, 0),
            "{name}: {report:?}"
        );
        assert_eq!(sent.len() as u64, report.frames_sent, "{name}");
        assert!(report.alarm_events_sent > 0, "{name}: {report:?}");
        check_http_answers(name, &report, &sent);
        assert!(report.http_answers_ok > 0, "{name}: {report:?}");

        // A 200 comes after the commit: the HTTP devices' events are all in the store already.
        let http_serials: Vec<String> = (0..devices)
            .filter(|&i| variant.for_device(i) == Variant::Http)
            .map(|i| config.serial(i))
            .collect();
        let is_http = |serial: &str| http_serials.iter().any(|s| s == serial);
        assert_eq!(
            stored_events(dir.path(), is_http),
            announced(&sent, |f| f.variant == Variant::Http),
            "{name}: HTTP events in the store before the server stops"
        );

        // Once the server has drained, every device's events are there, and every frame is archived.
        server.shutdown().await.unwrap();
        assert_eq!(
            stored_events(dir.path(), |_| true),
            announced(&sent, |_| true),
            "{name}: events in the store"
        );
        let db = Db::open_read_only(dir.path()).unwrap();
        assert_eq!(
            db.frame_count().unwrap() as u64,
            report.frames_sent,
            "{name}: archived frames"
        );
        // The HTTP devices are told apart by their X-Serial-Number, and report their own address.
        let rows = db.devices().unwrap();
        for (i, serial) in (0..devices)
            .filter(|&i| variant.for_device(i) == Variant::Http)
            .zip(&http_serials)
        {
            let row = rows
                .iter()
                .find(|r| &r.id == serial)
                .unwrap_or_else(|| panic!("{name}: no device {serial} in {rows:?}"));
            assert_eq!(row.serial.as_ref(), Some(serial), "{name}: {row:?}");
            assert_eq!(
                row.ip.as_deref(),
                Some(format!("198.18.0.{i}").as_str()),
                "{name}: {row:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_missing_http_answers_are_failures() {
    // Odd connections: the first request is answered 503 and the connection closed. Even ones: the
    // request is read, never answered, and the connection closed.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut nth = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            nth += 1;
            tokio::spawn(async move {
                let mut decoder = Decoder::default();
                let mut buf = vec![0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if decoder.feed(&buf[..n]).count() > 0 {
                        if nth % 2 == 1 {
                            let refused = http::response(503, &[], "busy\n", false, false);
                            let _ = stream.write_all(&refused).await;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
            });
        }
    });
    let config = SimConfig {
        duration: Some(Duration::from_millis(1500)),
        ..config(addr, Variant::Http, 1)
    };
    let (report, sent) = simulate(config).await;
    assert_eq!(report.http_answers_ok, 0, "{report:?}");
    assert_eq!(report.http_answers_failed, sent.len() as u64, "{report:?}");
    let refused = report.http_answer_statuses.get(&503).copied().unwrap_or(0);
    assert_eq!(
        report.http_answer_statuses.len(),
        usize::from(refused > 0),
        "{report:?}"
    );
    assert!(refused >= 1, "{report:?}");
    assert!(report.http_unanswered >= 1, "{report:?}");
    assert_eq!(
        refused + report.http_unanswered,
        report.http_answers_failed,
        "{report:?}"
    );
    // Each failure ended its connection; the device came back each time (unless the run stopped
    // during its backoff).
    assert_eq!(report.disconnects, report.http_answers_failed, "{report:?}");
    assert!(report.reconnects >= 2, "{report:?}");
    assert!(
        (0..=1).contains(&(report.disconnects - report.reconnects)),
        "{report:?}"
    );
}

#[tokio::test]
async fn devices_connect_from_the_given_source_addresses() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = peers.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            seen.lock().unwrap().push(peer.ip().to_string());
            // Held until the run ends.
            tokio::spawn(async move {
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let config = SimConfig {
        sources: alarm_center_sim::parse_sources("127.0.0.2-127.0.0.4").unwrap(),
        alarm_rate: 0.0,
        duration: Some(Duration::from_millis(500)),
        ..config(target, Variant::Xm, 6)
    };
    let report = alarm_center_sim::run(config, CancellationToken::new(), None)
        .await
        .unwrap();
    assert_eq!(report.connect_failures, 0);
    let mut peers = peers.lock().unwrap().clone();
    peers.sort();
    assert_eq!(
        peers,
        [
            "127.0.0.2",
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.4"
        ]
    );
}
