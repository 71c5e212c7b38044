//! The device's timers: offline after silence, `[auto-clear]`, and the records they make.

use std::time::Duration;

use alarm_center_proto::Session;
use alarm_center_store::{
    DeviceState, DeviceUpdate, EventAction, EventKind, FrameRef, NewEvent, Synthetic,
};

use super::{Device, Effects, Now, Policy};

impl Device {
    /// When [`Device::handle_timeout`] has something to do (monotonic ms): the device due offline, or
    /// an alarm due for auto-clear. `stalled_at_ms`: when ingest was last held up (0 = never).
    pub fn poll_timeout(&self, policy: &Policy, stalled_at_ms: u64) -> Option<u64> {
        // Offline strictly after the deadline.
        let offline = self
            .supervision(policy, stalled_at_ms)
            .deadline_ms()
            .map(|d| d.saturating_add(1));
        // Asked after every frame (`reschedule`): without `[auto-clear]` (the default) the active alarms
        // are not looked at.
        let clear = (!policy.auto_clear.is_empty())
            .then(|| {
                self.active
                    .next_outlived(|code| policy.auto_clear_limit(code))
            })
            .flatten();
        offline.into_iter().chain(clear).min()
    }

    /// The deadline to schedule after a change, when it is earlier than the one scheduled already (a
    /// deadline that moved later needs nothing: the earlier one fires, finds nothing to do, and
    /// [`Device::timer_fired`] then lets the new one be scheduled).
    pub fn reschedule(&mut self, policy: &Policy, stalled_at_ms: u64) -> Option<u64> {
        let next = self.poll_timeout(policy, stalled_at_ms)?;
        if self.scheduled_ms.is_some_and(|at| at <= next) {
            return None;
        }
        self.scheduled_ms = Some(next);
        Some(next)
    }

    /// The scheduled deadline fired (and was handled): the next one is to be scheduled afresh.
    pub fn timer_fired(&mut self) {
        self.scheduled_ms = None;
    }

    /// Time has come to `now`: the device goes offline if silent too long (with synthetic stops for its
    /// active alarms, when the policy says so), alarms past their `[auto-clear]` limit stop.
    pub fn handle_timeout(&mut self, now: Now, policy: &Policy, stalled_at_ms: u64) -> Effects {
        let mut effects = Effects::default();
        let supervision = self.supervision(policy, stalled_at_ms);
        if supervision.overdue(now.mono_ms) {
            self.go_offline(now, policy, supervision.period, &mut effects);
        }
        let cleared = self
            .active
            .take_outlived(now.mono_ms, |code| policy.auto_clear_limit(code));
        effects.auto_cleared = cleared.len();
        for key in cleared {
            let stop = self.synthetic_stop(key, now.wall_ms, Synthetic::AutoClear);
            effects.events.push(stop);
        }
        effects
    }

    fn go_offline(&mut self, now: Now, policy: &Policy, period: Duration, effects: &mut Effects) {
        // Stamped after the state it ends.
        let Some(at) = self.presence.lost(now.wall_ms) else {
            return;
        };
        effects.offline = Some((period, self.active.len()));
        effects.events.push(device_event(
            &self.profile.id,
            "DeviceOffline",
            at,
            serde_json::json!({"reason": "silent", "period_s": period.as_secs(), "grace_s": policy.grace.as_secs()}),
        ));
        if policy.stop_alarms_on_offline {
            for key in self.active.take_all() {
                let stop = self.synthetic_stop(key, at, Synthetic::Offline);
                effects.events.push(stop);
            }
            // The device's next mask snapshot must report what is still active as new.
            self.session = Session::new();
            self.generation += 1;
        }
        effects.devices.push(DeviceUpdate {
            id: self.profile.id.clone(),
            state: Some((DeviceState::Offline, at)),
            last_seen: 0,
            ..DeviceUpdate::default()
        });
    }

    fn synthetic_stop(
        &self,
        (code, index): (String, Option<i64>),
        at: i64,
        why: Synthetic,
    ) -> NewEvent {
        let channel = index.filter(|i| *i >= 0).and_then(|i| i.checked_add(1));
        NewEvent {
            frame: FrameRef::None,
            device: self.profile.id.clone(),
            channel_name: channel.and_then(|c| self.channel_name(c)),
            code,
            action: EventAction::Stop,
            index,
            channel,
            kind: EventKind::Alarm,
            device_time: None,
            received_at: at,
            data: None,
            synthetic: Some(why),
        }
    }
}

/// An event the server makes about a device (online, offline), not carried by a frame.
pub fn device_event(device: &str, code: &str, at_ms: i64, data: serde_json::Value) -> NewEvent {
    NewEvent {
        frame: FrameRef::None,
        device: device.to_owned(),
        code: code.to_owned(),
        action: EventAction::Pulse,
        index: None,
        channel: None,
        channel_name: None,
        kind: EventKind::Device,
        device_time: None,
        received_at: at_ms,
        data: Some(data.to_string()),
        synthetic: None,
    }
}
