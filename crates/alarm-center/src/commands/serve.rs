//! `alarm-center serve`, and where every command's configuration comes from.

use std::io::Write;
use std::path::PathBuf;

use alarm_center_server::Config;
use alarm_center_store::Db;
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
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = config.server.runtime_workers() {
        runtime.worker_threads(workers);
    }
    let runtime = runtime.enable_all().build()?;
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
