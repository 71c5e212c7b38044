//! MQTT sink: every event as JSON, retained ON/OFF states, device availability, the server's own status
//! with a last will, and Home Assistant discovery. Delivery is QoS 1: an event counts as delivered when
//! the broker acknowledged every message it produced; after a lost connection the sink reconnects and
//! resends from the first unacknowledged event (at-least-once, in log order).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alarm_center_store::{Db, StoredEvent};
use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, Outgoing, QoS, Transport};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Destination, Outcome};

/// `[sinks.mqtt]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MqttConfig {
    /// On or off (on when the section is present).
    pub enabled: bool,
    /// Broker: `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883, TLS).
    pub url: String,
    /// MQTT client id.
    pub client_id: String,
    /// User name.
    pub username: Option<String>,
    /// Password (prefer `ALARM_CENTER_SINKS__MQTT__PASSWORD`).
    pub password: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (TLS); default: the system bundle.
    pub ca_file: Option<PathBuf>,
    /// First level of every topic.
    pub topic_root: String,
    /// Publish Home Assistant discovery.
    pub discovery: bool,
    /// Home Assistant discovery prefix (its status topic is `<prefix>/status`).
    pub discovery_prefix: String,
    /// MQTT keep-alive.
    #[serde(deserialize_with = "crate::config::duration")]
    pub keep_alive: Duration,
    /// Most unacknowledged messages in flight.
    pub max_inflight: u16,
    /// Rules.
    pub rules: super::rules::RulesConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "alarm-center".into(),
            username: None,
            password: None,
            ca_file: None,
            topic_root: "alarm-center".into(),
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            keep_alive: Duration::from_secs(30),
            max_inflight: 100,
            rules: super::rules::RulesConfig::default(),
        }
    }
}

/// How long a sink that is stopping waits for acknowledgements of what it already published.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(2);

/// Nudges sent back to back in one silence (then one per 100 ms).
const MAX_NUDGES: u32 = 10;
/// A broker that acknowledges nothing for this long is treated as disconnected.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for an acknowledgement before nudging the broker's TCP stack.
const NUDGE_AFTER: Duration = Duration::from_millis(2);

/// The system CA bundle used for TLS when no `ca-file` is given.
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

impl MqttConfig {
    /// (TLS, host, port) from the URL.
    pub fn endpoint(&self) -> Result<(bool, String, u16), String> {
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = self.url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!(
                "sinks.mqtt.url {:?} must start with mqtt:// or mqtts://",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("sinks.mqtt.url: bad port {p:?}"))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err("sinks.mqtt.url has no host".into());
        }
        Ok((tls, host.to_owned(), port))
    }

    /// Problems with this configuration.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.endpoint() {
            Err(e) => problems.push(e),
            Ok((true, _, _)) => {
                let ca = self.ca_file.clone().unwrap_or_else(|| SYSTEM_CA.into());
                if !ca.exists() {
                    problems.push(format!(
                        "sinks.mqtt: TLS needs a CA file; {} does not exist (set ca-file)",
                        ca.display()
                    ));
                }
            }
            Ok(_) => {}
        }
        if self.topic_root.is_empty() || self.topic_root.contains(['#', '+']) {
            problems.push("sinks.mqtt.topic-root must be non-empty without # or +".into());
        }
        if self.max_inflight == 0 {
            problems.push("sinks.mqtt.max-inflight must be at least 1".into());
        }
        if self.password.is_some() && self.username.is_none() {
            problems.push("sinks.mqtt.password needs a username".into());
        }
        problems
    }
}

/// A topic level or discovery id made of `[A-Za-z0-9_-]` only.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Home Assistant device class for an event code. Conditions that are not movement come first:
/// `LossDetect`, `BlindDetect` and `VideoAbnormalDetection` contain "detect" but are no motion.
fn device_class(code: &str) -> Option<&'static str> {
    let c = code.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| c.contains(w));
    if any(&["blind", "tamper", "cover", "shelter"]) {
        Some("tamper")
    } else if any(&[
        "loss",
        "abnormal",
        "storage",
        "disk",
        "abort",
        "fault",
        "failure",
        "error",
        "lowspace",
        "ipconflict",
        "offline",
    ]) {
        Some("problem")
    } else if any(&["smoke", "fire"]) {
        Some("smoke")
    } else if any(&["audio", "sound", "scream"]) {
        Some("sound")
    } else if any(&[
        "motion",
        "human",
        "vehicle",
        "crossline",
        "crossregion",
        "intrusion",
        "tripwire",
        "face",
        "detect",
    ]) {
        Some("motion")
    } else {
        None
    }
}

/// One message to publish.
struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// What the event loop reports.
enum Note {
    Connected,
    Acked(i64),
    Down(String),
}

/// Publishes with a tag per message. The tag queue must follow the publish order, and the sink and the
/// Home Assistant re-announcer publish concurrently, so both steps happen under one lock.
#[derive(Clone)]
struct Publisher {
    client: AsyncClient,
    /// Tag of each publish, in publish order: the event id it belongs to, or -1.
    tags: Arc<Mutex<VecDeque<i64>>>,
    order: Arc<tokio::sync::Mutex<()>>,
}

impl Publisher {
    async fn publish(&self, messages: Vec<Message>, tag: i64) -> Result<usize, String> {
        let _order = self.order.lock().await;
        let n = messages.len();
        for m in messages {
            self.tags
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(tag);
            self.client
                .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(n)
    }
}

/// A live connection: the publisher, the task driving its event loop, and the acknowledgement feed.
struct Session {
    publisher: Publisher,
    notes: mpsc::UnboundedReceiver<Note>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Discovery configs (topic, payload) shared with the event-loop task.
type Announced = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Entity key: (channel, code, is-pulse).
type Entity = (Option<i64>, String, bool);

/// What Home Assistant is told about: per device, its name and entities; channel names.
#[derive(Default)]
struct Catalog {
    devices: BTreeMap<String, (Option<String>, BTreeSet<Entity>)>,
    channel_names: HashMap<(String, i64), String>,
}

/// The MQTT sink.
pub(crate) struct MqttSink {
    config: Arc<MqttConfig>,
    data_dir: PathBuf,
    shutdown: CancellationToken,
    session: Option<Session>,
    catalog: Catalog,
    catalog_loaded: bool,
    /// `[auto-clear]`, for `off_delay` in discovery.
    auto_clear: BTreeMap<String, Duration>,
    /// The discovery configs, shared with the event-loop task, which answers Home Assistant's `online`
    /// even while the sink is idle.
    announced: Announced,
}

impl MqttSink {
    pub(crate) fn new(
        config: Arc<MqttConfig>,
        auto_clear: BTreeMap<String, Duration>,
        data_dir: PathBuf,
        shutdown: CancellationToken,
    ) -> Result<MqttSink, crate::ServerError> {
        config.endpoint().map_err(crate::ServerError::Internal)?;
        Ok(MqttSink {
            config,
            auto_clear,
            data_dir,
            shutdown,
            session: None,
            catalog: Catalog::default(),
            catalog_loaded: false,
            announced: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn root(&self) -> &str {
        &self.config.topic_root
    }

    fn options(&self) -> Result<MqttOptions, String> {
        let (tls, host, port) = self.config.endpoint()?;
        let mut options = MqttOptions::new(self.config.client_id.clone(), host, port);
        options.set_keep_alive(self.config.keep_alive);
        options.set_clean_session(true);
        options.set_inflight(self.config.max_inflight);
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        options.set_last_will(LastWill::new(
            format!("{}/status", self.root()),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &self.config.username {
            options.set_credentials(
                user.clone(),
                self.config.password.clone().unwrap_or_default(),
            );
        }
        if tls {
            let path = self
                .config
                .ca_file
                .clone()
                .unwrap_or_else(|| SYSTEM_CA.into());
            let ca =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            options.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth: None,
                },
            ));
        }
        Ok(options)
    }

    /// Connects and announces: server status, discovery and device availability.
    async fn connect(&mut self) -> Result<(), String> {
        if !self.catalog_loaded {
            self.load_catalog().await?;
            self.catalog_loaded = true;
        }
        let (client, mut eventloop) = AsyncClient::new(self.options()?, 4096);
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
        let ha_status = format!("{}/status", self.config.discovery_prefix);
        let (tags, watched, announcer, announced) = (
            publisher.tags.clone(),
            ha_status.clone(),
            publisher.clone(),
            self.announced.clone(),
        );
        let task = tokio::spawn(async move {
            let mut inflight: HashMap<u16, i64> = HashMap::new();
            loop {
                let note = match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => Note::Connected,
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let tag = tags
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .pop_front()
                            .unwrap_or(-1);
                        inflight.insert(pkid, tag);
                        continue;
                    }
                    Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                        match inflight.remove(&ack.pkid) {
                            Some(tag) if tag >= 0 => Note::Acked(tag),
                            _ => continue,
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p)))
                        if p.topic == watched && &p.payload[..] == b"online" =>
                    {
                        let configs: Vec<Message> = announced
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .iter()
                            .map(|(topic, payload)| Message {
                                topic: topic.clone(),
                                payload: payload.clone(),
                                retain: true,
                            })
                            .collect();
                        tracing::info!(
                            configs = configs.len(),
                            "Home Assistant online: discovery republished"
                        );
                        let publisher = announcer.clone();
                        // Publishing waits for room in the client's queue, which this loop drains: not inline.
                        tokio::spawn(async move { publisher.publish(configs, -1).await });
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
        });
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
        if self.config.discovery {
            session
                .publisher
                .client
                .subscribe(ha_status, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?;
        }
        tracing::info!(broker = %self.config.url, "MQTT connected");
        self.session = Some(session);
        let mut hello = vec![Message {
            topic: format!("{}/status", self.root()),
            payload: b"online".to_vec(),
            retain: true,
        }];
        hello.extend(self.discovery_messages(None));
        self.remember_discovery();
        hello.extend(self.availability_messages().await);
        self.publish(hello, -1).await?;
        Ok(())
    }

    /// Loads the entities seen in the last 30 days of the log, and device names.
    async fn load_catalog(&mut self) -> Result<(), String> {
        let dir = self.data_dir.clone();
        let (entities, devices) =
            tokio::task::spawn_blocking(move || -> alarm_center_store::Result<_> {
                let db = Db::open_read_only(&dir)?;
                let since = crate::time::now_ms() - 30 * 86_400_000;
                let from = db
                    .first_id_at_or_after("events", since)?
                    .unwrap_or(i64::MAX);
                Ok((db.entity_catalog(from)?, db.devices()?))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        for d in devices {
            self.catalog.devices.entry(d.id.clone()).or_default().0 = d.name;
        }
        for e in entities {
            if let (Some(c), Some(n)) = (e.channel, e.channel_name) {
                self.catalog.channel_names.insert((e.device.clone(), c), n);
            }
            self.catalog
                .devices
                .entry(e.device)
                .or_default()
                .1
                .insert((e.channel, e.code, e.pulse));
        }
        Ok(())
    }

    /// Retained availability of every known device, from the store.
    async fn availability_messages(&self) -> Vec<Message> {
        let dir = self.data_dir.clone();
        let devices = tokio::task::spawn_blocking(move || {
            Db::open_read_only(&dir).and_then(|db| db.devices())
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        devices
            .into_iter()
            .map(|d| Message {
                topic: format!("{}/{}/availability", self.root(), slug(&d.id)),
                payload: d.state.into_bytes(),
                retain: true,
            })
            .collect()
    }

    fn device_block(&self, device: &str) -> serde_json::Value {
        let name = self
            .catalog
            .devices
            .get(device)
            .and_then(|d| d.0.clone())
            .unwrap_or_else(|| device.to_owned());
        json!({"identifiers": [format!("alarm-center_{}", slug(device))], "name": name, "model": "Alarm Center device", "manufacturer": "Dahua / XM (via alarm-center)"})
    }

    /// Discovery configs for one device, or all.
    fn discovery_messages(&self, only: Option<&str>) -> Vec<Message> {
        if !self.config.discovery {
            return Vec::new();
        }
        let (prefix, root) = (&self.config.discovery_prefix, self.root());
        let origin = json!({"name": "alarm-center", "sw": env!("CARGO_PKG_VERSION"), "url": "https://github.com/alarm-center/alarm-center"});
        let mut out = Vec::new();
        for (device, (_, entities)) in &self.catalog.devices {
            if only.is_some_and(|o| o != device) {
                continue;
            }
            let node = format!("alarm-center_{}", slug(device));
            let dev = slug(device);
            let config = json!({
                "name": "Connectivity", "unique_id": format!("{node}_connectivity"),
                "state_topic": format!("{root}/{dev}/availability"), "payload_on": "online", "payload_off": "offline",
                "device_class": "connectivity", "entity_category": "diagnostic",
                "availability_topic": format!("{root}/status"), "device": self.device_block(device), "origin": origin,
            });
            out.push(Message {
                topic: format!("{prefix}/binary_sensor/{node}/connectivity/config"),
                payload: config.to_string().into_bytes(),
                retain: true,
            });
            for (channel, code, pulse) in entities {
                let ch = channel.map_or("device".to_owned(), |c| c.to_string());
                let object = slug(&format!("{ch}_{code}"));
                let label = match channel {
                    Some(c) => self
                        .catalog
                        .channel_names
                        .get(&(device.clone(), *c))
                        .cloned()
                        .unwrap_or_else(|| format!("Channel {c}")),
                    None => "Device".to_owned(),
                };
                let state = format!("{root}/{dev}/{ch}/{}", slug(code));
                let (component, mut config) = if *pulse {
                    (
                        "event",
                        json!({"event_types": ["pulse"], "state_topic": format!("{state}/event")}),
                    )
                } else {
                    (
                        "binary_sensor",
                        json!({"state_topic": state, "payload_on": "ON", "payload_off": "OFF"}),
                    )
                };
                config["name"] = json!(format!("{label} {code}"));
                config["unique_id"] = json!(format!("{node}_{object}"));
                config["availability"] = json!([{"topic": format!("{root}/status")}, {"topic": format!("{root}/{dev}/availability")}]);
                config["availability_mode"] = json!("all");
                config["device"] = self.device_block(device);
                config["origin"] = origin.clone();
                if let (false, Some(class)) = (*pulse, device_class(code)) {
                    config["device_class"] = json!(class);
                }
                // Where the server auto-clears a code, Home Assistant turns the sensor off at the same
                // time even if it missed the synthetic stop.
                let clear = self
                    .auto_clear
                    .get(code.as_str())
                    .or_else(|| self.auto_clear.get("*"));
                if let (false, Some(after)) = (*pulse, clear) {
                    config["off_delay"] = json!(after.as_secs().max(1));
                }
                out.push(Message {
                    topic: format!("{prefix}/{component}/{node}/{object}/config"),
                    payload: config.to_string().into_bytes(),
                    retain: true,
                });
            }
        }
        out
    }

    /// Shares the current discovery configs with the Home Assistant re-announcer.
    fn remember_discovery(&self) {
        let configs = self
            .discovery_messages(None)
            .into_iter()
            .map(|m| (m.topic, m.payload))
            .collect();
        *self.announced.lock().unwrap_or_else(|p| p.into_inner()) = configs;
    }

    /// The messages of one event (and discovery for an entity seen for the first time).
    fn event_messages(&mut self, event: &StoredEvent) -> Vec<Message> {
        let root = self.root().to_owned();
        let dev = slug(&event.device);
        let mut out = vec![Message {
            topic: format!("{root}/{dev}/event"),
            payload: serde_json::to_vec(event).unwrap_or_default(),
            retain: false,
        }];
        if event.kind == "device" && matches!(event.code.as_str(), "DeviceOnline" | "DeviceOffline")
        {
            if !self.catalog.devices.contains_key(&event.device) {
                self.catalog
                    .devices
                    .entry(event.device.clone())
                    .or_default();
                out.extend(self.discovery_messages(Some(&event.device)));
                self.remember_discovery();
            }
            let state: &[u8] = if event.code == "DeviceOnline" {
                b"online"
            } else {
                b"offline"
            };
            out.push(Message {
                topic: format!("{root}/{dev}/availability"),
                payload: state.to_vec(),
                retain: true,
            });
            return out;
        }
        if event.kind == "log" {
            // A log record the device uploaded: on the event topic only, no entity, no state.
            return out;
        }
        let pulse = !matches!(event.action.as_str(), "start" | "stop");
        if let (Some(c), Some(n)) = (event.channel, &event.channel_name) {
            self.catalog
                .channel_names
                .insert((event.device.clone(), c), n.clone());
        }
        let entry = self
            .catalog
            .devices
            .entry(event.device.clone())
            .or_default();
        if entry.1.insert((event.channel, event.code.clone(), pulse)) {
            out.extend(self.discovery_messages(Some(&event.device)));
            self.remember_discovery();
        }
        let ch = event.channel.map_or("device".to_owned(), |c| c.to_string());
        let state = format!("{root}/{dev}/{ch}/{}", slug(&event.code));
        match event.action.as_str() {
            "start" => out.push(Message {
                topic: state,
                payload: b"ON".to_vec(),
                retain: true,
            }),
            "stop" => out.push(Message {
                topic: state,
                payload: b"OFF".to_vec(),
                retain: true,
            }),
            action => {
                let payload = json!({"event_type": "pulse", "action": action, "id": event.id, "device_time": event.device_time, "received_at": event.received_at});
                out.push(Message {
                    topic: format!("{state}/event"),
                    payload: payload.to_string().into_bytes(),
                    retain: false,
                });
            }
        }
        out
    }

    /// Queues messages tagged with `tag` (an event id, or -1).
    async fn publish(&mut self, messages: Vec<Message>, tag: i64) -> Result<usize, String> {
        let publisher = self
            .session
            .as_ref()
            .ok_or("not connected")?
            .publisher
            .clone();
        publisher.publish(messages, tag).await
    }
}

impl Destination for MqttSink {
    async fn deliver(&mut self, events: &[StoredEvent]) -> (Vec<Outcome>, Option<String>) {
        if self.session.is_none() {
            if let Err(e) = self.connect().await {
                self.session = None;
                return (Vec::new(), Some(format!("MQTT: {e}")));
            }
        }
        // Messages still unacknowledged per event, in order.
        let mut waiting: VecDeque<(i64, usize)> = VecDeque::new();
        for event in events {
            let messages = self.event_messages(event);
            match self.publish(messages, event.id).await {
                Ok(n) => waiting.push_back((event.id, n)),
                Err(e) => {
                    self.session = None;
                    return (Vec::new(), Some(format!("MQTT: {e}")));
                }
            }
        }
        let mut outcomes = Vec::new();
        let mut acked: HashMap<i64, usize> = HashMap::new();
        // Time waited since the last acknowledgement.
        let mut silent = Duration::ZERO;
        while !waiting.is_empty() {
            let Some(session) = self.session.as_mut() else {
                break;
            };
            // At shutdown, acknowledgements already on their way still count: wait for them briefly.
            let grace = async {
                self.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_ACK_WAIT).await;
            };
            let note = tokio::select! {
                biased;
                note = session.notes.recv() => note,
                () = grace => return (outcomes, Some("shutdown".into())),
                () = tokio::time::sleep(NUDGE_AFTER) => {
                    // Brokers that leave Nagle's algorithm on hold a PUBACK until our side acknowledges
                    // their previous segment, which a quiet client delays by up to 40 ms. Any packet from
                    // us carries that acknowledgement: an UNSUBSCRIBE of a topic nobody uses costs nothing.
                    // A few nudges per silence; a broker silent for ACK_TIMEOUT is taken as gone.
                    silent += NUDGE_AFTER;
                    if silent >= ACK_TIMEOUT {
                        self.session = None;
                        return (outcomes, Some(format!("MQTT: no acknowledgement for {ACK_TIMEOUT:?}")));
                    }
                    // Every 2 ms for the first 20 ms (a delayed ACK lasts up to 40 ms), then every 100 ms.
                    if silent <= NUDGE_AFTER * MAX_NUDGES || silent.as_millis() % 100 < NUDGE_AFTER.as_millis() {
                        let _ = session.publisher.client.try_unsubscribe(format!("{}/_nudge", self.config.topic_root));
                    }
                    continue;
                }
            };
            silent = Duration::ZERO;
            match note {
                Some(Note::Acked(id)) => *acked.entry(id).or_default() += 1,
                Some(Note::Connected) => {}
                Some(Note::Down(e)) => {
                    self.session = None;
                    return (outcomes, Some(format!("MQTT connection lost: {e}")));
                }
                None => {
                    self.session = None;
                    return (outcomes, Some("MQTT connection lost".into()));
                }
            }
            while let Some(&(id, n)) = waiting.front() {
                if acked.get(&id).copied().unwrap_or(0) < n {
                    break;
                }
                acked.remove(&id);
                waiting.pop_front();
                outcomes.push(Outcome::Delivered);
            }
        }
        (outcomes, None)
    }
}

#[cfg(test)]
mod tests {
    use super::device_class;

    #[test]
    fn device_classes_map_problems_and_tampering_before_motion() {
        let cases = [
            ("LossDetect", Some("problem")),
            ("VideoLoss", Some("problem")),
            ("BlindDetect", Some("tamper")),
            ("VideoBlind", Some("tamper")),
            ("VideoAbnormalDetection", Some("problem")),
            ("StorageNotExist", Some("problem")),
            ("StorageLowSpace", Some("problem")),
            ("StorageFailure", Some("problem")),
            ("DiskFull", Some("problem")),
            ("NetAbort", Some("problem")),
            ("VideoMotion", Some("motion")),
            ("SmartMotionHuman", Some("motion")),
            ("SmartMotionVehicle", Some("motion")),
            ("HumanDetect", Some("motion")),
            ("CrossLineDetection", Some("motion")),
            ("CrossRegionDetection", Some("motion")),
            ("FaceRecognition", Some("motion")),
            ("AudioMutation", Some("sound")),
            ("SmokeDetection", Some("smoke")),
            ("AlarmLocal", None),
        ];
        for (code, class) in cases {
            assert_eq!(device_class(code), class, "{code}");
        }
    }
}
