//! The configuration sections ingest reads: `[server]`, `[supervision]`, `[store]`, `[[devices]]` and
//! `[auto-clear]` (the composing `Config`, with `[sinks]` and `[api]`, is the server crate's).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use alarm_center_sinks::config::duration;
use serde::{Deserialize, Deserializer};

/// What ingest needs of the configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestConfig {
    /// `[server]`: listener and connection limits.
    pub server: ServerConfig,
    /// `[supervision]`: online/offline.
    pub supervision: SupervisionConfig,
    /// `[store]`: the embedded store.
    pub store: StoreConfig,
    /// `[[devices]]`: known devices.
    pub devices: Vec<DeviceConfig>,
    /// `[auto-clear]`: a synthetic `stop` for an alarm whose stop has not come after this long, by
    /// event code (`*` for every code).
    pub auto_clear: BTreeMap<String, Duration>,
    /// The enabled sinks, by name: their cursors hold back retention.
    pub sinks: Vec<String>,
}

/// Most `server.connection-threads`: every thread is woken by every new connection (all watch the
/// device port), so beyond a few per core they only cost wake-ups and memory.
pub const MAX_CONNECTION_THREADS: usize = 64;

impl IngestConfig {
    /// Values that parse but cannot work, one line each.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.validate_sections(&mut problems);
        self.validate_devices(&mut problems);
        problems
    }

    /// `[server]`, `[supervision]` and `[store]`.
    fn validate_sections(&self, problems: &mut Vec<String>) {
        let s = &self.server;
        if s.max_connections == 0 {
            problems.push("server.max-connections must be at least 1".to_owned());
        }
        if s.listen_backlog == 0 {
            problems.push("server.listen-backlog must be at least 1".to_owned());
        }
        if s.max_connections_per_ip == 0 {
            problems.push("server.max-connections-per-ip must be at least 1".to_owned());
        }
        if s.max_frame < alarm_center_proto::decoder::MIN_MAX_FRAME
            || s.max_frame > 16 * 1024 * 1024
        {
            problems.push(format!(
                "server.max-frame = {} must be between 64 and 16777216 bytes",
                s.max_frame
            ));
        }
        if s.connection_threads > MAX_CONNECTION_THREADS {
            problems.push(format!(
                "server.connection-threads must be at most {MAX_CONNECTION_THREADS} (0 = one per core)"
            ));
        }
        if s.idle_timeout < Duration::from_secs(1) {
            problems.push("server.idle-timeout must be at least 1s".to_owned());
        }
        if s.frame_timeout < Duration::from_millis(100) {
            problems.push("server.frame-timeout must be at least 100ms".to_owned());
        }
        if s.arrival_order_window > Duration::from_secs(10) {
            problems.push("server.arrival-order-window must be at most 10s".to_owned());
        }
        if !s.device_expiry.is_zero() && s.device_expiry < Duration::from_secs(1) {
            problems.push("server.device-expiry must be 0s (never) or at least 1s".to_owned());
        }
        if s.stats_interval < Duration::from_secs(1) {
            problems.push("server.stats-interval must be at least 1s".to_owned());
        }
        if let Err(e) = crate::time::zone(&s.timezone) {
            problems.push(format!("server.timezone: {e}"));
        }
        if let Err(e) = http_credentials(&s.http_username, &s.http_password) {
            problems.push(format!("server: {e}"));
        }
        if self.supervision.keepalive < Duration::from_secs(1) {
            problems.push("supervision.keepalive must be at least 1s".to_owned());
        }
        let flush = self.supervision.last_seen_flush;
        if flush < Duration::from_secs(1) || flush > Duration::from_secs(3600) {
            problems.push("supervision.last-seen-flush must be between 1s and 1h".to_owned());
        }
        if self.store.batch_max == 0 {
            problems.push("store.batch-max must be at least 1".to_owned());
        }
        if !alarm_center_store::valid_page_size(self.store.page_size) {
            problems.push(format!(
                "store.page-size = {} must be a power of two from 512 to 65536 bytes",
                self.store.page_size
            ));
        }
    }

    /// `[auto-clear]` and `[[devices]]`.
    fn validate_devices(&self, problems: &mut Vec<String>) {
        for (code, after) in &self.auto_clear {
            if after.is_zero() {
                problems.push(format!("auto-clear.{code}: must be longer than 0s"));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            let at = format!("devices[{i}]");
            if d.id.trim().is_empty() {
                problems.push(format!("{at}: id is required"));
            } else if !ids.insert(d.id.as_str()) {
                problems.push(format!("{at}: id {:?} is used twice", d.id));
            }
            if d.serial.is_none() && d.mac.is_none() && d.domain.is_none() && d.address.is_none() {
                problems.push(format!(
                    "{at} ({}): give at least one of serial, mac, domain, address to recognise it",
                    d.id
                ));
            }
            if let Err(e) = http_credentials(&d.http_username, &d.http_password) {
                problems.push(format!("{at} ({}): {e}", d.id));
            }
            if let Some(tz) = &d.timezone {
                if let Err(e) = crate::time::zone(tz) {
                    problems.push(format!("{at} ({}): timezone: {e}", d.id));
                }
            }
            for channel in d.channels.keys() {
                if channel.parse::<u32>().map_or(true, |c| c == 0) {
                    problems.push(format!(
                        "{at} ({}): channel key {channel:?} must be a channel number from 1",
                        d.id
                    ));
                }
            }
        }
    }
}

/// `[auto-clear]`'s durations by code, each checked with its key in the error.
pub fn duration_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Duration>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    raw.into_iter()
        .map(|(code, text)| {
            humantime::parse_duration(&text)
                .map(|t| (code.clone(), t))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "auto-clear.{code}: {text:?} is not a duration ({e})"
                    ))
                })
        })
        .collect()
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Address to listen on for devices.
    pub listen: SocketAddr,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Length of the kernel's queue of connections not yet accepted (bounded by
    /// `net.core.somaxconn`): cameras that open a connection per alarm come in bursts.
    pub listen_backlog: u32,
    /// Most connections open at once from one source address.
    pub max_connections_per_ip: usize,
    /// Threads that run the API, the sinks and supervision; 0 = one per core (or
    /// `TOKIO_WORKER_THREADS` when set). The device connections have their own (`connection_threads`).
    pub worker_threads: usize,
    /// Threads that accept and serve the device connections, each with a runtime of its own; 0 = one
    /// per core.
    pub connection_threads: usize,
    /// Largest frame kept whole, bytes.
    pub max_frame: usize,
    /// Close a connection that sent nothing for this long.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Close a connection whose frame stays incomplete for this long (slow senders).
    #[serde(deserialize_with = "duration")]
    pub frame_timeout: Duration,
    /// How long a connection's first frame waits for earlier connections from the same address to hand
    /// over theirs, counted from the earlier connection's accept (one device's frames keep their arrival
    /// order across connections); zero = no waiting.
    #[serde(deserialize_with = "duration")]
    pub arrival_order_window: Duration,
    /// Answer JSON-RPC requests that carry an `id` (keepAlive) with `{"id":N,"result":true}`.
    pub reply_to_requests: bool,
    /// Accept devices that match no `[[devices]]` entry.
    pub allow_unknown_devices: bool,
    /// Most new devices (neither configured nor known yet) created per minute from one source address
    /// (an IPv6 /64 counts as one address); 0 = no limit.
    pub max_new_devices_per_ip_per_minute: u32,
    /// Most new devices created per minute from all addresses together; 0 = no limit.
    pub max_new_devices_per_minute: u32,
    /// Forget a device that matches no `[[devices]]` entry once it has sent no frame for this long
    /// (its row goes from the store, its events and frames stay); zero = never.
    #[serde(deserialize_with = "duration")]
    pub device_expiry: Duration,
    /// Time zone of device clocks when a device has none configured (`local` = this machine's).
    pub timezone: String,
    /// Interval of the statistics log line.
    #[serde(deserialize_with = "duration")]
    pub stats_interval: Duration,
    /// HTTP-mode devices must authenticate (Basic or Digest) as this user (default: no credentials).
    pub http_username: Option<String>,
    /// Password for `http-username`; keep it in the environment (`ALARM_CENTER_SERVER__HTTP_PASSWORD`).
    pub http_password: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 15002)),
            max_connections: 20_000,
            listen_backlog: 4096,
            worker_threads: 0,
            connection_threads: 0,
            max_connections_per_ip: 256,
            max_frame: alarm_center_proto::DEFAULT_MAX_FRAME,
            idle_timeout: Duration::from_secs(180),
            frame_timeout: Duration::from_secs(30),
            arrival_order_window: Duration::from_millis(250),
            reply_to_requests: false,
            allow_unknown_devices: true,
            max_new_devices_per_ip_per_minute: 100,
            max_new_devices_per_minute: 1000,
            device_expiry: Duration::from_secs(30 * 86_400),
            timezone: "local".into(),
            stats_interval: Duration::from_secs(60),
            http_username: None,
            http_password: None,
        }
    }
}

/// `[supervision]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SupervisionConfig {
    /// Keep-alive period assumed when a device announces none.
    #[serde(deserialize_with = "duration")]
    pub keepalive: Duration,
    /// Extra time before a silent device is declared offline.
    #[serde(deserialize_with = "duration")]
    pub grace: Duration,
    /// Emit a synthetic `stop` for every active alarm of a device going offline.
    pub stop_alarms_on_offline: bool,
    /// How often the `last_seen` of the devices heard from goes to the store (default 60 s, D72). The
    /// store's copy, which the `devices` command reads, lags this much; the API and the UI show the
    /// server's own; online/offline does not depend on it. Each device heard from costs one row
    /// update per flush: with many devices, most of the store's work for keepAlives.
    #[serde(deserialize_with = "duration")]
    pub last_seen_flush: Duration,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            keepalive: Duration::from_secs(60),
            grace: Duration::from_secs(30),
            stop_alarms_on_offline: true,
            last_seen_flush: Duration::from_secs(60),
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// Directory of the database.
    pub data_dir: PathBuf,
    /// `normal` (survives kill -9) or `full` (survives power loss).
    pub sync: alarm_center_store::SyncMode,
    /// Page size of a store created by this server, bytes (a power of two from 512 to 65536); an
    /// existing store keeps the size it was created with (D67).
    pub page_size: u32,
    /// Most records per transaction.
    pub batch_max: usize,
    /// Least time between the starts of two commits: records arriving sooner wait, with those that
    /// follow, for one larger transaction (`0s`: commit as soon as anything waits). A lone record
    /// after a quiet spell is committed at once, and so is a batch with an HTTP request (its sender
    /// waits for the commit).
    #[serde(deserialize_with = "duration")]
    pub commit_interval: Duration,
    /// Archive keepAlive frames too (they are most of the frames and carry no event).
    pub archive_keepalives: bool,
    /// With `archive-keepalives`: a connection's keepAlive is archived when it is the connection's
    /// first, when its bytes differ from the last one archived, or when this long has passed since;
    /// `0s` archives every one. The device's `last_seen` is tracked either way.
    #[serde(deserialize_with = "duration")]
    pub keepalive_sample_interval: Duration,
    /// Delete events older than this (`0s` keeps them forever).
    #[serde(deserialize_with = "duration")]
    pub events_max_age: Duration,
    /// Delete raw frames older than this (`0s` keeps them forever).
    #[serde(deserialize_with = "duration")]
    pub frames_max_age: Duration,
    /// Keep the database (pages in use plus the write-ahead log file) under this many megabytes
    /// (0 = no limit); oldest frames go first, then dead letters, then events, but never the newest
    /// 10,000 events.
    pub max_size_mb: u64,
    /// Let retention delete events that an enabled sink has not delivered yet (they are counted).
    pub drop_undelivered: bool,
    /// Delete dead letters recorded longer ago than this (`0s` keeps them forever).
    #[serde(deserialize_with = "duration")]
    pub dead_letters_max_age: Duration,
    /// Keep at most this many dead letters, the newest (0 = no limit).
    pub dead_letters_max_count: u64,
    /// Free space to keep on the data directory's file system, megabytes (0 = do not check): below
    /// it retention runs at once and deletes the oldest frames, dead letters, then events until the
    /// store's free pages make up the difference, and a warning is logged.
    pub min_free_mb: u64,
}

impl ServerConfig {
    /// The runtime's worker threads when set (`worker-threads` above 0); `None` leaves them to the
    /// runtime: `TOKIO_WORKER_THREADS`, else one per core.
    pub fn runtime_workers(&self) -> Option<usize> {
        (self.worker_threads > 0).then_some(self.worker_threads)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./data"),
            sync: alarm_center_store::SyncMode::Normal,
            page_size: alarm_center_store::DEFAULT_PAGE_SIZE,
            batch_max: 8192,
            commit_interval: Duration::from_millis(5),
            archive_keepalives: true,
            keepalive_sample_interval: Duration::from_secs(300),
            events_max_age: Duration::from_secs(90 * 86_400),
            frames_max_age: Duration::from_secs(30 * 86_400),
            max_size_mb: 0,
            drop_undelivered: false,
            dead_letters_max_age: Duration::from_secs(30 * 86_400),
            dead_letters_max_count: 10_000,
            min_free_mb: 64,
        }
    }
}

/// `[[devices]]`: a known device. It matches a connection by any of serial, MAC, domain or address.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeviceConfig {
    /// Stable id used in the store, topics and the API.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Serial number as the device sends it.
    pub serial: Option<String>,
    /// MAC address (any separators, any case).
    pub mac: Option<String>,
    /// DDNS/domain name the device reports.
    pub domain: Option<String>,
    /// Source IP address of its connections.
    pub address: Option<IpAddr>,
    /// Time zone of its clock (IANA name such as `Europe/Berlin`, or `UTC`).
    pub timezone: Option<String>,
    /// Its keep-alive period, when it does not announce one.
    #[serde(default, deserialize_with = "optional_duration")]
    pub keepalive: Option<Duration>,
    /// Channel names by 1-based channel number.
    pub channels: BTreeMap<String, String>,
    /// In HTTP mode this device authenticates as this user (overrides `server.http-username`).
    pub http_username: Option<String>,
    /// Password for `http-username`.
    pub http_password: Option<String>,
}

/// The HTTP credentials set by a `username`/`password` pair of keys, and what is wrong with them.
pub(crate) fn http_credentials(
    username: &Option<String>,
    password: &Option<String>,
) -> Result<Option<crate::http_auth::Credentials>, &'static str> {
    match (username, password) {
        (None, None) => Ok(None),
        (Some(u), _) if u.is_empty() || u.contains(':') => {
            Err("http-username must not be empty nor contain ':'")
        }
        (Some(u), Some(p)) => Ok(Some(crate::http_auth::Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        (Some(_), None) => Err("http-username needs http-password"),
        (None, Some(_)) => Err("http-password needs http-username"),
    }
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::ServerConfig;

    #[test]
    fn worker_threads_are_the_runtimes_choice_unless_set() {
        assert_eq!(ServerConfig::default().runtime_workers(), None);
        let three = ServerConfig {
            worker_threads: 3,
            ..ServerConfig::default()
        };
        assert_eq!(three.runtime_workers(), Some(3));
    }

    #[test]
    fn connection_threads_are_one_per_core_unless_set_and_bounded() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(crate::shards::count(0), cores);
        assert_eq!(crate::shards::count(3), 3);
        let mut config = super::IngestConfig::default();
        config.server.connection_threads = super::MAX_CONNECTION_THREADS;
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        config.server.connection_threads += 1;
        let problems = config.validate();
        assert!(
            problems.len() == 1 && problems[0].contains("server.connection-threads"),
            "{problems:?}"
        );
    }
}
