//! What `serve` and `config check` tell a user: listen addresses as people write them, listeners bound
//! with errors that say what to change, and the start-up block (version, ports, store, sinks, web UI).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use alarm_center_server::Config;
use tokio::net::TcpListener;

/// A listen address as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Listen {
    /// `15002` or `:15002`: this port, on the configured address.
    Port(u16),
    /// A whole address.
    Addr(SocketAddr),
}

impl Listen {
    /// The address to listen on, `configured` being the address the configuration gives.
    pub(crate) fn on(self, configured: SocketAddr) -> SocketAddr {
        match self {
            Listen::Port(port) => SocketAddr::new(configured.ip(), port),
            Listen::Addr(addr) => addr,
        }
    }
}

/// Parses a listen address as people write it: `15002`, `:15002`, `0.0.0.0:15002`, `[::]:15002` or
/// `host:15002` (resolved; the first address wins).
pub(crate) fn parse_listen(text: &str) -> Result<Listen, String> {
    let text = text.trim();
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(Listen::Port(port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Listen::Addr(addr));
    }
    let example =
        "give a port (15002), :port, or host:port (0.0.0.0:15002, [::]:15002, localhost:15002)";
    if !text.contains(':') {
        return Err(format!("{text:?} has no port: {example}"));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .map(Listen::Addr)
            .ok_or_else(|| format!("{text:?} resolves to no address: {example}")),
        Err(e) => Err(format!("{text:?} is not an address ({e}): {example}")),
    }
}

/// Which listener, and the ways to change its address.
#[derive(Clone, Copy)]
pub(crate) enum Port {
    Devices,
    Api,
}

impl Port {
    fn what(self) -> &'static str {
        match self {
            Port::Devices => "devices",
            Port::Api => "the web UI and API",
        }
    }

    fn how_to_change(self) -> &'static str {
        match self {
            Port::Devices => {
                "--listen (e.g. --listen 15003), server.listen in the configuration file, or ALARM_CENTER_SERVER__LISTEN"
            }
            Port::Api => {
                "--api-listen (e.g. --api-listen 127.0.0.1:8081), api.listen in the configuration file, or ALARM_CENTER_API__LISTEN"
            }
        }
    }
}

/// The message for a listener that cannot be bound: what failed, the likely cause, what to change.
pub(crate) fn bind_failure(port: Port, addr: SocketAddr, e: &std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let cause = match e.kind() {
        ErrorKind::AddrInUse => {
            "the port is in use: another alarm-center may be running, or another program holds it"
                .to_owned()
        }
        ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_owned()
        }
        ErrorKind::AddrNotAvailable => "that address is not one of this machine's".to_owned(),
        _ => e.to_string(),
    };
    anyhow::anyhow!(
        "cannot listen for {} on {addr}: {cause}. Choose another address with {}. Nothing was started and the data directory was not touched.",
        port.what(),
        port.how_to_change()
    )
}

/// Binds the device port and, when the API is enabled, the API's, before anything touches the store.
pub(crate) async fn bind(config: &Config) -> anyhow::Result<(TcpListener, Option<TcpListener>)> {
    let devices =
        alarm_center_server::bind_devices(config.server.listen, config.server.listen_backlog)
            .map_err(|e| bind_failure(Port::Devices, config.server.listen, &e))?;
    let api = match config.api.enabled {
        true => Some(
            TcpListener::bind(config.api.listen)
                .await
                .map_err(|e| bind_failure(Port::Api, config.api.listen, &e))?,
        ),
        false => None,
    };
    Ok((devices, api))
}

/// A URL without its password and query (either may hold a secret), for printing.
fn shown(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// The enabled sinks, one line each: name and where it points.
pub(crate) fn sinks(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(mqtt) = config.sinks.mqtt.as_ref().filter(|m| m.enabled) {
        let discovery = match mqtt.discovery {
            true => format!(
                ", Home Assistant discovery under {}/",
                mqtt.discovery_prefix
            ),
            false => String::new(),
        };
        out.push(format!(
            "mqtt → {} (topics under {}/{discovery})",
            shown(&mqtt.url),
            mqtt.topic_root
        ));
    }
    for hook in config.sinks.webhook.iter().filter(|w| w.enabled) {
        out.push(format!(
            "webhook:{} → {} {}",
            hook.name,
            hook.method,
            shown(&hook.url)
        ));
    }
    if config.sinks.stdout.enabled {
        out.push("stdout → one JSON line per event".to_owned());
    }
    out
}

/// The web UI's address as a browser on this machine reaches it (an unspecified address is every
/// interface, so loopback works).
pub(crate) fn ui_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(host, addr.port()))
}

/// The start-up block: everything a user needs to point devices, a browser and integrations at it.
pub(crate) fn banner(
    config: &Config,
    devices: SocketAddr,
    api: Option<SocketAddr>,
    store: &Path,
) -> String {
    let mut out = format!("alarm-center {} is running\n", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(
        out,
        "  devices:  {devices}  (Network › Alarm Center on the NVR/camera: this machine's address, port {})",
        devices.port()
    );
    let _ = writeln!(out, "  store:    {}", store.display());
    let sinks = sinks(config);
    match sinks.is_empty() {
        true => {
            let _ = writeln!(out, "  sinks:    none (events are stored; add [sinks.mqtt] or [[sinks.webhook]] to forward them)");
        }
        false => {
            for (n, sink) in sinks.iter().enumerate() {
                let label = if n == 0 { "sinks:" } else { "" };
                let _ = writeln!(out, "  {label:<9} {sink}");
            }
        }
    }
    match api {
        Some(api) => {
            let _ = writeln!(out, "  web UI:   {}", ui_url(api));
        }
        None => {
            let _ = writeln!(out, "  web UI:   off (api.enabled = false)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_as_people_write_them() {
        let configured: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let on = |text| parse_listen(text).map(|l| l.on(configured));
        assert_eq!(on("8081"), Ok("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(on(":8081"), Ok("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(on("0.0.0.0:15003"), Ok("0.0.0.0:15003".parse().unwrap()));
        assert_eq!(on("[::]:15002"), Ok("[::]:15002".parse().unwrap()));
        let local = on("localhost:15002").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 15002);
        for bad in ["", "host", "99999", "localhost:http", "1.2.3.4:99999"] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains("host:port"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn secrets_in_urls_are_not_printed() {
        assert_eq!(
            shown("mqtt://user:secret@broker:1883"),
            "mqtt://user:***@broker:1883"
        );
        assert_eq!(
            shown("https://hooks.example/x/{device}?token=abc"),
            "https://hooks.example/x/{device}"
        );
        assert_eq!(shown("mqtt://broker"), "mqtt://broker");
    }

    #[test]
    fn the_ui_url_is_reachable_from_this_machine() {
        assert_eq!(
            ui_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(ui_url("[::]:8080".parse().unwrap()), "http://[::1]:8080/");
        assert_eq!(
            ui_url("192.0.2.4:80".parse().unwrap()),
            "http://192.0.2.4:80/"
        );
    }

    #[test]
    fn a_busy_port_names_the_ways_to_change_it() {
        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let text = bind_failure(Port::Api, "127.0.0.1:8080".parse().unwrap(), &e).to_string();
        for needle in [
            "--api-listen",
            "api.listen",
            "ALARM_CENTER_API__LISTEN",
            "another alarm-center",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let text = bind_failure(Port::Devices, "0.0.0.0:15002".parse().unwrap(), &e).to_string();
        assert!(
            text.contains("--listen") && text.contains("ALARM_CENTER_SERVER__LISTEN"),
            "{text}"
        );
    }
}
