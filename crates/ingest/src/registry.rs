//! Devices known to the server: identity resolution, admission, and each device's core state
//! ([`Device`], sans-IO) behind a lock.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alarm_center_devices::{
    normalize_mac, Deadlines, Device, Identity, KnownDevice, NewDeviceLimiter, Policy, Profile,
    Refusal, MAX_SOURCES,
};
use alarm_center_proto::DeviceInfo;
use jiff::tz::TimeZone;
use tokio::time::Instant;

use crate::config::{DeviceConfig, IngestConfig};
use crate::http_auth::Credentials;

/// A configured device with its matchers normalised.
#[derive(Debug, Clone)]
struct Known {
    config: DeviceConfig,
    zone: TimeZone,
    /// Its own HTTP credentials (validated with the configuration).
    http_credentials: Option<Credentials>,
}

impl Known {
    /// `config` with its zone (`default` when it has none) and credentials (both checked by
    /// validation).
    fn new(config: &DeviceConfig, default: &TimeZone) -> Known {
        Known {
            zone: config
                .timezone
                .as_deref()
                .and_then(|z| crate::time::zone(z).ok())
                .unwrap_or_else(|| default.clone()),
            http_credentials: crate::config::http_credentials(
                &config.http_username,
                &config.http_password,
            )
            .ok()
            .flatten(),
            config: config.clone(),
        }
    }

    /// The entry as identity resolution sees it.
    fn identity(&self) -> KnownDevice {
        KnownDevice {
            id: self.config.id.clone(),
            serial: self.config.serial.clone(),
            mac: self.config.mac.as_deref().map(normalize_mac),
            domain: self.config.domain.clone(),
            address: self.config.address,
        }
    }
}

/// A device shared by its connections and supervision: its core state under a lock, and the order in
/// which its records reach the store.
#[derive(Debug)]
pub(crate) struct SharedDevice {
    pub(crate) id: String,
    core: Mutex<Device>,
    /// Held from deciding what a frame (or the supervisor) means for the device until its record
    /// is queued for the store: the store receives one device's records in the order of decisions.
    pub(crate) order: Arc<tokio::sync::Mutex<()>>,
}

impl SharedDevice {
    /// Locks the device's state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Device> {
        self.core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// `[supervision]` and `[auto-clear]`.
    policy: Policy,
    /// Last time ingest was held up (the store queue full or commits failing), registry clock ms.
    stalled_at: AtomicU64,
    /// `[server] http-username/http-password`.
    http_credentials: Option<Credentials>,
    /// Any HTTP credentials configured at all, server-wide or for a device.
    any_http_credentials: bool,
    started: Instant,
    devices: Mutex<HashMap<String, Arc<SharedDevice>>>,
    /// When each device next needs supervision (offline, auto-clear): supervision pops the due ones
    /// instead of looking at every device every second.
    timers: Mutex<Deadlines<String>>,
    /// Devices whose `last_seen` the store has not yet (see `flush_last_seen`).
    last_seen_owed: Mutex<Vec<String>>,
    /// `server.max-new-devices-per-ip-per-minute` and `server.max-new-devices-per-minute`.
    new_devices: Mutex<NewDeviceLimiter>,
}

impl Registry {
    /// A registry for `config` (zones were checked by validation).
    pub(crate) fn new(config: &IngestConfig) -> Registry {
        let default_zone = crate::time::zone(&config.server.timezone).unwrap_or(TimeZone::UTC);
        let known: Vec<Known> = config
            .devices
            .iter()
            .map(|d| Known::new(d, &default_zone))
            .collect();
        let http_credentials = crate::config::http_credentials(
            &config.server.http_username,
            &config.server.http_password,
        )
        .ok()
        .flatten();
        let any_http_credentials =
            http_credentials.is_some() || known.iter().any(|k| k.http_credentials.is_some());
        let identities = known.iter().map(Known::identity).collect();
        Registry {
            known,
            identities,
            default_zone,
            allow_unknown: config.server.allow_unknown_devices,
            policy: Policy {
                default_period: config.supervision.keepalive,
                grace: config.supervision.grace,
                stop_alarms_on_offline: config.supervision.stop_alarms_on_offline,
                auto_clear: config.auto_clear.clone(),
            },
            stalled_at: AtomicU64::new(0),
            http_credentials,
            any_http_credentials,
            started: Instant::now(),
            devices: Mutex::new(HashMap::new()),
            timers: Mutex::new(Deadlines::default()),
            last_seen_owed: Mutex::new(Vec::new()),
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

    /// The supervision rules.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<SharedDevice>>> {
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
    pub(crate) fn admit(
        &self,
        id: &str,
        source: IpAddr,
    ) -> Result<(Arc<SharedDevice>, bool), Refusal> {
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
    ) -> Result<(Arc<SharedDevice>, bool), E> {
        let mut map = self.map();
        if let Some(device) = map.get(id) {
            // Heard from now, under the map's lock: an expiry pass cannot forget the device between
            // this and the connection attaching to it.
            device.lock().touch(self.clock_ms());
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
    fn new_device(&self, id: &str, known: Option<&Known>) -> SharedDevice {
        let profile = match known {
            Some(k) => Profile {
                id: id.to_owned(),
                name: k.config.name.clone(),
                zone: k.zone.clone(),
                period: k.config.keepalive,
                channels: k
                    .config
                    .channels
                    .iter()
                    .filter_map(|(c, name)| Some((c.parse().ok()?, name.clone())))
                    .collect(),
                configured: true,
            },
            None => Profile::unconfigured(id, self.default_zone.clone()),
        };
        SharedDevice {
            id: id.to_owned(),
            core: Mutex::new(Device::new(profile, self.clock_ms())),
            order: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Registers a device found in the store at startup: it gets a whole period plus grace to reconnect.
    /// `silent_ms` is how long ago its last frame came, milliseconds: it counts towards its expiry.
    pub(crate) fn restore(&self, id: &str, online: bool, period: Option<u32>, silent_ms: u64) {
        let Ok((device, _)) = self.entry(id, || Ok::<(), Infallible>(()));
        let mut core = device.lock();
        core.restore(online, period, silent_ms);
        self.schedule(&device, &mut core);
    }

    /// Records that ingest is held up now: connections wait for room in the store queue instead of
    /// reading their sockets, so silence is measured from the end of the stall, not from frames that
    /// nobody read.
    pub(crate) fn note_stall(&self) {
        self.stalled_at.store(self.clock_ms(), Ordering::Relaxed);
    }

    /// When ingest was last held up (registry clock ms; 0 = never).
    pub(crate) fn stalled_at(&self) -> u64 {
        self.stalled_at.load(Ordering::Relaxed)
    }

    /// Schedules `device`'s next deadline when a change made it earlier (`core` is its state, locked
    /// by the caller: every change of a device's deadline is followed by this call).
    pub(crate) fn schedule(&self, device: &SharedDevice, core: &mut Device) {
        if let Some(at) = core.reschedule(&self.policy, self.stalled_at()) {
            self.timers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .schedule(device.id.clone(), at);
        }
    }

    /// Remembers that `device` owes the store its `last_seen` (asked once per flush by the device core).
    pub(crate) fn owe_last_seen(&self, device: &SharedDevice) {
        self.last_seen_owed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(device.id.clone());
    }

    /// The `last_seen` updates owed since the last flush: one row update per device heard from, however
    /// many frames it sent.
    pub(crate) fn flush_last_seen(&self) -> Vec<alarm_center_store::DeviceUpdate> {
        let owed = std::mem::take(
            &mut *self
                .last_seen_owed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let map = self.map();
        let devices: Vec<Arc<SharedDevice>> =
            owed.iter().filter_map(|id| map.get(id).cloned()).collect();
        drop(map);
        devices
            .iter()
            .filter_map(|d| d.lock().take_last_seen())
            .collect()
    }

    /// The devices whose deadline has come (silent past their period, or an alarm past its
    /// `[auto-clear]` limit): supervision handles them and schedules their next deadline.
    pub(crate) fn due(&self) -> Vec<Arc<SharedDevice>> {
        let ids = self
            .timers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_due(self.clock_ms());
        let map = self.map();
        // A device forgotten since its deadline was scheduled is simply not there.
        ids.iter().filter_map(|id| map.get(id).cloned()).collect()
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
            let expired = device.lock().expired(now, after_ms);
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

    /// When device `id` last sent a frame (unix ms), if it is known and was heard since the start.
    pub(crate) fn last_seen_ms(&self, id: &str) -> Option<i64> {
        let device = self.map().get(id).cloned()?;
        let at = device.lock().last_seen_ms();
        (at > 0).then_some(at)
    }

    /// Number of devices online.
    pub(crate) fn online_count(&self) -> usize {
        self.map().values().filter(|d| d.lock().is_online()).count()
    }
}
