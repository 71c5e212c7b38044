//! The `alarm-center` command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod log_escape;
mod log_fields;
mod log_thread;
mod log_time;
mod startup;

use commands::{config, decode, query, serve, simulate};

/// mimalloc instead of glibc's malloc: ingest allocates on the runtime's workers and frees on the store
/// writer's thread, which glibc pays for in arena locks and consolidation (D59, docs/benchmarks.md §14).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Alarm Center server for Dahua (Amcrest, Lorex, …) and XM devices.
#[derive(Debug, Parser)]
#[command(name = "alarm-center", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: accept devices, supervise them, store every event.
    Serve(serve::ServeArgs),
    /// Query the event log (works while the server runs).
    Events(query::EventsArgs),
    /// List devices with their state and last-seen time (works while the server runs; its last-seen
    /// time is the store's, written every `supervision.last-seen-flush`).
    Devices(query::DevicesArgs),
    /// Show each output's cursor, lag, counters and last error (works while the server runs).
    Sinks(query::SinksArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Decode captured device traffic (hex dump, raw bytes, pcap/pcapng) into JSON Lines, one object per frame.
    Decode(decode::DecodeArgs),
    /// Simulate devices: connect to a server and push keepAlives and alarms in every wire variant.
    Simulate(simulate::SimulateArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration and say exactly what is wrong.
    Check(config::CheckArgs),
}

/// Logs go to standard error; `ALARM_CENTER_LOG` (or `RUST_LOG`) sets the filter, default `info`.
/// Records are formatted where they happen and written by the log thread, in batches (`log_thread.rs`,
/// D65); `LogThread::finish` writes what is waiting.
fn init_logging() -> log_thread::LogThread {
    let filter = std::env::var("ALARM_CENTER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (queue, log_thread) = log_thread::start();
    // No colours: every control character in a record is escaped (decision D26), ANSI ones included.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(queue)
        .with_ansi(false)
        .with_target(false)
        // The time's text up to the second is made once a second (`log_time.rs`).
        .with_timer(log_time::LogTime)
        // Integers, booleans and plain strings written directly, in the same text (`log_fields.rs`).
        .fmt_fields(log_fields::LogFields)
        // A failed log write must not be reported with eprintln!, which panics when standard error
        // is closed: the task logging it would die (the signal task did, and SIGTERM was ignored).
        .log_internal_errors(false)
        .init();
    log_thread
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            let log = init_logging();
            let result = serve::serve(&args);
            // Every log line is out before the error line and the exit status.
            log.finish();
            result
        }
        Command::Events(args) => query::events(&args),
        Command::Devices(args) => query::devices(&args),
        Command::Sinks(args) => query::sinks(&args),
        Command::Config(ConfigCommand::Check(args)) => config::check(&args),
        Command::Decode(args) => decode::run(&args),
        Command::Simulate(args) => simulate::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("alarm-center: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// True when stdout was closed by the reader (`alarm-center decode … | head`): not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
