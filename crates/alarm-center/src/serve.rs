//! `alarm-center serve`, `config check`, `events`, `devices`.

use std::io::Write;
use std::path::PathBuf;

use alarm_center_server::Config;
use alarm_center_store::{Db, EventQuery};
use anyhow::{bail, Result};
use clap::Args;

use crate::startup::Listen;
use tokio_util::sync::CancellationToken;

/// Where the configuration comes from; shared by every command that reads the store.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// TOML configuration file (see docs/config.example.toml). Without it the embedded defaults apply.
    #[arg(long, short = 'c', env = "ALARM_CENTER_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `store.data-dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    pub(crate) fn load(&self) -> Result<Config> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(dir) = &self.data_dir {
            config.store.data_dir = dir.clone();
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address devices connect to (overrides `server.listen`): `host:port` (`0.0.0.0:15002`,
    /// `[::]:15002`, `localhost:15002`), or a port alone (`15002`, `:15002`) on `server.listen`'s address.
    #[arg(long, value_name = "ADDR", value_parser = crate::startup::parse_listen)]
    listen: Option<Listen>,
    /// Address of the web UI and API (overrides `api.listen`): `host:port`, or a port alone (`8081`)
    /// on `api.listen`'s address (127.0.0.1 by default).
    #[arg(long, value_name = "ADDR", value_parser = crate::startup::parse_listen)]
    api_listen: Option<Listen>,
    /// Print every committed event as one JSON line on standard output (`[sinks.stdout]`).
    #[arg(long)]
    stdout: bool,
    /// Start even when the start-up check of the store (`PRAGMA quick_check`) finds it damaged.
    #[arg(long)]
    force: bool,
}

pub(crate) fn serve(args: &ServeArgs) -> Result<()> {
    let mut config = args.config.load()?;
    if let Some(listen) = args.listen {
        config.server.listen = listen.on(config.server.listen);
    }
    if let Some(listen) = args.api_listen {
        config.api.listen = listen.on(config.api.listen);
        // A non-loopback API needs a token: the same rules as for the file.
        config.validate()?;
    }
    if args.stdout {
        config.sinks.stdout.enabled = true;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // The listeners first: a busy port stops the start before the data directory is touched.
        let (devices, api) = crate::startup::bind(&config).await?;
        // Before anything reads or changes the store: one server per data directory.
        let _lock = alarm_center_server::data_dir_lock::lock_data_dir(&config.store.data_dir)?;
        check_store(&config.store.data_dir, args.force)?;
        alarm_center_server::raise_open_files_limit(&config);
        let stop = CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        let banner_config = config.clone();
        let server = alarm_center_server::Server::start_bound(config, devices, api).await?;
        let banner = crate::startup::banner(
            &banner_config,
            server.local_addr(),
            server.api_addr(),
            &banner_config
                .store
                .data_dir
                .join(alarm_center_store::DB_FILE),
        );
        // One block on standard error, beside the log (a closed standard error is no reason to stop).
        let _ = std::io::stderr().lock().write_all(banner.as_bytes());
        stop.cancelled().await;
        server.shutdown().await?;
        Ok(())
    })
}

/// Checks the store's pages and b-trees (`PRAGMA quick_check`) before anything writes to it, and refuses
/// a damaged one (a store damaged inside keeps failing in ways that look like other problems) unless
/// `force`.
fn check_store(data_dir: &std::path::Path, force: bool) -> Result<()> {
    let path = data_dir.join(alarm_center_store::DB_FILE);
    if !path.exists() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    tracing::info!(path = %path.display(), "checking the store (PRAGMA quick_check)");
    let problem = match Db::quick_check(data_dir) {
        Ok(None) => {
            tracing::info!(took = ?started.elapsed(), "store checked: sound");
            return Ok(());
        }
        Ok(Some(problem)) => problem,
        Err(e) => format!("it cannot be checked: {e}"),
    };
    if force {
        tracing::error!(path = %path.display(), problem = %problem, "the store is damaged; starting anyway (--force): reads and writes that touch the damaged pages will fail");
        return Ok(());
    }
    let p = path.display();
    bail!(
        "the store {p} is damaged (PRAGMA quick_check):\n  {}\n\
         Nothing was started. To proceed, stop anything else that uses it and keep a copy \
         (cp {p} {p}.damaged), then either\n\
         - recover what is readable: sqlite3 {p}.damaged .recover | sqlite3 {p}.recovered, then move \
         {p}.recovered to {p} and delete {p}-wal and {p}-shm;\n\
         - or move {p} aside to start with an empty store;\n\
         - or start anyway with `alarm-center serve --force` (whatever touches the damaged pages will \
         fail).",
        problem.replace('\n', "\n  ")
    )
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The configuration file to check (default: the embedded defaults plus environment).
    #[arg(long, short = 'c', env = "ALARM_CENTER_CONFIG")]
    config: Option<PathBuf>,
}

pub(crate) fn check(args: &CheckArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref(), std::env::vars())?;
    let origin = args
        .config
        .as_ref()
        .map_or("embedded defaults".to_owned(), |p| p.display().to_string());
    println!(
        "{origin}: OK — listen {}, data dir {}, {} configured device(s), unknown devices {}",
        config.server.listen,
        config.store.data_dir.display(),
        config.devices.len(),
        if config.server.allow_unknown_devices {
            "accepted"
        } else {
            "refused"
        }
    );
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only this device id.
    #[arg(long)]
    device: Option<String>,
    /// Only this event code (e.g. VideoMotion).
    #[arg(long)]
    code: Option<String>,
    /// Only events received since: a duration ago (`10m`, `2h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_since(text: &str) -> Result<i64> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(alarm_center_server::time::now_ms() - ago.as_millis() as i64);
    }
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Ok(t.as_millisecond()),
        Err(_) => bail!("--since {text:?}: give a duration such as 10m or 2h, or an RFC 3339 time such as 2024-05-01T10:00:00Z"),
    }
}

fn open_store(config: &ConfigArgs) -> Result<Db> {
    let config = config.load()?;
    let dir = &config.store.data_dir;
    if !dir.join(alarm_center_store::DB_FILE).exists() {
        bail!(
            "no store in {} (start `alarm-center serve` first, or pass --data-dir)",
            dir.display()
        );
    }
    Ok(Db::open_read_only(dir)?)
}

pub(crate) fn events(args: &EventsArgs) -> Result<()> {
    let db = open_store(&args.config)?;
    let query = EventQuery {
        device: args.device.clone(),
        code: args.code.clone(),
        since: args.since.as_deref().map(parse_since).transpose()?,
        limit: Some(args.limit),
        ..EventQuery::default()
    };
    let events = db.events(&query)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        for e in &events {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        }
    } else {
        writeln!(
            out,
            "{:>8}  {:<24}  {:<20}  {:<24}  {:<6}  {:>3}  DEVICE TIME",
            "ID", "RECEIVED", "DEVICE", "CODE", "ACTION", "CH"
        )?;
        for e in &events {
            let channel = match (e.channel, &e.channel_name) {
                (Some(c), Some(name)) => format!("{c} ({name})"),
                (Some(c), None) => c.to_string(),
                (None, _) => "-".to_owned(),
            };
            let synthetic = e
                .synthetic
                .as_deref()
                .map(|s| format!(" (synthetic: {s})"))
                .unwrap_or_default();
            writeln!(
                out,
                "{:>8}  {:<24}  {:<20}  {:<24}  {:<6}  {:>3}  {}{synthetic}",
                e.id,
                e.received_at,
                e.device,
                e.code,
                e.action,
                channel,
                e.device_time.as_deref().unwrap_or("-")
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct DevicesArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn devices(args: &DevicesArgs) -> Result<()> {
    let db = open_store(&args.config)?;
    let devices = db.devices()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        for d in &devices {
            serde_json::to_writer(&mut out, d)?;
            writeln!(out)?;
        }
    } else {
        writeln!(
            out,
            "{:<24}  {:<7}  {:<24}  {:<22}  {:<6}  IDENTITY",
            "DEVICE", "STATE", "LAST SEEN", "PEER", "PROTO"
        )?;
        for d in &devices {
            let identity = [
                ("serial", &d.serial),
                ("mac", &d.mac),
                ("domain", &d.domain),
                ("ip", &d.ip),
            ]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
            writeln!(
                out,
                "{:<24}  {:<7}  {:<24}  {:<22}  {:<6}  {}",
                d.name
                    .as_ref()
                    .map_or(d.id.clone(), |n| format!("{} ({n})", d.id)),
                d.state,
                d.last_seen,
                d.peer.as_deref().unwrap_or("-"),
                d.protocol.as_deref().unwrap_or("-"),
                identity
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct SinksArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// Each sink's cursor, lag (events in the log after it), counters and last error.
pub(crate) fn sinks(args: &SinksArgs) -> Result<()> {
    let db = open_store(&args.config)?;
    let last = db.last_event_id()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let cursors = db.sink_cursors()?;
    if args.json {
        for c in &cursors {
            let mut value = serde_json::to_value(c)?;
            value["lag"] = serde_json::json!(last - c.position);
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
        }
    } else {
        writeln!(
            out,
            "{:<22}  {:>9}  {:>7}  {:>9}  {:>8}  {:>5}  {:>8}  {:<24}  LAST ERROR",
            "SINK", "POSITION", "LAG", "DELIVERED", "FILTERED", "DEAD", "FAILURES", "SAVED"
        )?;
        for c in &cursors {
            writeln!(
                out,
                "{:<22}  {:>9}  {:>7}  {:>9}  {:>8}  {:>5}  {:>8}  {:<24}  {}",
                c.sink,
                c.position,
                last - c.position,
                c.delivered,
                c.filtered,
                c.dead_letters,
                c.failures,
                c.updated_at,
                c.last_error.as_deref().map_or("-".to_owned(), |e| format!(
                    "{e} ({})",
                    c.last_error_at.as_deref().unwrap_or("?")
                ))
            )?;
        }
        if cursors.is_empty() {
            writeln!(
                out,
                "(no sink has run yet: configure [sinks.mqtt] or [[sinks.webhook]])"
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
