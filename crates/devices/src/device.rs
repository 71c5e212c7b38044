//! One device's state and every decision about it, sans-IO like quinn-proto's `Connection`: a frame
//! comes in through [`Device::on_frame`], time passes through [`Device::poll_timeout`] and
//! [`Device::handle_timeout`], connections come and go through [`Device::attach`] and
//! [`Device::detach`]. Each returns the [`Effects`] the caller carries out — records for the store, and
//! what to log and count. Times are explicit ([`Now`]), so every rule is a unit test with exact times.

use std::net::IpAddr;
use std::time::Duration;

use alarm_center_proto::{Action, Decoded, DeviceInfo, Event, Frame, Kind, Session};
use alarm_center_store::{DeviceState, DeviceUpdate, EventAction, EventKind, FrameRef, NewEvent};

use crate::{zoned_device_time, ActiveAlarms, Presence, Supervision};

mod timers;
mod types;

pub use timers::device_event;
pub use types::{Attached, Effects, Heard, Now, Policy, Profile};

/// One device's live state.
#[derive(Debug)]
pub struct Device {
    profile: Profile,
    /// Last frame received (monotonic ms).
    last_seen_ms: u64,
    /// How long it had been silent when the server started, ms (restored; 0 once heard from).
    silent_before_ms: u64,
    /// When its last frame came, Unix ms (what the store's `last_seen` says once flushed).
    last_seen_wall_ms: i64,
    /// `last_seen_wall_ms` is newer than what the store has: the next flush writes it
    /// ([`Device::take_last_seen`]).
    last_seen_pending: bool,
    /// The link last written to the store: peer and protocol.
    reported_link: Option<(std::net::SocketAddr, &'static str)>,
    presence: Presence,
    /// Known to the store (a row exists).
    persisted: bool,
    /// Protocol state (0x69 masks) carried across reconnections.
    session: Session,
    /// Keep-alive period the device announced, seconds.
    announced_period: Option<u32>,
    /// It sent a keepAlive: only then does silence mean offline (XM cameras open a connection per
    /// alarm and send nothing in between).
    sends_keepalives: bool,
    active: ActiveAlarms,
    /// Open connections attached to it: (connection id, source address).
    connections: Vec<(i64, IpAddr)>,
    /// The identity fields last written to the store.
    reported: DeviceInfo,
    /// How many times it went offline: connections with their own protocol state (devices known by
    /// address only) start it afresh when this changes.
    generation: u64,
    /// The deadline last handed to the caller's timers ([`Device::reschedule`]), monotonic ms.
    scheduled_ms: Option<u64>,
}

impl Device {
    /// A device first heard of at `mono_ms`.
    pub fn new(profile: Profile, mono_ms: u64) -> Device {
        Device {
            profile,
            last_seen_ms: mono_ms,
            silent_before_ms: 0,
            last_seen_wall_ms: 0,
            last_seen_pending: false,
            reported_link: None,
            presence: Presence::default(),
            persisted: false,
            session: Session::new(),
            announced_period: None,
            sends_keepalives: false,
            active: ActiveAlarms::default(),
            connections: Vec::new(),
            reported: DeviceInfo::default(),
            generation: 0,
            scheduled_ms: None,
        }
    }

    /// The state found in the store at start: it gets a whole period plus grace to reconnect;
    /// `silent_ms` (how long ago its last frame came) counts towards its expiry.
    pub fn restore(&mut self, online: bool, period: Option<u32>, silent_ms: u64) {
        self.silent_before_ms = silent_ms;
        self.persisted = true;
        self.presence = Presence::restored(online);
        self.announced_period = period;
        // Supervised before the restart if it announced a period; otherwise its next keepAlive
        // turns supervision on again.
        self.sends_keepalives = period.is_some();
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.profile.id
    }

    /// What is configured about it.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Online now.
    pub fn is_online(&self) -> bool {
        self.presence.is_online()
    }

    /// How many times it went offline (see [`Device::decode`] for the connections that care).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Alarms active now.
    pub fn active_alarms(&self) -> usize {
        self.active.len()
    }

    /// Decodes `frame` with the device's own protocol state (devices named by what they send keep one
    /// across their connections, so alarms still active are not reported again after a reconnection).
    pub fn decode(&mut self, frame: &Frame) -> Decoded {
        self.session.decode(frame)
    }

    /// Adopts the protocol state a new device's first connection built before it was identified.
    pub fn adopt_session(&mut self, session: Session) {
        self.session = session;
    }

    /// Something was heard from it at `mono_ms` (also before its frame is processed: the registry
    /// must not forget it in between).
    pub fn touch(&mut self, mono_ms: u64) {
        self.last_seen_ms = self.last_seen_ms.max(mono_ms);
        self.silent_before_ms = 0;
    }

    /// The period after which silence means offline (without grace).
    pub fn period(&self, policy: &Policy) -> Duration {
        self.announced_period
            .map(|s| Duration::from_secs(u64::from(s)))
            .or(self.profile.period)
            .unwrap_or(policy.default_period)
    }

    fn supervision(&self, policy: &Policy, stalled_at_ms: u64) -> Supervision {
        Supervision {
            online: self.presence.is_online(),
            supervised: self.sends_keepalives || self.profile.period.is_some(),
            last_seen_ms: self.last_seen_ms,
            stalled_at_ms,
            period: self.period(policy),
            grace: policy.grace,
        }
    }

    /// Whether it is to be forgotten at `mono_ms`: not configured, no connection open, silent for
    /// `after_ms` (silence before the start included).
    pub fn expired(&self, mono_ms: u64, after_ms: u64) -> bool {
        let silence = mono_ms
            .saturating_sub(self.last_seen_ms)
            .saturating_add(self.silent_before_ms);
        !self.profile.configured && silence >= after_ms && self.connections.is_empty()
    }

    /// Connection `connection` from `ip` attaches to it at `now` (a first frame, or a stronger
    /// identity). A second connection never pushes the first off (decision D27): all are served.
    pub fn attach(&mut self, connection: i64, ip: IpAddr, now: Now) -> Attached {
        let conflicting = self
            .connections
            .iter()
            .filter(|(id, from)| *id != connection && *from != ip)
            .count();
        if !self.connections.iter().any(|(id, _)| *id == connection) {
            self.connections.push((connection, ip));
        }
        let first_contact = (!self.persisted).then(|| {
            self.persisted = true;
            DeviceUpdate {
                id: self.profile.id.clone(),
                name: self.profile.name.clone(),
                state: Some((DeviceState::Offline, now.wall_ms)),
                last_seen: now.wall_ms,
                first_frame: FrameRef::Carrier,
                ..DeviceUpdate::default()
            }
        });
        Attached {
            conflicting,
            first_contact,
        }
    }

    /// Connection `connection` closed.
    pub fn detach(&mut self, connection: i64) {
        self.connections.retain(|(id, _)| *id != connection);
    }

    /// Connection `connection` turned out to be device `by`: it leaves this device, which goes offline
    /// if no other connection is left. Returns the alarms still active when it was alone — a new
    /// device `by` inherits them (this provisional, address-named device was it all along).
    pub fn identified_as(
        &mut self,
        connection: i64,
        by: &str,
        now: Now,
    ) -> (Option<ActiveAlarms>, Effects) {
        self.detach(connection);
        let mut effects = Effects::default();
        if !self.connections.is_empty() {
            return (None, effects);
        }
        if let Some(at) = self.presence.lost(now.wall_ms) {
            effects.events.push(device_event(
                &self.profile.id,
                "DeviceOffline",
                at,
                serde_json::json!({"reason": "identified as another device", "device": by}),
            ));
            effects.devices.push(DeviceUpdate {
                id: self.profile.id.clone(),
                state: Some((DeviceState::Offline, at)),
                last_seen: now.wall_ms,
                ..DeviceUpdate::default()
            });
        }
        (Some(std::mem::take(&mut self.active)), effects)
    }

    /// Takes the alarms a provisional identity of this device tracked (see [`Device::identified_as`]).
    pub fn inherit(&mut self, active: ActiveAlarms) {
        self.active = active;
    }

    /// A frame of the device at `now`: online transition, supervision, alarm tracking, its events and
    /// its row when something in it changed (else only `last_seen`, flushed later). `row_due` forces
    /// the row out (another record of this frame writes it anyway).
    pub fn on_frame(&mut self, now: Now, heard: Heard<'_>, row_due: bool) -> Effects {
        self.touch(now.mono_ms);
        let decoded = heard.decoded;
        let mut effects = Effects::default();
        // Identity fields go to the store when they say something new (most frames repeat them).
        let identity_news = !decoded.device.is_empty() && self.reported != decoded.device;
        if identity_news {
            self.reported = decoded.device.clone();
        }
        // Stamped after the state it ends, even if this frame was read before it was decided.
        let online_at = self.presence.heard(now.wall_ms);
        if let Some(at) = online_at {
            effects.events.push(device_event(
                &self.profile.id,
                "DeviceOnline",
                at,
                serde_json::json!({"peer": heard.peer_text, "connection": heard.connection}),
            ));
        }
        if decoded.kind == Kind::Keepalive && !self.sends_keepalives {
            self.sends_keepalives = true;
            effects.supervised = true;
        }
        let new_period = decoded
            .keepalive_period
            .filter(|period| self.announced_period != Some(*period));
        if new_period.is_some() {
            self.announced_period = new_period;
        }
        self.track_events(decoded, now, &mut effects);
        self.last_seen_wall_ms = self.last_seen_wall_ms.max(now.wall_ms);
        // A new peer or protocol is news too (a reconnection, another framing).
        let link = (heard.peer, heard.protocol.as_str());
        let link_news = self.reported_link != Some(link);
        self.reported_link = Some(link);
        let news = identity_news || online_at.is_some() || new_period.is_some() || link_news;
        if news || row_due {
            effects
                .devices
                .push(self.row(heard, now, online_at, new_period));
        } else if !self.last_seen_pending {
            // Only `last_seen` changed (a keepAlive, most frames): it reaches the store with the
            // caller's next periodic flush, not with a row write per frame.
            self.last_seen_pending = true;
            effects.last_seen_pending = true;
        }
        effects
    }

    /// The events a frame carries, with the alarms they start and stop tracked.
    fn track_events(&mut self, decoded: &Decoded, now: Now, effects: &mut Effects) {
        for event in &decoded.events {
            // Log records (XM "Type": "Log") are no alarms: they never become active.
            if decoded.kind != Kind::Log && !self.track(event, now.mono_ms) {
                // Stored all the same; only its synthetic stop (offline, auto-clear) is lost.
                effects.untracked_starts += 1;
            }
            effects
                .events
                .push(self.event(event, decoded.kind, now.wall_ms));
        }
    }

    /// The device's row after a frame with news: what the frame says of it, its link, `last_seen`, and
    /// its new state or period when it has one.
    fn row(
        &self,
        heard: Heard<'_>,
        now: Now,
        online_at: Option<i64>,
        period: Option<u32>,
    ) -> DeviceUpdate {
        let reported = &heard.decoded.device;
        DeviceUpdate {
            id: self.profile.id.clone(),
            name: self.profile.name.clone(),
            serial: reported.serial.clone(),
            mac: reported.mac.clone(),
            domain: reported.domain.clone(),
            ip: reported.ip.clone(),
            peer: Some(heard.peer_text.to_owned()),
            protocol: Some(heard.protocol.as_str().to_owned()),
            state: online_at.map(|at| (DeviceState::Online, at)),
            last_seen: now.wall_ms,
            keepalive_period: period,
            ..DeviceUpdate::default()
        }
    }

    /// When the device last sent a frame (unix ms), as it is now: the store's copy lags by up to
    /// `supervision.last-seen-flush`.
    pub fn last_seen_ms(&self) -> i64 {
        self.last_seen_wall_ms
    }

    /// The `last_seen` update owed to the store since the last flush (see [`Effects::last_seen_pending`]).
    pub fn take_last_seen(&mut self) -> Option<DeviceUpdate> {
        if !std::mem::take(&mut self.last_seen_pending) {
            return None;
        }
        Some(DeviceUpdate {
            id: self.profile.id.clone(),
            last_seen: self.last_seen_wall_ms,
            ..DeviceUpdate::default()
        })
    }

    /// Tracks an alarm that started or stopped at `mono_ms`; `false` for a start not tracked.
    fn track(&mut self, event: &Event, mono_ms: u64) -> bool {
        let key = (event.code.to_string(), event.index);
        match event.action {
            Action::Start => self.active.start(key, mono_ms),
            Action::Stop => {
                self.active.stop(&key);
                true
            }
            _ => true,
        }
    }

    /// The stored form of `event`, a `kind` frame's, received at `wall_ms`.
    fn event(&self, event: &Event, kind: Kind, wall_ms: i64) -> NewEvent {
        NewEvent {
            frame: FrameRef::Carrier,
            device: self.profile.id.clone(),
            code: event.code.to_string(),
            action: EventAction::parse(event.action.as_str()),
            index: event.index,
            channel: event.channel(),
            channel_name: event.channel().and_then(|c| self.channel_name(c)),
            kind: EventKind::parse(kind.as_str()),
            device_time: event
                .device_time
                .as_deref()
                .map(|t| zoned_device_time(t, &self.profile.zone)),
            received_at: wall_ms,
            data: event.data.as_ref().map(|d| d.as_str().to_owned()),
            synthetic: None,
        }
    }

    /// The configured name of 1-based `channel`.
    pub fn channel_name(&self, channel: i64) -> Option<String> {
        self.profile.channels.get(&channel).cloned()
    }
}

#[cfg(test)]
mod tests;
