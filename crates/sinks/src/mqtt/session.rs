//! A connection to the broker: the task that drives it (acknowledgements, Home Assistant's `online`),
//! and publishing in order with a tag per message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rumqttc::{LastWill, Login, QoS};
use tokio::sync::mpsc;

use super::discovery::Discovery;
use super::link::{self, Request};
use super::{lock, MqttConfig};

/// Requests queued for the connection's task; publishing waits when it is full.
const QUEUE: usize = 4096;

/// One message to publish.
pub(super) struct Message {
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
    pub(super) retain: bool,
}

/// What the connection reports.
pub(super) enum Note {
    Acked(i64),
    Down(String),
}

/// Publishes with a tag per message; the sink and the Home Assistant re-announcer share it.
#[derive(Clone)]
pub(super) struct Publisher {
    requests: mpsc::Sender<Request>,
    /// `max-message`: larger messages are not sent (the connection could not carry them).
    max_message: usize,
}

impl Publisher {
    /// Publishes `messages` in order, each with the tag its acknowledgement reports (`None`: an
    /// announcement, whose acknowledgement delivers no event).
    pub(super) async fn publish(
        &self,
        mut messages: Vec<(Message, Option<i64>)>,
    ) -> Result<(), String> {
        super::bounds::drop_outsized(&mut messages, self.max_message);
        for (message, tag) in messages {
            self.send(Request::Publish(message, tag)).await?;
        }
        Ok(())
    }

    async fn send(&self, request: Request) -> Result<(), String> {
        self.requests
            .send(request)
            .await
            .map_err(|_| "MQTT connection closed".to_owned())
    }

    /// Sends a packet that carries our side's acknowledgements (see `MqttSink::deliver`), unless the
    /// queue is full (then packets are on their way anyway).
    pub(super) fn nudge(&self, topic: String) {
        let _ = self.requests.try_send(Request::Nudge(topic));
    }
}

/// A live connection: the publisher, the task driving it, and the acknowledgement feed.
pub(super) struct Session {
    pub(super) publisher: Publisher,
    pub(super) notes: mpsc::UnboundedReceiver<Note>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Connects, waits for the broker's CONNACK and, with discovery, subscribes to Home Assistant's
    /// status topic.
    pub(super) async fn open(
        config: &MqttConfig,
        discovery: Arc<Mutex<Discovery>>,
    ) -> Result<Session, String> {
        let link = link::connect(&options(config)?).await?;
        let (requests, queued) = mpsc::channel(QUEUE);
        let (tx, notes) = mpsc::unbounded_channel();
        let publisher = Publisher {
            requests,
            max_message: config.max_message,
        };
        let watched = format!("{}/status", config.discovery_prefix);
        let task = {
            let announcer = publisher.clone();
            let watched = watched.clone();
            // A republish in progress answers further `online`s too: the configs are retained.
            let republishing = Arc::new(AtomicBool::new(false));
            tokio::spawn(link.run(queued, tx, move |p| {
                if p.topic == watched && &p.payload[..] == b"online" {
                    republish(&announcer, &discovery, &republishing);
                }
            }))
        };
        let session = Session {
            publisher,
            notes,
            task,
        };
        if config.discovery {
            session.publisher.send(Request::Subscribe(watched)).await?;
        }
        Ok(session)
    }
}

/// Connection options: endpoint, keep-alive, in-flight window, the last will, credentials and TLS.
fn options(config: &MqttConfig) -> Result<link::Options, String> {
    let super::config::Endpoint {
        tls,
        host,
        port,
        credentials,
    } = config.endpoint()?;
    let login = match (&config.username, credentials) {
        (Some(user), _) => Some(Login::new(
            user.clone(),
            config.password.clone().unwrap_or_default(),
        )),
        (None, Some((user, password))) => Some(Login::new(user, password)),
        (None, None) => None,
    };
    let tls = if tls {
        let roots = match &config.ca_file {
            Some(path) => ca_roots(path)?,
            None => super::config::system_roots()?,
        };
        Some(link::tls_connector(roots))
    } else {
        None
    };
    Ok(link::Options {
        host,
        port,
        tls,
        client_id: config.client_id.clone(),
        keep_alive: config.keep_alive,
        max_inflight: config.max_inflight,
        max_message: config.max_message,
        will: LastWill::new(
            format!("{}/status", config.topic_root),
            "offline",
            QoS::AtLeastOnce,
            true,
        ),
        login,
    })
}

/// The certificates of a PEM file (`ca-file`) as the only trusted roots.
fn ca_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(roots)
}

/// Publishes every discovery config again (Home Assistant restarted), unless a republish is running.
/// Rendering takes a while for a large catalog, and publishing waits for room in the client's queue,
/// which the event loop drains: not inline.
fn republish(
    announcer: &Publisher,
    discovery: &Arc<Mutex<Discovery>>,
    republishing: &Arc<AtomicBool>,
) {
    if republishing.swap(true, Ordering::AcqRel) {
        tracing::debug!("Home Assistant online during a republish: nothing more to do");
        return;
    }
    let (publisher, discovery, republishing) =
        (announcer.clone(), discovery.clone(), republishing.clone());
    tokio::spawn(async move {
        let rendered = tokio::task::spawn_blocking(move || {
            let discovery = lock(&discovery);
            (discovery.all(), discovery.counts())
        })
        .await;
        if let Ok((configs, counts)) = rendered {
            tracing::info!(
                configs = configs.len(),
                devices = counts.devices,
                entities = counts.entities,
                skipped = counts.skipped,
                "Home Assistant online: discovery republished"
            );
            let configs = configs.into_iter().map(|m| (m, None)).collect();
            let _ = publisher.publish(configs).await;
        }
        republishing.store(false, Ordering::Release);
    });
}
