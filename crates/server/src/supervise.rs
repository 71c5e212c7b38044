//! Supervision: a device that sends nothing for its keep-alive period plus the grace goes offline; a
//! never-configured device that sends nothing for `server.device-expiry` is forgotten.

use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::{
    DeviceRemoval, DeviceState, DeviceUpdate, EventAction, EventKind, FrameRef, NewEvent, Synthetic,
};
use tokio::time::Instant;

use crate::stats::Stats;
use crate::writer::Record;
use crate::{device_event, Shared};

/// How often silence is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often expiry is checked: a pass looks at every device, so at most once a minute.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);

/// The time between two expiry passes for `server.device-expiry` = `expiry`: a minute, or a
/// quarter of a shorter expiry (but at least [`CHECK_EVERY`]).
fn expiry_interval(expiry: Duration) -> Duration {
    (expiry / 4).clamp(CHECK_EVERY, EXPIRY_EVERY)
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sup = &shared.config.supervision;
    let expiry = shared.config.server.device_expiry;
    let mut next_expiry = Instant::now();
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if shared.tx.capacity() == 0 || shared.stats.store_failure().is_some() {
            // Ingest is held up: frames wait unread in sockets; they are no silence.
            shared.registry.note_stall();
        }
        if !shared.config.auto_clear.is_empty() && auto_clear(&shared).await.is_err() {
            return;
        }
        if !expiry.is_zero() && Instant::now() >= next_expiry {
            next_expiry = Instant::now() + expiry_interval(expiry);
            if expire(&shared, expiry).await.is_err() {
                return;
            }
        }
        for device in shared.registry.overdue(sup.keepalive, sup.grace) {
            // Decided and queued in turn with the device's frames (see `Device::order`).
            let _order = device.order.clone().lock_owned().await;
            if !shared
                .registry
                .still_overdue(&device, sup.keepalive, sup.grace)
            {
                continue;
            }
            let mut events = Vec::new();
            let now_ms;
            {
                let mut state = device.lock();
                // Stamped after the state it ends.
                let Some(at) = state.presence.lost(crate::time::now_ms()) else {
                    continue;
                };
                now_ms = at;
                let period = device.period(&state, sup.keepalive);
                tracing::warn!(device = %device.id, period = ?period, grace = ?sup.grace, active_alarms = state.active.len(), "device offline: nothing received");
                events.push(device_event(
                    &device.id,
                    "DeviceOffline",
                    now_ms,
                    serde_json::json!({"reason": "silent", "period_s": period.as_secs(), "grace_s": sup.grace.as_secs()}),
                ));
                if sup.stop_alarms_on_offline {
                    for (code, index) in state.active.take_all() {
                        events.push(NewEvent {
                            frame: FrameRef::None,
                            device: device.id.clone(),
                            code,
                            action: EventAction::Stop,
                            index,
                            channel: index.filter(|i| *i >= 0).and_then(|i| i.checked_add(1)),
                            channel_name: index
                                .and_then(|i| device.channel_name(i.checked_add(1)?)),
                            kind: EventKind::Alarm,
                            device_time: None,
                            received_at: now_ms,
                            data: None,
                            synthetic: Some(Synthetic::Offline),
                        });
                    }
                    // The device's next mask snapshot must report what is still active as new.
                    state.session = alarm_center_proto::Session::new();
                    state.generation += 1;
                }
            }
            Stats::inc(&shared.stats.offline_transitions);
            let update = DeviceUpdate {
                id: device.id.clone(),
                state: Some((DeviceState::Offline, now_ms)),
                last_seen: 0,
                ..DeviceUpdate::default()
            };
            if shared
                .tx
                .send(Record::Events {
                    events,
                    devices: vec![update],
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// `server.device-expiry`: forgets the never-configured devices silent for `after` (and with no
/// connection open) and deletes their rows; their events and frames stay.
async fn expire(shared: &Shared, after: Duration) -> Result<(), ()> {
    let gone = shared.registry.expire(after);
    if gone.is_empty() {
        return Ok(());
    }
    shared
        .stats
        .devices_expired
        .fetch_add(gone.len() as u64, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        devices = gone.len(),
        sample = ?&gone[..gone.len().min(5)],
        expiry = ?after,
        "devices expired: never configured and silent for server.device-expiry; their rows are deleted, their events and frames stay"
    );
    // A row written after this pass (the device came back and was created anew) has a later
    // `last_seen` and stays; the expired ones were last seen a whole expiry ago or earlier.
    let half_ms = i64::try_from(after.as_millis() / 2).unwrap_or(i64::MAX);
    let silent_since = crate::time::now_ms().saturating_sub(half_ms);
    let removals = gone
        .into_iter()
        .map(|id| DeviceRemoval { id, silent_since })
        .collect();
    shared
        .tx
        .send(Record::Forget(removals))
        .await
        .map_err(|_| ())
}

/// `[auto-clear]`: a synthetic stop for every alarm started longer ago than its code's limit.
async fn auto_clear(shared: &Shared) -> Result<(), ()> {
    let limits = &shared.config.auto_clear;
    let limit = |code: &str| limits.get(code).or_else(|| limits.get("*")).copied();
    let clock_ms = shared.registry.clock_ms();
    for device in shared.registry.all() {
        let now_ms = crate::time::now_ms();
        let events: Vec<NewEvent> = {
            let mut state = device.lock();
            state
                .active
                .take_outlived(clock_ms, limit)
                .into_iter()
                .map(|(code, index)| {
                    let channel = index.filter(|i| *i >= 0).and_then(|i| i.checked_add(1));
                    NewEvent {
                        frame: FrameRef::None,
                        device: device.id.clone(),
                        channel_name: channel.and_then(|c| device.channel_name(c)),
                        code,
                        action: EventAction::Stop,
                        index,
                        channel,
                        kind: EventKind::Alarm,
                        device_time: None,
                        received_at: now_ms,
                        data: None,
                        synthetic: Some(Synthetic::AutoClear),
                    }
                })
                .collect()
        };
        if events.is_empty() {
            continue;
        }
        tracing::info!(device = %device.id, alarms = events.len(), "auto-clear: no stop came in time");
        shared
            .tx
            .send(Record::Events {
                events,
                devices: Vec::new(),
            })
            .await
            .map_err(|_| ())?;
    }
    Ok(())
}
