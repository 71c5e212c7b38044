//! Which device a frame belongs to, and what it means for that device (the device core's effects).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use alarm_center_devices::{Heard, Identity, Now, Refusal};
use alarm_center_proto::{Decoded, Frame, Protocol, Session};
use alarm_center_store::{ConnectionIdentified, DeviceUpdate, NewEvent};

use super::process::hex_head;
use super::Connection;
use crate::close_reason::CloseReason;
use crate::registry::SharedDevice;
use crate::stats::Stats;

impl Connection {
    /// Attaches the connection to the device the frame identifies (first frame, or a stronger identity).
    /// Returns the connection-history update to write when the device changed.
    pub(super) fn attribute(
        &mut self,
        frame: &Frame,
        decoded: &mut Decoded,
        received_ms: i64,
        devices: &mut Vec<DeviceUpdate>,
        events: &mut Vec<NewEvent>,
    ) -> Option<ConnectionIdentified> {
        let (identity, device, created) = self.admit(frame, decoded)?;
        let now = Now {
            mono_ms: self.shared.registry.clock_ms(),
            wall_ms: received_ms,
        };
        let mut core = device.lock();
        if identity.strong {
            // A device named by what it sends keeps one protocol state (0x69 masks) across its
            // connections. Connections known only by their address keep their own: several devices
            // behind one NAT address must not mix their masks.
            if created {
                core.adopt_session(std::mem::take(&mut self.private));
            } else if self.device.is_none() && !Session::is_stateless(frame) {
                // Reconnection: decode again with the device's own state so that alarms still
                // active are not reported as new. A frame no state changes (an XM alarm, a camera
                // that connects for each one) is decoded already.
                *decoded = core.decode(frame);
            }
        }
        self.generation = core.generation();
        let attached = core.attach(self.id, self.peer.ip(), now);
        if identity.strong && attached.conflicting > 0 {
            Stats::inc(&self.shared.stats.identity_conflicts);
            tracing::warn!(device = %device.id, conn = self.id, peer = %self.peer_text, other_connections = attached.conflicting, "identity conflict: connections from other addresses claim the same device; all are kept");
        }
        if let Some(row) = attached.first_contact {
            tracing::info!(
                device = %device.id, conn = self.id, peer = %self.peer_text, protocol = frame.protocol.as_str(),
                kind = decoded.kind.as_str(), serial = ?decoded.device.serial.as_deref().unwrap_or("-"),
                mac = ?decoded.device.mac.as_deref().unwrap_or("-"), domain = ?decoded.device.domain.as_deref().unwrap_or("-"),
                first_bytes = %hex_head(&frame.bytes),
                "first contact of a new device"
            );
            devices.push(row);
        }
        if let Some(previous) = self.device.replace(device.clone()) {
            tracing::info!(conn = self.id, device = %device.id, was = %previous.id, "connection identified its device");
            let (alarms, effects) = previous.lock().identified_as(self.id, &device.id, now);
            if let Some(alarms) = alarms.filter(|_| created) {
                // The provisional (address) identity was this device all along: its alarms move with it.
                core.inherit(alarms);
            }
            events.extend(effects.events);
            devices.extend(effects.devices);
        }
        self.strong = identity.strong;
        self.shared.registry.schedule(&device, &mut core);
        drop(core);
        let (frames, bytes) = self.live.counters.get();
        Some(ConnectionIdentified {
            id: self.id,
            device: device.id.clone(),
            frames,
            bytes,
        })
    }

    /// The device a frame attaches the connection to, if it switches device (first frame, or a
    /// stronger identity) and may: unknown devices refused, new-device limits. `true` when the device
    /// was created by this call.
    fn admit(
        &mut self,
        frame: &Frame,
        decoded: &Decoded,
    ) -> Option<(Identity, Arc<SharedDevice>, bool)> {
        if self.device.is_some() && self.strong {
            // Named by what it sent: nothing stronger can come (and the usual frame costs no lookup).
            return None;
        }
        let registry = &self.shared.registry;
        let identity = registry.resolve(
            &decoded.device,
            self.peer.ip(),
            frame.protocol == Protocol::Http,
        );
        let switch = match &self.device {
            // Garbage is no evidence of a device (port scanners, HTTP probes): it attaches nothing.
            None => frame.protocol != Protocol::Junk,
            Some(current) => identity.strong && !self.strong && identity.id != current.id,
        };
        if !switch {
            return None;
        }
        if !identity.configured && !registry.allow_unknown() {
            // A frame naming a device that is not configured: refuse at once. Frames without identity
            // get until the frame timeout to be followed by one that identifies a configured device.
            if identity.strong && self.device.is_none() {
                tracing::warn!(conn = self.id, peer = %self.peer_text, device = %identity.id, "unknown device refused");
                self.refused = true;
            }
            return None;
        }
        match registry.admit(&identity.id, self.peer.ip()) {
            Ok((device, created)) => Some((identity, device, created)),
            Err(refusal) => {
                self.limit_new_device(&identity.id, refusal);
                None
            }
        }
    }

    /// A frame would have created device `id` past a new-device limit: nothing is created, the
    /// connection closes (the device retries later), the refusal is counted and, once a minute per
    /// address, logged.
    fn limit_new_device(&mut self, id: &str, refusal: Refusal) {
        Stats::inc(&self.shared.stats.new_devices_refused);
        if refusal.log {
            tracing::warn!(conn = self.id, peer = %self.peer_text, device = %id, limit = %refusal.limit, "new device refused: connection closed, frame kept without device (logged once a minute per address)");
        }
        self.limited = Some(CloseReason::NewDeviceLimit(refusal.limit.to_string()));
    }

    /// Online transition, alarm tracking, events and the device row for a frame of `device`
    /// (decided by the device core; logged and counted here).
    pub(super) fn on_device_frame(
        &mut self,
        device: &SharedDevice,
        protocol: Protocol,
        decoded: &Decoded,
        received_ms: i64,
        devices: &mut Vec<DeviceUpdate>,
        events: &mut Vec<NewEvent>,
    ) {
        let now = Now {
            mono_ms: self.shared.registry.clock_ms(),
            wall_ms: received_ms,
        };
        let heard = Heard {
            connection: self.id,
            peer: self.peer,
            peer_text: &self.peer_text,
            protocol,
            decoded,
        };
        // A row of this device is written with the frame anyway (first contact): bring it up to date.
        let row_due = devices.iter().any(|d| d.id == device.id);
        let effects = {
            let mut core = device.lock();
            let effects = core.on_frame(now, heard, row_due);
            self.shared.registry.schedule(device, &mut core);
            effects
        };
        if effects.last_seen_pending {
            self.shared.registry.owe_last_seen(device);
        }
        if effects.supervised {
            tracing::debug!(device = %device.id, "keepAlives seen: supervised");
        }
        if effects.untracked_starts > 0 {
            let before = self
                .shared
                .stats
                .active_alarms_untracked
                .fetch_add(effects.untracked_starts as u64, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(device = %device.id, limit = alarm_center_devices::MAX_ACTIVE, "too many active alarms on one device: further starts are stored but not tracked for synthetic stops (logged once; counted in active_alarms_untracked_total)");
            }
        }
        events.extend(effects.events);
        devices.extend(effects.devices);
    }
}
