//! The `alarm-center` command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod decode;

/// Alarm Center server for Dahua (Amcrest, Lorex, …) and XM devices.
#[derive(Debug, Parser)]
#[command(name = "alarm-center", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode captured device traffic (hex dump, raw bytes, pcap/pcapng) into JSON Lines, one object per frame.
    Decode(decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
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
