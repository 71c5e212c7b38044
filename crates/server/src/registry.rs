//! Devices known to the server: identity resolution, per-device protocol state, online/offline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alarm_center_devices::{
    normalize_mac, ActiveAlarms, Identity, KnownDevice, NewDeviceLimiter, Presence, Refusal,
    Supervision, MAX_SOURCES,
};
use alarm_center_proto::{Action, DeviceInfo, Event, Session};
use jiff::tz::TimeZone;
use tokio::time::Instant;

use crate::config::{Config, DeviceConfig};
use crate::http_auth::Credentials;

/// A configured device with its matchers normalised.
#[derive(Debug, Clone)]
struct Known {
    config: DeviceConfig,
    zone: TimeZone,
    /// Its own HTTP credentials (validated with the configuration).
    http_credentials: Option<Credentials>,
}

/// One device's live state.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) zone: TimeZone,
    configured_period: Option<Duration>,
    /// Configured channel names by 1-based channel.
    channels: HashMap<i64, String>,
    /// True when it matches a `[[devices]]` entry: it never expires.
    configured: bool,
    /// Last frame received, milliseconds since the registry started (monotonic clock).
    last_seen: AtomicU64,
    /// How long it had been silent when the server started, milliseconds (restored from the store;
    /// 0 once it is heard from).
    silent_before: AtomicU64,
    state: Mutex<DeviceState>,
    /// Held from deciding what a frame (or the supervisor) means for the device until its record
    /// is queued for the store: the store receives one device's records in the order of decisions.
    pub(crate) order: Arc<tokio::sync::Mutex<()>>,
}

/// The part of a device's state changed under its lock.
#[derive(Debug, Default)]
pub(crate) struct DeviceState {
    /// Online or offline, and since when (every change stamped after the one before).
    pub(crate) presence: Presence,
    /// Known to the store (a row exists).
    pub(crate) persisted: bool,
    /// Protocol state (0x69 masks) carried across reconnections.
    pub(crate) session: Session,
    /// Keep-alive period the device announced, seconds.
    pub(crate) announced_period: Option<u32>,
    /// True once the device sent a keepAlive: only then does silence mean offline (XM cameras, for
    /// one, open a connection per alarm and send nothing in between).
    pub(crate) sends_keepalives: bool,
    /// Alarms started and not stopped, with when (registry clock, ms).
    pub(crate) active: ActiveAlarms,
    /// Open connections attached to the device: (connection id, source address).
    pub(crate) connections: Vec<(i64, IpAddr)>,
    /// The identity fields last written to the store.
    pub(crate) reported: DeviceInfo,
    /// How many times the device went offline: connections with their own protocol state (devices
    /// known by address only) start it afresh when this changes.
    pub(crate) generation: u64,
}

impl Device {
    /// Locks the device's state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The configured name of 1-based `channel`.
    pub(crate) fn channel_name(&self, channel: i64) -> Option<String> {
        self.channels.get(&channel).cloned()
    }

    /// The period after which silence means offline (without grace).
    pub(crate) fn period(&self, state: &DeviceState, default: Duration) -> Duration {
        state
            .announced_period
            .map(|s| Duration::from_secs(u64::from(s)))
            .or(self.configured_period)
            .unwrap_or(default)
    }

    /// Milliseconds without a frame at `now` (registry clock), silence before the start included.
    fn silence_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_seen.load(Ordering::Relaxed))
            .saturating_add(self.silent_before.load(Ordering::Relaxed))
    }

    /// Whether it is to be forgotten at `now`: not configured, no connection open, silent for
    /// `after_ms` milliseconds.
    fn expired(&self, now: u64, after_ms: u64) -> bool {
        !self.configured && self.silence_ms(now) >= after_ms && self.lock().connections.is_empty()
    }
}

impl DeviceState {
    /// Tracks alarms that started and stopped at `now_ms` (registry clock), for synthetic stops.
    /// Returns `false` for a start that is not tracked (the device has `MAX_ACTIVE` alarms active).
    pub(crate) fn track(&mut self, event: &Event, now_ms: u64) -> bool {
        let key = (event.code.to_string(), event.index);
        match event.action {
            Action::Start => self.active.start(key, now_ms),
            Action::Stop => {
                self.active.stop(&key);
                true
            }
            _ => true,
        }
    }
}

/// All devices.
#[derive(Debug)]
pub(crate) struct Registry {
    known: Vec<Known>,
    /// The `[[devices]]` entries as identity resolution sees them.
    identities: Vec<KnownDevice>,
    default_zone: TimeZone,
    allow_unknown: bool,
    /// Last time ingest was held up (the store queue full or commits failing), registry clock ms.
    stalled_at: AtomicU64,
    /// `[server] http-username/http-password`.
    http_credentials: Option<Credentials>,
    /// Any HTTP credentials configured at all, server-wide or for a device.
    any_http_credentials: bool,
    started: Instant,
    devices: Mutex<HashMap<String, Arc<Device>>>,
    /// `server.max-new-devices-per-ip-per-minute` and `server.max-new-devices-per-minute`.
    new_devices: Mutex<NewDeviceLimiter>,
}

impl Registry {
    /// A registry for `config` (zones were checked by validation).
    pub(crate) fn new(config: &Config) -> Registry {
        let default_zone = crate::time::zone(&config.server.timezone).unwrap_or(TimeZone::UTC);
        let known = config
            .devices
            .iter()
            .map(|d| Known {
                zone: d
                    .timezone
                    .as_deref()
                    .and_then(|z| crate::time::zone(z).ok())
                    .unwrap_or_else(|| default_zone.clone()),
                http_credentials: crate::config::http_credentials(
                    &d.http_username,
                    &d.http_password,
                )
                .ok()
                .flatten(),
                config: d.clone(),
            })
            .collect::<Vec<Known>>();
        let http_credentials = crate::config::http_credentials(
            &config.server.http_username,
            &config.server.http_password,
        )
        .ok()
        .flatten();
        let any_http_credentials =
            http_credentials.is_some() || known.iter().any(|k| k.http_credentials.is_some());
        let identities = known
            .iter()
            .map(|k| KnownDevice {
                id: k.config.id.clone(),
                serial: k.config.serial.clone(),
                mac: k.config.mac.as_deref().map(normalize_mac),
                domain: k.config.domain.clone(),
                address: k.config.address,
            })
            .collect();
        Registry {
            known,
            identities,
            default_zone,
            allow_unknown: config.server.allow_unknown_devices,
            stalled_at: AtomicU64::new(0),
            http_credentials,
            any_http_credentials,
            started: Instant::now(),
            devices: Mutex::new(HashMap::new()),
            new_devices: Mutex::new(NewDeviceLimiter::new(
                config.server.max_new_devices_per_ip_per_minute,
                config.server.max_new_devices_per_minute,
                MAX_SOURCES,
                0,
            )),
        }
    }

    /// Milliseconds since the registry started, on the monotonic (and test-pausable) clock.
    pub(crate) fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Device>>> {
        self.devices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether connections from unrecognised devices are accepted.
    pub(crate) fn allow_unknown(&self) -> bool {
        self.allow_unknown
    }

    /// The credentials HTTP-mode device `id` must present: its own, else the server's, else none.
    pub(crate) fn http_credentials(&self, id: &str) -> Option<&Credentials> {
        self.known
            .iter()
            .find(|k| k.config.id == id)
            .and_then(|k| k.http_credentials.as_ref())
            .or(self.http_credentials.as_ref())
    }

    /// Whether any HTTP credentials are configured (else no request needs its identity resolved for them).
    pub(crate) fn requires_http_credentials(&self) -> bool {
        self.any_http_credentials
    }

    /// Resolves who sent a frame carrying `info`, from `peer`. With `ip_names_device` (HTTP mode, whose
    /// bodies carry the device's own `Data.IP` and no serial), a reported address different from `peer`
    /// tells devices behind one NAT address apart: `<reported ip>@<peer ip>`.
    pub(crate) fn resolve(
        &self,
        info: &DeviceInfo,
        peer: IpAddr,
        ip_names_device: bool,
    ) -> Identity {
        alarm_center_devices::resolve(&self.identities, info, peer, ip_names_device)
    }

    /// The device `id`, created on first use; `new` is true when this call created it. A device
    /// neither configured nor known yet counts against the new-device limits of `source`, and is not
    /// created when they refuse it.
    pub(crate) fn admit(&self, id: &str, source: IpAddr) -> Result<(Arc<Device>, bool), Refusal> {
        self.entry(id, || {
            self.new_devices
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .admit(source, self.clock_ms())
        })
    }

    /// The device `id`, or a new one when `allow` (asked only for a device neither configured nor
    /// known) lets it be created.
    fn entry<E>(
        &self,
        id: &str,
        allow: impl FnOnce() -> Result<(), E>,
    ) -> Result<(Arc<Device>, bool), E> {
        let mut map = self.map();
        if let Some(device) = map.get(id) {
            // Heard from now, under the map's lock: an expiry pass cannot forget the device between
            // this and the connection attaching to it.
            device.last_seen.store(self.clock_ms(), Ordering::Relaxed);
            device.silent_before.store(0, Ordering::Relaxed);
            return Ok((device.clone(), false));
        }
        let known = self.known.iter().find(|k| k.config.id == id);
        if known.is_none() {
            allow()?;
        }
        let device = Arc::new(self.new_device(id, known));
        map.insert(id.to_owned(), device.clone());
        Ok((device, true))
    }

    /// A device of id `id`, configured by `known` if any, heard from now.
    fn new_device(&self, id: &str, known: Option<&Known>) -> Device {
        Device {
            id: id.to_owned(),
            name: known.and_then(|k| k.config.name.clone()),
            zone: known.map_or_else(|| self.default_zone.clone(), |k| k.zone.clone()),
            configured_period: known.and_then(|k| k.config.keepalive),
            channels: known
                .map(|k| {
                    k.config
                        .channels
                        .iter()
                        .filter_map(|(c, name)| Some((c.parse().ok()?, name.clone())))
                        .collect()
                })
                .unwrap_or_default(),
            order: Arc::new(tokio::sync::Mutex::new(())),
            configured: known.is_some(),
            last_seen: AtomicU64::new(self.clock_ms()),
            silent_before: AtomicU64::new(0),
            state: Mutex::new(DeviceState::default()),
        }
    }

    /// Registers a device found in the store at startup: it gets a whole period plus grace to reconnect.
    /// `silent_ms` is how long ago its last frame came, milliseconds: it counts towards its expiry.
    pub(crate) fn restore(&self, id: &str, online: bool, period: Option<u32>, silent_ms: u64) {
        let Ok((device, _)) = self.entry(id, || Ok::<(), Infallible>(()));
        device.silent_before.store(silent_ms, Ordering::Relaxed);
        let mut state = device.lock();
        state.persisted = true;
        state.presence = Presence::restored(online);
        state.announced_period = period;
        // It was supervised before the restart if it announced a period; otherwise the first keepAlive
        // after the restart turns supervision on again.
        state.sends_keepalives = period.is_some();
    }

    /// Records that ingest is held up now: connections wait for room in the store queue instead of
    /// reading their sockets, so silence is measured from the end of the stall, not from frames that
    /// nobody read.
    pub(crate) fn note_stall(&self) {
        self.stalled_at.store(self.clock_ms(), Ordering::Relaxed);
    }

    /// Records that `device` was heard from now.
    pub(crate) fn touch(&self, device: &Device) {
        device.last_seen.store(self.clock_ms(), Ordering::Relaxed);
    }

    /// Devices online whose silence exceeds their period plus `grace`; `default` is the period when
    /// none is announced or configured.
    pub(crate) fn overdue(&self, default: Duration, grace: Duration) -> Vec<Arc<Device>> {
        let now = self.clock_ms();
        // Frames that waited in sockets while ingest was held up are no silence (see `note_stall`).
        let stalled_at = self.stalled_at.load(Ordering::Relaxed);
        let devices: Vec<Arc<Device>> = self.map().values().cloned().collect();
        devices
            .into_iter()
            .filter(|d| Self::silent(d, now, stalled_at, default, grace))
            .collect()
    }

    /// Whether `device` is still overdue now (it may have been heard from since `overdue` said so).
    pub(crate) fn still_overdue(
        &self,
        device: &Device,
        default: Duration,
        grace: Duration,
    ) -> bool {
        let stalled_at = self.stalled_at.load(Ordering::Relaxed);
        Self::silent(device, self.clock_ms(), stalled_at, default, grace)
    }

    fn silent(d: &Device, now: u64, stalled_at: u64, default: Duration, grace: Duration) -> bool {
        let state = d.lock();
        Supervision {
            online: state.presence.is_online(),
            supervised: state.sends_keepalives || d.configured_period.is_some(),
            last_seen_ms: d.last_seen.load(Ordering::Relaxed),
            stalled_at_ms: stalled_at,
            period: d.period(&state, default),
            grace,
        }
        .overdue(now)
    }

    /// Forgets the devices that match no `[[devices]]` entry, have no connection open and sent no
    /// frame for `after` (silence before the start included); returns their ids. One pass over every
    /// device under the registry's lock.
    pub(crate) fn expire(&self, after: Duration) -> Vec<String> {
        let now = self.clock_ms();
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let mut map = self.map();
        let mut gone = Vec::new();
        map.retain(|id, device| {
            let expired = device.expired(now, after_ms);
            if expired {
                gone.push(id.clone());
            }
            !expired
        });
        // After a flood of random serials expired, give the table's memory back.
        if map.capacity() > 4 * map.len() + 1024 {
            map.shrink_to_fit();
        }
        gone
    }

    /// Every device.
    pub(crate) fn all(&self) -> Vec<Arc<Device>> {
        self.map().values().cloned().collect()
    }

    /// Number of devices online.
    pub(crate) fn online_count(&self) -> usize {
        self.map()
            .values()
            .filter(|d| d.lock().presence.is_online())
            .count()
    }
}
