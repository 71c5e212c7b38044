//! One TCP connection per alarm, as XM cameras send them: a load generator (not a test), the Rust
//! successor of `scripts/conn-per-alarm.py` (which tops out at 1,400–8,400 connections/s).
//!
//! Each of `--cameras` cameras sends XM message 1508 alarm pushes (`HumanDetect`, alternating `Start`
//! and `Stop`, serial `CAM-<n>`), every frame on a fresh connection: bind a source address, connect,
//! send the one frame, close. Camera `n` connects from `127.0.0.<1 + n % sources>`; a camera sends
//! its next frame only after the previous connection is closed, so one camera's start and stop leave
//! in order, on two connections, as real cameras send them. Frames go out at `--rate` frames/s in
//! total (`0`: as fast as the cameras and `--concurrency`, the most connections open at once, allow)
//! for `--seconds`, then it prints one line:
//!
//! `sent=… failed_connects=… failed_writes=… slow_connects=… seconds=… frames_per_s=…`
//!
//! (`slow_connects`: connects that took a second or more — the kernel retransmitting a SYN that a full
//! accept queue dropped.) It targets 127.0.0.0/8 only and stops by itself.
//!
//! Closing: by default a connection ends with a FIN, as a camera closes it, so each leaves a TIME_WAIT
//! socket on the generator's side (the side that closes first). Every socket sets `SO_REUSEADDR`, so
//! that binding a source address may pick a port whose previous connection is still in TIME_WAIT;
//! Linux then lets `connect` reuse that 4-tuple on loopback (`net.ipv4.tcp_tw_reuse = 2`, the
//! default). That holds while each source address has ports to spare: one address has about 28,000
//! (`net.ipv4.ip_local_port_range`), each held 60 s in TIME_WAIT, so spread high rates over many
//! `--sources` (40 carry 12,000 connections/s). `--zero-linger` closes with a RST instead (`SO_LINGER`
//! 0: no TIME_WAIT at all) for runs from one address at more than a few hundred connections/s; the
//! server then sees "connection reset" after the frame instead of an end of stream.
//!
//! ```text
//! cargo run --release -p alarm-center-sim --example conn_per_alarm -- \
//!     --target 127.0.0.1:25002 --cameras 200 --sources 40 --rate 12000 --seconds 20
//! ```
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alarm_center_proto::encode;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What to send, where, how fast and for how long.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    /// Where the frames go (127.0.0.0/8 only).
    target: SocketAddr,
    cameras: usize,
    /// Source addresses 127.0.0.1 ..= 127.0.0.<sources>.
    sources: u8,
    /// Frames per second in total; 0 = as fast as possible.
    rate: u64,
    /// Connections open at once, at most.
    concurrency: usize,
    duration: Duration,
    /// Close with a RST (`SO_LINGER` 0) instead of a FIN.
    zero_linger: bool,
    /// The alarm's event code.
    event: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            target: SocketAddr::from((Ipv4Addr::LOCALHOST, 15002)),
            cameras: 100,
            sources: 1,
            rate: 0,
            concurrency: 256,
            duration: Duration::from_secs(20),
            zero_linger: false,
            event: "HumanDetect".into(),
        }
    }
}

const USAGE: &str = "usage: conn_per_alarm [--target 127.0.0.1:PORT] [--cameras N] [--sources S (1-254)] \
[--rate FRAMES_PER_S (0 = as fast as possible)] [--concurrency C] [--seconds SECS] [--zero-linger] [--event CODE]";

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options::default();
        while let Some(flag) = args.next() {
            if flag == "--zero-linger" {
                options.zero_linger = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.into());
            }
            let value = args
                .next()
                .ok_or(format!("{flag} needs a value\n{USAGE}"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
            match flag.as_str() {
                "--target" => options.target = value.parse().map_err(|e| bad(&e))?,
                "--cameras" => options.cameras = value.parse().map_err(|e| bad(&e))?,
                "--sources" => options.sources = value.parse().map_err(|e| bad(&e))?,
                "--rate" => options.rate = value.parse().map_err(|e| bad(&e))?,
                "--concurrency" => options.concurrency = value.parse().map_err(|e| bad(&e))?,
                "--seconds" => {
                    let secs: f64 = value.parse().map_err(|e| bad(&e))?;
                    options.duration = Duration::try_from_secs_f64(secs).map_err(|e| bad(&e))?;
                }
                "--event" => options.event = value,
                _ => return Err(format!("unknown option {flag}\n{USAGE}")),
            }
        }
        options.check()?;
        Ok(options)
    }

    fn check(&self) -> Result<(), String> {
        match self.target.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => {}
            ip => return Err(format!("targets 127.0.0.0/8 only, not {ip}")),
        }
        if self.sources == 0 || self.sources == 255 {
            return Err("--sources must be 1 to 254".into());
        }
        if self.cameras == 0 || self.concurrency == 0 {
            return Err("--cameras and --concurrency must be at least 1".into());
        }
        Ok(())
    }

    /// Camera `n`'s source address.
    fn source(&self, n: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + (n % self.sources as usize) as u8,
        ))
    }
}

/// What a run did.
#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    failed_connects: AtomicU64,
    failed_writes: AtomicU64,
    slow_connects: AtomicU64,
}

/// A run's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Report {
    sent: u64,
    failed_connects: u64,
    failed_writes: u64,
    slow_connects: u64,
    elapsed: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "sent={} failed_connects={} failed_writes={} slow_connects={} seconds={secs:.2} frames_per_s={:.0}",
            self.sent,
            self.failed_connects,
            self.failed_writes,
            self.slow_connects,
            self.sent as f64 / secs.max(1e-9)
        )
    }
}

/// Why one frame did not go out.
enum Failed {
    Connect,
    Write,
}

/// Sends the frames of `options`; returns when the duration is over and every connection is closed.
async fn run(options: Options) -> Report {
    let options = Arc::new(options);
    let counts = Arc::new(Counts::default());
    let open = Arc::new(Semaphore::new(options.concurrency));
    // Frame k of the run (all cameras together) is due at `began + k / rate`.
    let next = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let deadline = began + options.duration;
    let cameras: Vec<_> = (0..options.cameras)
        .map(|n| {
            let (options, counts, open, next) =
                (options.clone(), counts.clone(), open.clone(), next.clone());
            tokio::spawn(async move {
                camera(n, &options, &counts, &open, &next, began, deadline).await;
            })
        })
        .collect();
    for camera in cameras {
        let _ = camera.await;
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Report {
        sent: get(&counts.sent),
        failed_connects: get(&counts.failed_connects),
        failed_writes: get(&counts.failed_writes),
        slow_connects: get(&counts.slow_connects),
        elapsed: began.elapsed(),
    }
}

/// Camera `n`: one frame per connection, start and stop alternating, until `deadline`.
async fn camera(
    n: usize,
    options: &Options,
    counts: &Counts,
    open: &Semaphore,
    next: &AtomicU64,
    began: Instant,
    deadline: Instant,
) {
    let serial = format!("CAM-{n}");
    let source = options.source(n);
    let device_ip = Ipv4Addr::new(192, 168, (n / 250) as u8, (n % 250) as u8 + 1);
    let mut start = true;
    loop {
        // The clock ends the run too, not only the schedule: attempts that fail (a port search that
        // found no free port, a refused connect) take their turns as well, but must not outlast it.
        if Instant::now() >= deadline {
            return;
        }
        if options.rate > 0 {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let due = began + Duration::from_secs_f64(k as f64 / options.rate as f64);
            if due >= deadline {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
        let Ok(_permit) = open.acquire().await else {
            return;
        };
        let frame = encode::xm_alarm(&serial, device_ip, 0, &options.event, start, &local_time());
        match send_one(options, source, &frame, counts).await {
            Ok(()) => {
                counts.sent.fetch_add(1, Ordering::Relaxed);
                start = !start;
            }
            Err(failed) => {
                let counter = match failed {
                    Failed::Connect => &counts.failed_connects,
                    Failed::Write => &counts.failed_writes,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                // The same frame again after a pause (a camera retries its alarm).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection: bind `source`, connect, write `frame`, close.
async fn send_one(
    options: &Options,
    source: IpAddr,
    frame: &[u8],
    counts: &Counts,
) -> Result<(), Failed> {
    let connecting = Instant::now();
    let mut stream = connect(options, source)
        .await
        .map_err(|_| Failed::Connect)?;
    if connecting.elapsed() >= Duration::from_secs(1) {
        counts.slow_connects.fetch_add(1, Ordering::Relaxed);
    }
    stream.write_all(frame).await.map_err(|_| Failed::Write)?;
    // Dropping closes: a FIN after the frame (or a RST with --zero-linger).
    drop(stream);
    Ok(())
}

async fn connect(options: &Options, source: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    if options.zero_linger {
        socket.set_zero_linger()?;
    }
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(options.target).await
}

/// Local wall-clock time as XM cameras write it (`StartTime`).
fn local_time() -> String {
    jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S").to_string()
}

#[tokio::main]
async fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "conn_per_alarm: {} cameras from {} source addresses to {}, {} for {:?}{}",
        options.cameras,
        options.sources,
        options.target,
        match options.rate {
            0 => format!(
                "as fast as possible ({} connections at once at most)",
                options.concurrency
            ),
            rate => format!("{rate} frames/s"),
        },
        options.duration,
        if options.zero_linger {
            ", closing with RST"
        } else {
            ""
        }
    );
    println!("{}", run(options).await);
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    use alarm_center_proto::{Decoder, DecoderConfig};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// What a counting listener saw: per connection, its source address and the frames' bodies.
    type Seen = Arc<Mutex<Vec<(IpAddr, Vec<serde_json::Value>)>>>;

    /// A listener on 127.0.0.1:0 that frames each connection with the server's decoder.
    async fn listener() -> (SocketAddr, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, peer)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut decoder = Decoder::new(DecoderConfig::default());
                    let mut bodies = Vec::new();
                    let mut buf = vec![0; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        for frame in decoder.feed(&buf[..n]) {
                            let body = &frame.bytes[20..frame.bytes.len() - 1];
                            bodies.push(serde_json::from_slice(body).unwrap());
                        }
                    }
                    record.lock().unwrap().push((peer.ip(), bodies));
                });
            }
        });
        (addr, seen)
    }

    /// Waits until the listener recorded `connections` closed connections.
    async fn wait_for(seen: &Seen, connections: u64) {
        for _ in 0..500 {
            if seen.lock().unwrap().len() as u64 >= connections {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_frame_sent_arrives_on_its_own_connection_from_every_source() {
        let (target, seen) = listener().await;
        let options = Options {
            target,
            cameras: 6,
            sources: 3,
            duration: Duration::from_millis(300),
            ..Options::default()
        };
        let report = run(options.clone()).await;
        assert!(report.sent >= 6, "{report}");
        assert_eq!(report.failed_connects + report.failed_writes, 0, "{report}");
        wait_for(&seen, report.sent).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, report.sent, "one connection per frame");
        assert!(seen.iter().all(|(_, bodies)| bodies.len() == 1));
        let sources: BTreeSet<IpAddr> = seen.iter().map(|(ip, _)| *ip).collect();
        let expected: BTreeSet<IpAddr> = (1..=3)
            .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .collect();
        assert_eq!(sources, expected);
        // Each camera's frames are XM alarm pushes from its own source, starts and stops in turn.
        let mut per_camera: BTreeMap<String, Vec<(IpAddr, String)>> = BTreeMap::new();
        for (ip, bodies) in seen.iter() {
            let body = &bodies[0];
            assert_eq!(body["Event"], "HumanDetect");
            per_camera
                .entry(body["SerialID"].as_str().unwrap().to_owned())
                .or_default()
                .push((*ip, body["Status"].as_str().unwrap().to_owned()));
        }
        assert_eq!(per_camera.len(), 6);
        for (serial, frames) in per_camera {
            let n: usize = serial.trim_start_matches("CAM-").parse().unwrap();
            let starts = frames.iter().filter(|(_, s)| s == "Start").count();
            let stops = frames.len() - starts;
            assert!(
                starts == stops || starts == stops + 1,
                "{serial}: {frames:?}"
            );
            assert!(
                frames.iter().all(|(ip, _)| *ip == options.source(n)),
                "{serial}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_is_kept_and_the_run_stops_by_itself() {
        let (target, seen) = listener().await;
        let report = run(Options {
            target,
            cameras: 4,
            rate: 100,
            duration: Duration::from_millis(500),
            ..Options::default()
        })
        .await;
        // 50 frames due in 0.5 s (the last ones may still be in flight at the deadline).
        assert!((45..=50).contains(&report.sent), "{report}");
        assert!(report.elapsed < Duration::from_secs(2), "{report}");
        wait_for(&seen, report.sent).await;
        assert_eq!(seen.lock().unwrap().len() as u64, report.sent);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_connects_are_counted_and_do_not_outlast_the_run() {
        // Nothing listens there: every connect is refused. Before, each failed attempt took one turn
        // of the rate's schedule, so a run at a high rate went on long past its duration.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = closed.local_addr().unwrap();
        drop(closed);
        let report = run(Options {
            target,
            cameras: 4,
            rate: 1_000_000,
            duration: Duration::from_millis(200),
            ..Options::default()
        })
        .await;
        assert_eq!(report.sent, 0, "{report}");
        assert!(report.failed_connects > 0, "{report}");
        assert!(report.elapsed < Duration::from_secs(1), "{report}");
    }

    #[test]
    fn only_loopback_targets_and_sane_counts() {
        let parse = |args: &[&str]| Options::parse(args.iter().map(|a| a.to_string()));
        let options = parse(&[
            "--target",
            "127.0.0.1:25002",
            "--cameras",
            "50",
            "--sources",
            "40",
            "--rate",
            "12000",
            "--seconds",
            "1.5",
            "--zero-linger",
        ])
        .unwrap();
        assert_eq!(options.cameras, 50);
        assert_eq!(options.duration, Duration::from_millis(1500));
        assert!(options.zero_linger);
        assert_eq!(options.source(41), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(parse(&["--target", "192.0.2.1:25002"]).is_err());
        assert!(parse(&["--target", "[::1]:25002"]).is_err());
        assert!(parse(&["--sources", "0"]).is_err());
        assert!(parse(&["--sources", "255"]).is_err());
        assert!(parse(&["--cameras"]).is_err());
        assert!(parse(&["--bogus", "1"]).is_err());
    }
}
