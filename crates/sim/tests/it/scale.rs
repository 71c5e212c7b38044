//! Load checks, ignored by default (they need `ulimit -n` above 2 × devices when the listener runs in
//! the same process, and take several seconds). Run them in release mode:
//!
//! ```text
//! cargo test --release -p alarm-center-sim --test it -- --ignored --nocapture scale::
//! ```
//!
//! `SIM_SCALE_TARGET=host:port` points them at an external server (or drain listener) instead of the
//! in-process one (a server needs `server.max-new-devices-per-ip-per-minute` and
//! `server.max-new-devices-per-minute` at 0: every simulated device is new and comes from one address); `SIM_SCALE_DEVICES` overrides the device count of the 10k test. The mixed runs include
//! HTTP devices, which wait for an answer to each request: a drain that does not answer HTTP requests
//! makes them time out (5 s) and reconnect.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alarm_center_proto::{http, Decoder, Protocol};
use alarm_center_sim::{run, SimConfig, SimReport, Variant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The external target, or a listener that reads and discards everything (counting bytes), answering
/// HTTP requests with `200 OK` at once (only connections that start with an HTTP request are decoded).
async fn target() -> (SocketAddr, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    if let Ok(target) = std::env::var("SIM_SCALE_TARGET") {
        return (target.parse().expect("SIM_SCALE_TARGET"), received);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut http: Option<Decoder> = None;
                let mut first = true;
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    if std::mem::take(&mut first)
                        && (buf[..n].starts_with(b"POST ") || buf[..n].starts_with(b"GET "))
                    {
                        http = Some(Decoder::default());
                    }
                    let Some(decoder) = &mut http else {
                        continue;
                    };
                    let requests = decoder
                        .feed(&buf[..n])
                        .filter(|f| f.protocol == Protocol::Http)
                        .count();
                    let answer = http::response(200, &[], "OK\n", true, false);
                    if stream.write_all(&answer.repeat(requests)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// User + system CPU seconds of this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

async fn measure(config: SimConfig) -> SimReport {
    let cpu = cpu_seconds();
    let report = run(config, CancellationToken::new(), None).await.unwrap();
    let secs = report.elapsed.as_secs_f64();
    eprintln!(
        "{}\ncpu {:.2} s over {secs:.2} s = {:.0} % of one core; {:.0} frames/s, {:.0} events/s",
        serde_json::to_string(&report).unwrap(),
        cpu_seconds() - cpu,
        100.0 * (cpu_seconds() - cpu) / secs,
        report.frames_sent as f64 / secs,
        report.alarm_events_sent as f64 / secs,
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test: needs ulimit -n above 2 × devices; run with --release --ignored"]
async fn ten_thousand_devices() {
    let devices = std::env::var("SIM_SCALE_DEVICES")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(10_000);
    let (target, received) = target().await;
    let report = measure(SimConfig {
        target,
        devices,
        keepalive: Duration::from_secs(10),
        alarm_rate: 1_000.0,
        variant: Variant::Mixed,
        duration: Some(Duration::from_secs(15)),
        serial_prefix: "SIM".into(),
        connect_rate: 2_000.0,
        sources: Vec::new(),
    })
    .await;
    eprintln!(
        "listener received {} bytes",
        received.load(Ordering::Relaxed)
    );
    assert_eq!(report.connected, devices);
    assert_eq!(report.connect_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test: run with --release --ignored"]
async fn fifty_thousand_events_per_second() {
    let (target, _) = target().await;
    let report = measure(SimConfig {
        target,
        devices: 100,
        keepalive: Duration::from_secs(10),
        alarm_rate: 50_000.0,
        variant: Variant::Mixed,
        duration: Some(Duration::from_secs(5)),
        serial_prefix: "SIM".into(),
        connect_rate: 0.0,
        sources: Vec::new(),
    })
    .await;
    assert_eq!(report.connected, 100);
    let rate = report.alarm_events_sent as f64 / report.elapsed.as_secs_f64();
    assert!(rate > 45_000.0, "{rate} events/s");
}
