//! A connection to the broker: the client, the task that drives its event loop (acknowledgements, Home
//! Assistant's `online`), and publishing in order with a tag per message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS, Transport,
};
use tokio::sync::mpsc;

use super::discovery::Discovery;
use super::{lock, MqttConfig};

/// One message to publish.
pub(super) struct Message {
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
    pub(super) retain: bool,
}

/// What the event loop reports.
pub(super) enum Note {
    Connected,
    Acked(i64),
    Down(String),
}

/// Publishes with a tag per message. The tag queue must follow the publish order, and the sink and the
/// Home Assistant re-announcer publish concurrently, so both steps happen under one lock.
#[derive(Clone)]
pub(super) struct Publisher {
    pub(super) client: AsyncClient,
    /// Tag of each publish, in publish order: the event id it belongs to (`None`: an announcement,
    /// whose acknowledgement delivers no event).
    tags: Arc<Mutex<VecDeque<Option<i64>>>>,
    order: Arc<tokio::sync::Mutex<()>>,
}

impl Publisher {
    /// Publishes `messages`, each with the tag its acknowledgement reports, in order.
    pub(super) async fn publish(
        &self,
        messages: Vec<(Message, Option<i64>)>,
    ) -> Result<(), String> {
        let _order = self.order.lock().await;
        // The tags of the whole batch go first, under one lock: the event loop takes one per publish
        // it sends, and these are the next publishes it will see.
        self.tags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(messages.iter().map(|(_, tag)| *tag));
        for (m, _) in messages {
            self.client
                .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A live connection: the publisher, the task driving its event loop, and the acknowledgement feed.
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
        let (client, mut eventloop) = AsyncClient::new(options(config)?, 4096);
        // Small QoS 1 messages and their acknowledgements must not wait for Nagle's algorithm.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (tx, notes) = mpsc::unbounded_channel();
        let publisher = Publisher {
            client,
            tags: Arc::new(Mutex::new(VecDeque::new())),
            order: Arc::new(tokio::sync::Mutex::new(())),
        };
        let ha_status = format!("{}/status", config.discovery_prefix);
        let task = tokio::spawn(pump(
            eventloop,
            publisher.clone(),
            ha_status.clone(),
            discovery,
            tx,
        ));
        let mut session = Session {
            publisher,
            notes,
            task,
        };
        let first = tokio::time::timeout(Duration::from_secs(10), session.notes.recv())
            .await
            .map_err(|_| "broker did not answer within 10 s".to_owned())?;
        match first {
            Some(Note::Connected) => {}
            Some(Note::Down(e)) => return Err(e),
            _ => return Err("connection closed".into()),
        }
        if config.discovery {
            session
                .publisher
                .client
                .subscribe(ha_status, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(session)
    }
}

/// Client options: endpoint, keep-alive, in-flight window, the last will, credentials and TLS.
fn options(config: &MqttConfig) -> Result<MqttOptions, String> {
    let super::config::Endpoint {
        tls,
        host,
        port,
        credentials,
    } = config.endpoint()?;
    let mut options = MqttOptions::new(config.client_id.clone(), host, port);
    options.set_keep_alive(config.keep_alive);
    options.set_clean_session(true);
    options.set_inflight(config.max_inflight);
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options.set_last_will(LastWill::new(
        format!("{}/status", config.topic_root),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    match (&config.username, &credentials) {
        (Some(user), _) => {
            options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
        }
        (None, Some((user, password))) => {
            options.set_credentials(user.clone(), password.clone());
        }
        (None, None) => {}
    }
    if tls {
        let tls = match &config.ca_file {
            Some(path) => rumqttc::TlsConfiguration::Simple {
                ca: std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                alpn: None,
                client_auth: None,
            },
            None => rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(super::config::system_roots()?)
                    .with_no_client_auth(),
            )),
        };
        options.set_transport(Transport::tls_with_config(tls));
    }
    Ok(options)
}

/// The client's event loop until the connection goes: the connection and each acknowledged event's
/// tag go to `tx`; Home Assistant coming `online` on `watched` gets the discovery configs again.
async fn pump(
    mut eventloop: EventLoop,
    announcer: Publisher,
    watched: String,
    discovery: Arc<Mutex<Discovery>>,
    tx: mpsc::UnboundedSender<Note>,
) {
    let tags = announcer.tags.clone();
    // A republish in progress answers further `online`s too: the configs are retained.
    let republishing = Arc::new(AtomicBool::new(false));
    let mut inflight: HashMap<u16, Option<i64>> = HashMap::new();
    loop {
        let note = match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => Note::Connected,
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let tag = tags
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front()
                    .flatten();
                inflight.insert(pkid, tag);
                continue;
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => match inflight.remove(&ack.pkid) {
                Some(Some(event)) => Note::Acked(event),
                _ => continue,
            },
            Ok(Event::Incoming(Incoming::Publish(p)))
                if p.topic == watched && &p.payload[..] == b"online" =>
            {
                republish(&announcer, &discovery, &republishing);
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Note::Down(e.to_string()));
                return;
            }
        };
        if tx.send(note).is_err() {
            return;
        }
    }
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
