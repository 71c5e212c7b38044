//! Home Assistant discovery: what Home Assistant has been told about (the catalog), the retained configs,
//! and the bounds on both.
//!
//! A new entity costs one config (and a new device one connectivity config): bookkeeping is a map
//! insertion, never a walk over the catalog. Everything is rendered again only for the announce at each
//! connection and when Home Assistant says `online`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::{EventAction, EventKind, StoredEvent};
use serde_json::json;

use super::{slug, Message, MqttConfig};

/// Entity key: (channel, code, is-pulse).
type Entity = (Option<i64>, String, bool);

/// A device Home Assistant is told about.
#[derive(Default)]
struct Device {
    /// Configured name.
    name: Option<String>,
    /// Configured channel names.
    channels: BTreeMap<i64, String>,
    entities: BTreeSet<Entity>,
    /// Reached `discovery-max-entities-per-device` (logged once).
    full: bool,
}

impl Device {
    /// Adds `entities` up to `max` in all (channel names too); `true` when this made it full.
    fn add_all(&mut self, entities: Vec<alarm_center_store::EventKey>, max: usize) -> bool {
        let mut became_full = false;
        for e in entities {
            if let (Some(c), Some(n)) = (e.channel, e.channel_name) {
                self.channels.insert(c, n);
            }
            let key = (e.channel, e.code, e.pulse);
            if self.entities.contains(&key) {
                continue;
            }
            if self.entities.len() >= max {
                became_full |= !self.full;
                self.full = true;
                continue;
            }
            self.entities.insert(key);
        }
        became_full
    }
}

/// A device of the store, as the catalog needs it.
pub(crate) struct KnownDevice {
    pub(crate) id: String,
    /// Configured name.
    pub(crate) name: Option<String>,
    /// Last frame, RFC 3339 (UTC, so that text order is time order).
    pub(crate) last_seen: String,
}

/// Discovery counters, reported in the sink's discovery log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DiscoveryCounts {
    /// Devices with discovery configs.
    pub(crate) devices: usize,
    /// Entities with discovery configs (connectivity sensors not included).
    pub(crate) entities: usize,
    /// Devices that reached `discovery-max-entities-per-device`.
    pub(crate) full_devices: usize,
    /// Events published without the discovery config they would have made, because of a bound.
    pub(crate) skipped: u64,
}

/// The discovery catalog and the configs made from it. Shared between the sink and its event-loop task,
/// which re-announces everything when Home Assistant comes online.
pub(crate) struct Discovery {
    render: Render,
    devices: BTreeMap<String, Device>,
    counts: DiscoveryCounts,
    /// `discovery-max-devices` was reached (logged once).
    devices_full: bool,
}

impl Discovery {
    pub(crate) fn new(config: Arc<MqttConfig>, auto_clear: BTreeMap<String, Duration>) -> Self {
        Discovery {
            render: Render { config, auto_clear },
            devices: BTreeMap::new(),
            counts: DiscoveryCounts::default(),
            devices_full: false,
        }
    }

    pub(crate) fn counts(&self) -> DiscoveryCounts {
        self.counts
    }

    /// Fills the catalog from the store: the known devices and the entities seen recently, within the
    /// bounds. When there are more devices than `discovery-max-devices`, devices with a configured name
    /// come first, then devices with recent entities, each most recently seen first.
    pub(crate) fn load(
        &mut self,
        devices: Vec<KnownDevice>,
        entities: Vec<alarm_center_store::EventKey>,
    ) {
        let (order, mut by_device) = announce_order(devices, entities);
        let (max_devices, max_entities) = self.bounds();
        let mut left_out = 0;
        let mut full = 0;
        for (id, name) in order {
            let entities = by_device.remove(&id).unwrap_or_default();
            if !self.devices.contains_key(&id) && self.devices.len() >= max_devices {
                left_out += 1;
                continue;
            }
            let device = self.devices.entry(id).or_default();
            device.name = name;
            if device.add_all(entities, max_entities) {
                full += 1;
            }
        }
        self.counts.devices = self.devices.len();
        self.counts.entities = self.devices.values().map(|d| d.entities.len()).sum();
        self.counts.full_devices = self.devices.values().filter(|d| d.full).count();
        if left_out > 0 {
            self.devices_full = true;
            tracing::warn!(
                devices = self.devices.len(),
                left_out,
                "MQTT discovery: more devices than discovery-max-devices; the others get no discovery config (their events are still published)"
            );
        }
        if full > 0 {
            tracing::warn!(
                devices = full,
                max_entities,
                "MQTT discovery: devices with more entities than discovery-max-entities-per-device; the others get no discovery config (their events are still published)"
            );
        }
    }

    fn bounds(&self) -> (usize, usize) {
        let config = &self.render.config;
        (
            config.discovery_max_devices,
            config.discovery_max_entities_per_device,
        )
    }

    /// The configs `event` makes new: its device's connectivity config when the device is new, its
    /// entity's config when the entity is new. Nothing past a bound (counted, and logged once).
    pub(crate) fn observe(&mut self, event: &StoredEvent) -> Vec<Message> {
        let mut out = Vec::new();
        if !self.render.config.discovery || event.event.kind == EventKind::Log {
            return out;
        }
        let (max_devices, max_entities) = self.bounds();
        if !self.devices.contains_key(&event.event.device) {
            if self.devices.len() >= max_devices {
                self.counts.skipped += 1;
                if !self.devices_full {
                    self.devices_full = true;
                    tracing::warn!(
                        device = %event.event.device,
                        max_devices,
                        skipped = self.counts.skipped,
                        "MQTT discovery: discovery-max-devices reached; new devices get no discovery config (their events are still published)"
                    );
                }
                return out;
            }
            self.devices
                .insert(event.event.device.clone(), Device::default());
            self.counts.devices += 1;
            out.push(self.render.connectivity(&event.event.device, None));
        }
        let availability = event.event.kind == EventKind::Device
            && matches!(event.event.code.as_str(), "DeviceOnline" | "DeviceOffline");
        let Some(device) = self.devices.get_mut(&event.event.device) else {
            return out;
        };
        if availability {
            return out;
        }
        if let (Some(c), Some(n)) = (event.event.channel, &event.event.channel_name) {
            if device.channels.get(&c) != Some(n) {
                device.channels.insert(c, n.clone());
            }
        }
        let pulse = !matches!(event.event.action, EventAction::Start | EventAction::Stop);
        let key = (event.event.channel, event.event.code.clone(), pulse);
        if device.entities.contains(&key) {
            return out;
        }
        if device.entities.len() >= max_entities {
            self.counts.skipped += 1;
            if !device.full {
                device.full = true;
                self.counts.full_devices += 1;
                tracing::warn!(
                    device = %event.event.device,
                    max_entities,
                    code = %event.event.code,
                    skipped = self.counts.skipped,
                    full_devices = self.counts.full_devices,
                    "MQTT discovery: discovery-max-entities-per-device reached; this device's new entities get no discovery config (their events are still published)"
                );
            }
            return out;
        }
        out.push(self.render.entity(&event.event.device, device, &key));
        device.entities.insert(key);
        self.counts.entities += 1;
        out
    }

    /// Every config, for the announce at each connection and when Home Assistant comes online.
    pub(crate) fn all(&self) -> Vec<Message> {
        if !self.render.config.discovery {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.counts.devices + self.counts.entities);
        for (id, device) in &self.devices {
            out.push(self.render.connectivity(id, Some(device)));
            for entity in &device.entities {
                out.push(self.render.entity(id, device, entity));
            }
        }
        out
    }
}

/// Makes the configs.
struct Render {
    config: Arc<MqttConfig>,
    /// `[auto-clear]`, for `off_delay`.
    auto_clear: BTreeMap<String, Duration>,
}

impl Render {
    fn origin() -> serde_json::Value {
        json!({"name": "alarm-center", "sw": env!("CARGO_PKG_VERSION"), "url": "https://github.com/alarm-center/alarm-center"})
    }

    fn device_block(id: &str, device: Option<&Device>) -> serde_json::Value {
        let name = device
            .and_then(|d| d.name.clone())
            .unwrap_or_else(|| id.to_owned());
        json!({"identifiers": [format!("alarm-center_{}", slug(id))], "name": name, "model": "Alarm Center device", "manufacturer": "Dahua / XM (via alarm-center)"})
    }

    /// The connectivity sensor of device `id`.
    fn connectivity(&self, id: &str, device: Option<&Device>) -> Message {
        let (prefix, root) = (&self.config.discovery_prefix, &self.config.topic_root);
        let (node, dev) = (format!("alarm-center_{}", slug(id)), slug(id));
        let config = json!({
            "name": "Connectivity", "unique_id": format!("{node}_connectivity"),
            "state_topic": format!("{root}/{dev}/availability"), "payload_on": "online", "payload_off": "offline",
            "device_class": "connectivity", "entity_category": "diagnostic",
            "availability_topic": format!("{root}/status"), "device": Self::device_block(id, device), "origin": Self::origin(),
        });
        Message {
            topic: format!("{prefix}/binary_sensor/{node}/connectivity/config"),
            payload: config.to_string().into_bytes(),
            retain: true,
        }
    }

    /// The binary sensor (start/stop) or event entity (pulses) of one channel and code of device `id`.
    fn entity(&self, id: &str, device: &Device, (channel, code, pulse): &Entity) -> Message {
        let (prefix, root) = (&self.config.discovery_prefix, &self.config.topic_root);
        let (node, dev) = (format!("alarm-center_{}", slug(id)), slug(id));
        let ch = channel.map_or("device".to_owned(), |c| c.to_string());
        let object = slug(&format!("{ch}_{code}"));
        let label = match channel {
            Some(c) => device
                .channels
                .get(c)
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
        config["device"] = Self::device_block(id, Some(device));
        config["origin"] = Self::origin();
        if let (false, Some(class)) = (*pulse, device_class(code)) {
            config["device_class"] = json!(class);
        }
        // Where the server auto-clears a code, Home Assistant turns the sensor off at the same time even
        // if it missed the synthetic stop.
        let clear = self
            .auto_clear
            .get(code.as_str())
            .or_else(|| self.auto_clear.get("*"));
        if let (false, Some(after)) = (*pulse, clear) {
            config["off_delay"] = json!(after.as_secs().max(1));
        }
        Message {
            topic: format!("{prefix}/{component}/{node}/{object}/config"),
            payload: config.to_string().into_bytes(),
            retain: true,
        }
    }
}

/// Home Assistant device class for an event code. Conditions that are not movement come first:
/// `LossDetect`, `BlindDetect` and `VideoAbnormalDetection` contain "detect" but are no motion.
pub(super) fn device_class(code: &str) -> Option<&'static str> {
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

/// The devices in the order they get discovery configs (named devices, then devices with recent
/// entities; the most recently seen first), and each one's entities.
#[expect(
    clippy::type_complexity,
    reason = "a private helper's (order, map) pair"
)]
fn announce_order(
    devices: Vec<KnownDevice>,
    entities: Vec<alarm_center_store::EventKey>,
) -> (
    Vec<(String, Option<String>)>,
    BTreeMap<String, Vec<alarm_center_store::EventKey>>,
) {
    let mut rows: BTreeMap<String, (Option<String>, String)> = devices
        .into_iter()
        .map(|d| (d.id, (d.name, d.last_seen)))
        .collect();
    let mut by_device: BTreeMap<String, Vec<alarm_center_store::EventKey>> = BTreeMap::new();
    for e in entities {
        rows.entry(e.device.clone()).or_default();
        by_device.entry(e.device.clone()).or_default().push(e);
    }
    let mut order: Vec<(String, Option<String>, String)> = rows
        .into_iter()
        .map(|(id, (name, seen))| (id, name, seen))
        .collect();
    // Last seen is RFC 3339: it sorts as text.
    order.sort_by(|a, b| {
        let rank = |(id, name, _): &(String, Option<String>, String)| {
            (name.is_none(), !by_device.contains_key(id))
        };
        rank(a).cmp(&rank(b)).then_with(|| b.2.cmp(&a.2))
    });
    let order = order.into_iter().map(|(id, name, _)| (id, name)).collect();
    (order, by_device)
}
