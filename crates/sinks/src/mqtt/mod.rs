//! MQTT sink: every event as JSON, retained ON/OFF states, device availability, the server's own status
//! with a last will, and Home Assistant discovery. Delivery is QoS 1: an event counts as delivered when
//! the broker acknowledged every message it produced; after a lost connection the sink reconnects and
//! resends from the first unacknowledged event (at-least-once, in log order).

mod bounds;
mod config;
mod discovery;
mod link;
#[cfg(test)]
mod link_tests;
mod session;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alarm_center_store::{EventAction, EventKind, StoredEvent};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Destination, Outcome};
use bounds::slug;
pub use config::{Endpoint, MqttConfig};
use discovery::{Discovery, KnownDevice};
use session::{Message, Note, Session};

/// How long a sink that is stopping waits for acknowledgements of what it already published.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(2);

/// Nudges sent back to back in one silence (then one per 100 ms).
const MAX_NUDGES: u32 = 10;
/// A broker that acknowledges nothing for this long is treated as disconnected.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections lost in a row while the same event was the oldest unacknowledged, the last ones with
/// that event alone in flight, after which it is taken as refused by the broker and dead-lettered.
const REFUSED_AFTER: u32 = 3;

/// How long to wait for an acknowledgement before nudging the broker's TCP stack.
const NUDGE_AFTER: Duration = Duration::from_millis(2);

/// The discovery catalog, recovered from a poisoned lock (it holds no invariant a panic could break
/// half-way that matters more than keeping the sink running).
fn lock(discovery: &Mutex<Discovery>) -> MutexGuard<'_, Discovery> {
    discovery.lock().unwrap_or_else(|p| p.into_inner())
}

/// The MQTT sink.
pub(crate) struct MqttSink {
    config: Arc<MqttConfig>,
    /// The sink's store connection, lent by its runner ([`Destination::attach`]).
    store: Option<crate::SinkStore>,
    shutdown: CancellationToken,
    session: Option<Session>,
    /// Events published and not yet wholly acknowledged, in log order: id and messages published.
    in_flight: VecDeque<(i64, usize)>,
    /// Acknowledgements received so far per event in flight.
    acked: HashMap<i64, usize>,
    /// When a stopping sink stops waiting for acknowledgements.
    stop_by: Option<Instant>,
    /// The event that was the oldest unacknowledged when the connection was lost, and how many
    /// connections in a row were lost so: until it is acknowledged it is published alone, and after
    /// [`REFUSED_AFTER`] losses it is dead-lettered (a broker closes the connection on a message it
    /// refuses, e.g. past its `max_packet_size`, and would refuse it again on every connection).
    suspect: Option<(i64, u32)>,
    /// What Home Assistant is told about, shared with the event-loop task, which answers Home
    /// Assistant's `online` even while the sink is idle.
    discovery: Arc<Mutex<Discovery>>,
    catalog_loaded: bool,
}

impl MqttSink {
    pub(crate) fn new(
        config: Arc<MqttConfig>,
        auto_clear: BTreeMap<String, Duration>,
        shutdown: CancellationToken,
    ) -> Result<MqttSink, crate::SinkError> {
        config.endpoint().map_err(crate::SinkError::Config)?;
        Ok(MqttSink {
            discovery: Arc::new(Mutex::new(Discovery::new(config.clone(), auto_clear))),
            config,
            store: None,
            shutdown,
            session: None,
            in_flight: VecDeque::new(),
            acked: HashMap::new(),
            stop_by: None,
            suspect: None,
            catalog_loaded: false,
        })
    }

    fn root(&self) -> &str {
        &self.config.topic_root
    }

    /// Connects and announces: server status, discovery and device availability.
    async fn connect(&mut self) -> Result<(), String> {
        if !self.catalog_loaded {
            if self.config.discovery {
                self.load_catalog().await?;
            }
            self.catalog_loaded = true;
        }
        let session = Session::open(&self.config, self.discovery.clone()).await?;
        tracing::info!(broker = %self.config.url, "MQTT connected");
        self.session = Some(session);
        let mut hello = vec![Message {
            topic: format!("{}/status", self.root()),
            payload: b"online".to_vec(),
            retain: true,
        }];
        if self.config.discovery {
            let discovery = lock(&self.discovery);
            let configs = discovery.all();
            let counts = discovery.counts();
            tracing::info!(
                configs = configs.len(),
                devices = counts.devices,
                entities = counts.entities,
                full_devices = counts.full_devices,
                skipped = counts.skipped,
                "Home Assistant discovery announced"
            );
            hello.extend(configs);
        }
        hello.extend(self.availability_messages().await);
        self.publish(hello.into_iter().map(|m| (m, None)).collect())
            .await?;
        Ok(())
    }

    /// Loads the entities seen in the last 30 days of the log, and the devices.
    async fn load_catalog(&mut self) -> Result<(), String> {
        let store = self.store.clone().ok_or("no store connection")?;
        let (entities, devices) = store
            .call(|db| {
                let since = crate::now_ms() - 30 * 86_400_000;
                let from = db
                    .first_id_at_or_after(alarm_center_store::Table::Events, since)?
                    .unwrap_or(i64::MAX);
                Ok((db.event_keys_since(from)?, db.devices()?))
            })
            .await?;
        let devices = devices
            .into_iter()
            .map(|d| KnownDevice {
                id: d.id,
                name: d.name,
                last_seen: d.last_seen,
            })
            .collect();
        lock(&self.discovery).load(devices, entities);
        Ok(())
    }

    /// Retained availability of every known device, from the store.
    async fn availability_messages(&self) -> Vec<Message> {
        let devices = match &self.store {
            Some(store) => store.call(|db| db.devices()).await.unwrap_or_default(),
            None => Vec::new(),
        };
        devices
            .into_iter()
            .map(|d| Message {
                topic: format!("{}/{}/availability", self.root(), slug(&d.id)),
                payload: d.state.as_str().as_bytes().to_vec(),
                retain: true,
            })
            .collect()
    }

    /// Publishes the messages of `events` (QoS 1, pipelined); returns, per event in order, its id and
    /// how many acknowledgements it waits for.
    async fn publish_all(
        &mut self,
        events: &[StoredEvent],
    ) -> Result<VecDeque<(i64, usize)>, String> {
        let mut waiting = VecDeque::with_capacity(events.len());
        let mut tagged = Vec::with_capacity(events.len() * 2);
        for event in events {
            let mut messages: Vec<_> = self
                .event_messages(event)
                .into_iter()
                .map(|m| (m, Some(event.id)))
                .collect();
            // Before counting: the event waits for the acknowledgement of each message sent.
            bounds::drop_outsized(&mut messages, self.config.max_message);
            waiting.push_back((event.id, messages.len()));
            tagged.extend(messages);
        }
        self.publish(tagged).await?;
        Ok(waiting)
    }

    /// The messages of one event, with the discovery configs it makes new (a new device's connectivity
    /// sensor, a new entity).
    fn event_messages(&self, event: &StoredEvent) -> Vec<Message> {
        let root = self.root();
        let dev = slug(&event.event.device);
        let mut out = vec![Message {
            topic: format!("{root}/{dev}/event"),
            payload: bounds::event_payload(event, self.config.max_message),
            retain: false,
        }];
        if event.event.kind == EventKind::Log {
            // A log record the device uploaded: on the event topic only, no entity, no state.
            return out;
        }
        out.extend(lock(&self.discovery).observe(event));
        if event.event.kind == EventKind::Device
            && matches!(event.event.code.as_str(), "DeviceOnline" | "DeviceOffline")
        {
            let state: &[u8] = if event.event.code == "DeviceOnline" {
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
        let ch = event
            .event
            .channel
            .map_or("device".to_owned(), |c| c.to_string());
        let state = format!("{root}/{dev}/{ch}/{}", slug(&event.event.code));
        match &event.event.action {
            EventAction::Start => out.push(Message {
                topic: state,
                payload: b"ON".to_vec(),
                retain: true,
            }),
            EventAction::Stop => out.push(Message {
                topic: state,
                payload: b"OFF".to_vec(),
                retain: true,
            }),
            action => {
                let payload = json!({"event_type": "pulse", "action": action, "id": event.id, "device_time": event.event.device_time, "received_at": event.received_at()});
                out.push(Message {
                    topic: format!("{state}/event"),
                    payload: payload.to_string().into_bytes(),
                    retain: false,
                });
            }
        }
        out
    }

    /// Queues messages, each tagged with the event it delivers (`None`: an announcement).
    async fn publish(&mut self, messages: Vec<(Message, Option<i64>)>) -> Result<(), String> {
        let publisher = self
            .session
            .as_ref()
            .ok_or("not connected")?
            .publisher
            .clone();
        publisher.publish(messages).await
    }
}

impl Destination for MqttSink {
    fn attach(&mut self, store: crate::SinkStore) {
        self.store = Some(store);
    }

    async fn deliver(&mut self, events: &[StoredEvent]) -> (Vec<Outcome>, Option<String>) {
        if let Some(refused) = self.refused(events) {
            return (vec![refused], None);
        }
        if self.session.is_none() {
            if let Err(e) = self.connect().await {
                self.disconnect();
                return (Vec::new(), Some(format!("MQTT: {e}")));
            }
        }
        if !self.offered_again(events) {
            // Not what was left in flight (it cannot happen with the runner): publish everything again.
            self.in_flight.clear();
            self.acked.clear();
        }
        let stopping = self.shutdown.is_cancelled();
        if !stopping {
            let mut new = &events[self.in_flight.len()..];
            if self.suspect.is_some() {
                // The suspect alone, until its acknowledgement tells it was not the cause.
                new = &new[..new.len().min(usize::from(self.in_flight.is_empty()))];
            }
            match self.publish_all(new).await {
                Ok(published) => self.in_flight.extend(published),
                Err(e) => {
                    self.disconnect();
                    return (Vec::new(), Some(format!("MQTT: {e}")));
                }
            }
        }
        if self.in_flight.is_empty() {
            let failure = stopping.then(|| "shutdown".to_owned());
            return (Vec::new(), failure);
        }
        // At shutdown, acknowledgements already on their way still count: wait for them briefly.
        let stop_by = stopping.then(|| {
            *self
                .stop_by
                .get_or_insert_with(|| Instant::now() + SHUTDOWN_ACK_WAIT)
        });
        let mut outcomes = Vec::new();
        // Time waited since the last acknowledgement.
        let mut silent = Duration::ZERO;
        // Returns as soon as the oldest events are acknowledged: the runner records them and offers
        // the rest again with what the log gained meanwhile (publishing never waits for a batch).
        while outcomes.is_empty() {
            let Some(session) = self.session.as_mut() else {
                break;
            };
            let grace = async {
                match stop_by {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => {
                        self.shutdown.cancelled().await;
                        tokio::time::sleep(SHUTDOWN_ACK_WAIT).await;
                    }
                }
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
                        self.disconnect();
                        return (outcomes, Some(format!("MQTT: no acknowledgement for {ACK_TIMEOUT:?}")));
                    }
                    // Every 2 ms for the first 20 ms (a delayed ACK lasts up to 40 ms), then every 100 ms.
                    if silent <= NUDGE_AFTER * MAX_NUDGES || silent.as_millis() % 100 < NUDGE_AFTER.as_millis() {
                        session.publisher.nudge(format!("{}/_nudge", self.config.topic_root));
                    }
                    continue;
                }
            };
            silent = Duration::ZERO;
            // Every note already queued is taken now: one wait (and one timer) per burst of
            // acknowledgements, not per acknowledgement.
            let mut note = note;
            loop {
                match note {
                    Some(Note::Acked(id)) => *self.acked.entry(id).or_default() += 1,
                    Some(Note::Down(e)) => {
                        self.disconnect();
                        return (outcomes, Some(format!("MQTT connection lost: {e}")));
                    }
                    None => {
                        self.disconnect();
                        return (outcomes, Some("MQTT connection lost".into()));
                    }
                }
                match session.notes.try_recv() {
                    Ok(next) => note = Some(next),
                    Err(_) => break,
                }
            }
            settle(&mut self.in_flight, &mut self.acked, &mut outcomes);
            if !outcomes.is_empty() {
                // The oldest event was acknowledged: the suspect (always the oldest) was innocent.
                self.suspect = None;
            }
        }
        (outcomes, None)
    }
}

impl MqttSink {
    /// Whether `events` starts with the events still in flight (the runner offers them again first).
    fn offered_again(&self, events: &[StoredEvent]) -> bool {
        let (Some(first), Some(last)) = (self.in_flight.front(), self.in_flight.back()) else {
            return true;
        };
        events.len() >= self.in_flight.len()
            && events[0].id == first.0
            && events[self.in_flight.len() - 1].id == last.0
    }

    /// The dead letter of the first of `events` when it is the suspect of [`REFUSED_AFTER`] lost
    /// connections in a row.
    fn refused(&mut self, events: &[StoredEvent]) -> Option<Outcome> {
        let (id, losses) = self.suspect?;
        if events.first().map(|e| e.id) != Some(id) {
            self.suspect = None;
            return None;
        }
        if losses < REFUSED_AFTER || !self.in_flight.is_empty() {
            return None;
        }
        self.suspect = None;
        Some(Outcome::DeadLetter {
            attempts: losses,
            error: format!(
                "the broker closed the connection {losses} times in a row while this event was the oldest unacknowledged (the last times alone in flight): it refuses a message of this event (larger than its max_packet_size? lower sinks.mqtt.max-message)"
            ),
            request: None,
        })
    }

    /// Drops the connection and what was in flight on it: unacknowledged events are published again on
    /// the next connection (at least once, in log order). The oldest of them becomes the suspect.
    fn disconnect(&mut self) {
        if let Some(&(oldest, _)) = self.in_flight.front() {
            let losses = match self.suspect {
                Some((id, losses)) if id == oldest => losses + 1,
                _ => 1,
            };
            self.suspect = Some((oldest, losses));
        }
        self.session = None;
        self.in_flight.clear();
        self.acked.clear();
    }
}

/// Moves the leading events whose messages are all acknowledged from `waiting` to `outcomes`.
fn settle(
    waiting: &mut VecDeque<(i64, usize)>,
    acked: &mut HashMap<i64, usize>,
    outcomes: &mut Vec<Outcome>,
) {
    while let Some(&(id, n)) = waiting.front() {
        if acked.get(&id).copied().unwrap_or(0) < n {
            break;
        }
        acked.remove(&id);
        waiting.pop_front();
        outcomes.push(Outcome::Delivered);
    }
}
