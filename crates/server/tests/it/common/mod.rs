//! Helpers for the end-to-end tests: a server on 127.0.0.1:0 with a temporary store.

use std::time::Duration;

use alarm_center_server::{Committed, Config, Server};
use alarm_center_store::StoredEvent;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::broadcast;

pub(crate) struct TestServer {
    pub(crate) server: Server,
    pub(crate) events: broadcast::Receiver<Committed>,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.store.data_dir = dir.to_owned();
    config.server.timezone = "UTC".into();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config
}

pub(crate) async fn start_with(dir: tempfile::TempDir, config: Config) -> TestServer {
    // Server logs in the test output (shown for failing tests); ALARM_CENTER_LOG sets the level.
    let filter = std::env::var("ALARM_CENTER_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    // As `alarm-center serve` binds it: a deep accept queue (server.listen-backlog).
    let listener = alarm_center_server::bind_devices("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
    let server = Server::start(config, listener).await.unwrap();
    let events = server.subscribe();
    TestServer {
        server,
        events,
        dir,
    }
}

pub(crate) async fn start(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    adjust(&mut config);
    start_with(dir, config).await
}

impl TestServer {
    pub(crate) async fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.server.local_addr()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Waits until `n` events were committed (or panics after `within`), returning them in log order.
    pub(crate) async fn events(&mut self, n: usize, within: Duration) -> Vec<StoredEvent> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(batch)) => got.extend(batch.iter().cloned()),
                Ok(Err(e)) => panic!("event stream: {e}"),
                Err(_) => panic!(
                    "only {} of {n} events within {within:?}: {:#?}",
                    got.len(),
                    summary(&got)
                ),
            }
        }
        got
    }

    /// Waits for an event matching `pred`, returning every event seen up to it.
    pub(crate) async fn until(
        &mut self,
        within: Duration,
        pred: impl Fn(&StoredEvent) -> bool,
    ) -> Vec<StoredEvent> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(batch)) => {
                    let done = batch.iter().any(&pred);
                    got.extend(batch.iter().cloned());
                    if done {
                        return got;
                    }
                }
                Ok(Err(e)) => panic!("event stream: {e}"),
                Err(_) => panic!(
                    "no matching event within {within:?}; saw {:#?}",
                    summary(&got)
                ),
            }
        }
    }

    /// Asserts that no event arrives for `quiet`.
    pub(crate) async fn no_events_for(&mut self, quiet: Duration) {
        if let Ok(Ok(batch)) = tokio::time::timeout(quiet, self.events.recv()).await {
            panic!("unexpected events: {:#?}", summary(&batch));
        }
    }
}

/// `code action` of each event as the API and the MQTT payloads write it (JSON).
pub(crate) fn code_actions(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["code"].as_str().unwrap(),
                e["action"].as_str().unwrap()
            )
        })
        .collect()
}

pub(crate) fn summary(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {:?}{}",
                e.event.device,
                e.event.code,
                e.event.action,
                e.event.channel,
                e.event
                    .synthetic
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

pub(crate) async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
}

/// A connection from another loopback address (127.0.0.2, …), as a device elsewhere would come.
pub(crate) async fn connect_from(source: [u8; 4], server: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    let stream = socket.connect(server).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Whether the server closed `stream` within `within` (what it sends meanwhile is read and dropped).
pub(crate) async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}
