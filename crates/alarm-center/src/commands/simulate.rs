//! `alarm-center simulate`: simulated Dahua/XM devices that connect to a server and push keepAlives and
//! alarms in every wire variant (load tests, demos, end-to-end checks).
//!
//! Standard output: one JSON line per frame sent (unless `--quiet`), then `{"report":{…}}`.
//! Standard error: a progress line every 5 s.

use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use alarm_center_sim::{CancellationToken, SentFrame, SimConfig, SimReport, SimStats, Variant};
use anyhow::{Context, Result};
use clap::Args;

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Simulate devices: connect to a server and push keepAlives and alarms in every wire variant.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The server to connect to.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:15002")]
    target: String,
    /// Number of simulated devices, one TCP connection each (`ulimit -n` must allow that many
    /// descriptors, plus a few).
    #[arg(long, value_name = "N", default_value_t = 1)]
    devices: usize,
    /// KeepAlive period of each device, e.g. `10s`, `500ms`; `0s` sends none.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    keepalive: Duration,
    /// Alarm events per second in total across all devices (each event is one start or stop, in its own
    /// frame).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    alarm_rate: f64,
    /// Wire variant: dvrip-mask, dvrip-text, dvrip-json, dhip, json, xm, http, or mixed (device i speaks
    /// the (i mod 7)-th of the others, in that order).
    #[arg(long, value_name = "VARIANT", default_value_t = Variant::Mixed)]
    variant: Variant,
    /// Stop after this long, e.g. `30s`, `5m` (default: run until Ctrl-C).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Device serials are this prefix plus the 0-based device index in six digits (SIM000000, …).
    #[arg(long, value_name = "PREFIX", default_value = "SIM")]
    serial_prefix: String,
    /// New connections per second while ramping up; 0 connects every device at once.
    #[arg(long, value_name = "PER_SEC", default_value_t = 1000.0)]
    connect_rate: f64,
    /// Local addresses to connect from, device i from the (i mod n)-th: comma-separated addresses or
    /// IPv4 ranges, e.g. `127.0.0.1-127.0.0.16`. One address has ~28,000 ephemeral ports towards a
    /// target, so more devices than that need several (default: the kernel picks).
    #[arg(long, value_name = "ADDRESSES", value_parser = parse_sources)]
    sources: Option<Sources>,
    /// Do not print a line per frame sent (the final report is still printed).
    #[arg(long)]
    quiet: bool,
}

/// The addresses of `--sources` (one argument: clap would take a bare `Vec` for several).
#[derive(Debug, Clone)]
pub(crate) struct Sources(Vec<IpAddr>);

fn parse_sources(text: &str) -> Result<Sources, String> {
    alarm_center_sim::parse_sources(text).map(Sources)
}

/// Resolves `HOST:PORT` to its first address.
fn resolve(target: &str) -> Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("--target {target:?}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--target {target:?}: the host has no address"))
}

/// Writes lines to standard output on a thread of its own, so that device tasks never wait on the
/// terminal except when the queue is full. A write error (the reader went away) stops the run.
struct Printer {
    lines: mpsc::SyncSender<String>,
    thread: thread::JoinHandle<io::Result<()>>,
}

impl Printer {
    fn start(cancel: CancellationToken) -> Printer {
        let (lines, queue) = mpsc::sync_channel::<String>(16 * 1024);
        let thread = thread::spawn(move || {
            let result = print_lines(&queue);
            if result.is_err() {
                cancel.cancel();
            }
            result
        });
        Printer { lines, thread }
    }

    /// Prints `last`, then waits for every queued line to be written.
    fn finish(self, last: String) -> Result<()> {
        let _ = self.lines.send(last);
        drop(self.lines);
        match self.thread.join() {
            Ok(result) => result.context("writing to standard output"),
            Err(_) => anyhow::bail!("the output thread panicked"),
        }
    }
}

fn print_lines(queue: &mpsc::Receiver<String>) -> io::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    loop {
        let line = match queue.try_recv() {
            Ok(line) => line,
            Err(mpsc::TryRecvError::Empty) => {
                // Idle: let the reader see what we have, then wait.
                out.flush()?;
                match queue.recv() {
                    Ok(line) => line,
                    Err(mpsc::RecvError) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `simulate: 9800/10000 connected, 2420 frames/s, 867 events/s, …` over the last interval.
fn progress_line(devices: usize, now: &SimReport, before: &SimReport) -> String {
    let secs = now
        .elapsed
        .saturating_sub(before.elapsed)
        .as_secs_f64()
        .max(1e-9);
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    format!(
        "simulate: {}/{devices} connected, {:.0} frames/s, {:.0} events/s, {:.0} keepalives/s, {:.1} MB/s; {} events, {} reconnects, {} connect failures in total",
        now.connected,
        rate(now.frames_sent, before.frames_sent),
        rate(now.alarm_events_sent, before.alarm_events_sent),
        rate(now.keepalives_sent, before.keepalives_sent),
        rate(now.bytes_sent, before.bytes_sent) / 1e6,
        now.alarm_events_sent,
        now.reconnects,
        now.connect_failures,
    )
}

pub(crate) fn run(args: &SimulateArgs) -> Result<()> {
    let config = SimConfig {
        target: resolve(&args.target)?,
        devices: args.devices,
        keepalive: args.keepalive,
        alarm_rate: args.alarm_rate,
        variant: args.variant,
        duration: args.duration,
        serial_prefix: args.serial_prefix.clone(),
        connect_rate: args.connect_rate,
        sources: args.sources.clone().map(|s| s.0).unwrap_or_default(),
    };
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("simulate")
        .build()
        .context("starting the async runtime")?;

    let cancel = CancellationToken::new();
    let printer = Printer::start(cancel.clone());
    let on_sent: Option<alarm_center_sim::OnSent> = (!args.quiet).then(|| {
        let lines = printer.lines.clone();
        Box::new(move |frame: &SentFrame| {
            if let Ok(line) = serde_json::to_string(frame) {
                // Fails only once the output is gone, which stops the run anyway.
                let _ = lines.send(line);
            }
        }) as alarm_center_sim::OnSent
    });
    eprintln!(
        "simulate: {} {} device(s) -> {} ({}), keepAlive every {}, {} alarm events/s, for {}",
        config.devices,
        config.variant,
        args.target,
        config.target,
        humantime::format_duration(config.keepalive),
        config.alarm_rate,
        config.duration.map_or_else(
            || "ever (Ctrl-C stops)".to_owned(),
            |d| humantime::format_duration(d).to_string()
        ),
    );

    let stats = SimStats::new();
    let devices = config.devices;
    let result = runtime.block_on(async {
        let interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("simulate: interrupted, closing connections");
                interrupt.cancel();
            }
        });
        let watched = stats.clone();
        let progress = tokio::spawn(async move {
            let start = tokio::time::Instant::now() + PROGRESS_EVERY;
            let mut tick = tokio::time::interval_at(start, PROGRESS_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut before = watched.snapshot();
            loop {
                tick.tick().await;
                let now = watched.snapshot();
                eprintln!("{}", progress_line(devices, &now, &before));
                before = now;
            }
        });
        let result = alarm_center_sim::run_with_stats(config, cancel.clone(), on_sent, stats).await;
        progress.abort();
        result
    });
    // Leave the Ctrl-C listener behind rather than wait for it.
    runtime.shutdown_background();
    let report = result?;
    /// The last line of the output.
    #[derive(serde::Serialize)]
    struct Last<'a> {
        report: &'a SimReport,
    }
    let line = serde_json::to_string(&Last { report: &report })?;
    printer.finish(line)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    #[test]
    fn sources_are_one_argument_of_addresses_and_ranges() {
        let cli = Cli::try_parse_from([
            "alarm-center",
            "simulate",
            "--sources",
            "127.0.0.1-127.0.0.3,127.0.1.1",
        ])
        .unwrap();
        let Command::Simulate(args) = cli.command else {
            panic!("not simulate");
        };
        let sources = args.sources.expect("--sources given").0;
        assert_eq!(sources.len(), 4);
        assert_eq!(sources[3].to_string(), "127.0.1.1");
        assert!(Cli::try_parse_from(["alarm-center", "simulate", "--sources", "nowhere"]).is_err());
    }
}
