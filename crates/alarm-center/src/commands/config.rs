//! `alarm-center config check`: validates a configuration and prints what `serve` would start.

use std::path::PathBuf;

use alarm_center_server::Config;
use anyhow::Result;
use clap::Args;

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
    println!("{origin}: OK");
    println!("  devices:  listen {}", config.server.listen);
    match config.api.enabled {
        true => println!(
            "  web UI:   listen {} ({}{})",
            config.api.listen,
            crate::startup::ui_url(config.api.listen),
            if config.api.token.is_some() {
                ", token required"
            } else {
                ""
            }
        ),
        false => println!("  web UI:   off (api.enabled = false)"),
    }
    println!(
        "  store:    {}",
        config
            .store
            .data_dir
            .join(alarm_center_store::DB_FILE)
            .display()
    );
    let sinks = crate::startup::sinks(&config);
    if sinks.is_empty() {
        println!("  sinks:    none");
    }
    for (n, sink) in sinks.iter().enumerate() {
        println!("  {:<9} {sink}", if n == 0 { "sinks:" } else { "" });
    }
    println!(
        "  devices:  {} configured, unknown devices {}",
        config.devices.len(),
        if config.server.allow_unknown_devices {
            "accepted"
        } else {
            "refused"
        }
    );
    Ok(())
}
