//! What goes into the device core and what comes out of it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use alarm_center_proto::{Decoded, Protocol};
use alarm_center_store::{DeviceUpdate, NewEvent};
use jiff::tz::TimeZone;

/// A moment on the two clocks the core uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds on the caller's monotonic clock: silence, periods and alarm ages.
    pub mono_ms: u64,
    /// Milliseconds since the Unix epoch: what records and events are stamped with.
    pub wall_ms: i64,
}

/// What is configured about a device (nothing but its id for one not in `[[devices]]`).
#[derive(Debug, Clone)]
pub struct Profile {
    /// Device id.
    pub id: String,
    /// Configured display name.
    pub name: Option<String>,
    /// The zone of the times it reports.
    pub zone: TimeZone,
    /// Configured keep-alive period (silence means offline after it even without keepAlives).
    pub period: Option<Duration>,
    /// Configured channel names by 1-based channel.
    pub channels: HashMap<i64, String>,
    /// Matches a `[[devices]]` entry: it never expires.
    pub configured: bool,
}

impl Profile {
    /// The profile of a device nobody configured.
    pub fn unconfigured(id: &str, zone: TimeZone) -> Profile {
        Profile {
            id: id.to_owned(),
            name: None,
            zone,
            period: None,
            channels: HashMap::new(),
            configured: false,
        }
    }
}

/// The rules of `[supervision]` and `[auto-clear]`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Keep-alive period of a device that announces none and has none configured.
    pub default_period: Duration,
    /// Extra silence allowed after the period.
    pub grace: Duration,
    /// Going offline stops the device's active alarms (synthetic stops).
    pub stop_alarms_on_offline: bool,
    /// Longest an alarm may stay active, by code (`*`: every other code).
    pub auto_clear: BTreeMap<String, Duration>,
}

impl Policy {
    pub(super) fn auto_clear_limit(&self, code: &str) -> Option<Duration> {
        self.auto_clear
            .get(code)
            .or_else(|| self.auto_clear.get("*"))
            .copied()
    }
}

/// A frame of the device, as the core needs it.
#[derive(Debug, Clone, Copy)]
pub struct Heard<'a> {
    /// The connection it came on.
    pub connection: i64,
    /// That connection's peer.
    pub peer: SocketAddr,
    /// The same as text (`addr_text::peer_text`), made once per connection.
    pub peer_text: &'a str,
    /// Its framing.
    pub protocol: Protocol,
    /// What it means.
    pub decoded: &'a Decoded,
}

/// What the caller is to do after a call: write the records, log and count the rest.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Events to store, in order.
    pub events: Vec<NewEvent>,
    /// Device rows to write, in order.
    pub devices: Vec<DeviceUpdate>,
    /// Alarm starts not tracked for synthetic stops: the device has `MAX_ACTIVE` active already.
    pub untracked_starts: usize,
    /// The device went offline (silent): its period then, and how many alarms were active.
    pub offline: Option<(Duration, usize)>,
    /// Alarms stopped by `[auto-clear]`.
    pub auto_cleared: usize,
    /// The device sent its first keepAlive: silence means offline from now on.
    pub supervised: bool,
    /// Only `last_seen` changed and no flush is owed yet: the caller is to take it with
    /// [`Device::take_last_seen`](crate::Device::take_last_seen) at its next periodic flush.
    pub last_seen_pending: bool,
}

/// A connection attached to the device ([`Device::attach`]).
#[derive(Debug, Default, PartialEq)]
pub struct Attached {
    /// Open connections from other addresses that claim the same device (an identity conflict when the
    /// identity is strong).
    pub conflicting: usize,
    /// The device's first contact: its row is created (`first_frame` = this frame).
    pub first_contact: Option<DeviceUpdate>,
}
