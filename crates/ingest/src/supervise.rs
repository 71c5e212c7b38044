//! Supervision drives the device core's timers: once a second, the devices whose deadline has come
//! (`Device::poll_timeout`, kept in one sorted structure by the registry) are handled (`Device::handle_timeout`: offline after its keep-alive period plus
//! the grace, `[auto-clear]`), and never-configured devices silent for `server.device-expiry` are
//! forgotten.

use std::sync::Arc;
use std::time::Duration;

use alarm_center_devices::Now;
use alarm_center_store::DeviceRemoval;
use tokio::time::Instant;

use crate::registry::SharedDevice;
use crate::stats::Stats;
use crate::writer::Record;
use crate::Shared;

/// How often silence is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often expiry is checked: a pass looks at every device, so at most once a minute.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);

/// The time between two expiry passes for `server.device-expiry` = `expiry`: a minute, or a
/// quarter of a shorter expiry (but at least [`CHECK_EVERY`]).
fn expiry_interval(expiry: Duration) -> Duration {
    (expiry / 4).clamp(CHECK_EVERY, EXPIRY_EVERY)
}

/// The flush after one due at `due` and checked at `now`: counted from the due time, not from the
/// check (checked once a second, a flush counted from the check slipped by up to a second each time:
/// a 5-s interval came every 5 or 6 s); never in the past after a stall.
fn next_due(due: Instant, every: Duration, now: Instant) -> Instant {
    (due + every).max(now)
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let expiry = shared.config.server.device_expiry;
    let mut next_expiry = Instant::now();
    // The `last_seen` of the devices heard from goes to the store in one record every `flush` (the
    // store's copy lags this much; the device core tracks it always).
    let flush = shared.config.supervision.last_seen_flush;
    let mut next_flush = Instant::now() + flush;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => {
                // The connections drain their last frames as they stop; what they owe is flushed by
                // `Ingest::finish`.
                return;
            }
            _ = tick.tick() => {}
        }
        if shared.tx.capacity() == 0 || shared.stats.store_failure().is_some() {
            // Ingest is held up: frames wait unread in sockets; they are no silence.
            shared.registry.note_stall();
        }
        if !expiry.is_zero() && Instant::now() >= next_expiry {
            next_expiry = Instant::now() + expiry_interval(expiry);
            if expire(&shared, expiry).await.is_err() {
                return;
            }
        }
        if Instant::now() >= next_flush {
            next_flush = next_due(next_flush, flush, Instant::now());
            if flush_last_seen(&shared).await.is_err() {
                return;
            }
        }
        for device in shared.registry.due() {
            if handle_timeout(&shared, &device).await.is_err() {
                return;
            }
        }
    }
}

/// Carries out what is due for `device` now (offline, auto-clear): decided and queued in turn with its
/// frames (see `SharedDevice::order`). `Err` when the store writer is gone.
async fn handle_timeout(shared: &Shared, device: &SharedDevice) -> Result<(), ()> {
    let _order = device.order.clone().lock_owned().await;
    let registry = &shared.registry;
    let now = Now {
        mono_ms: registry.clock_ms(),
        wall_ms: crate::time::now_ms(),
    };
    // Decided under the order lock: a frame may have come since the deadline was scheduled (then
    // nothing is due and the next deadline is scheduled).
    let effects = {
        let mut core = device.lock();
        let effects = core.handle_timeout(now, registry.policy(), registry.stalled_at());
        core.timer_fired();
        registry.schedule(device, &mut core);
        effects
    };
    if let Some((period, active_alarms)) = effects.offline {
        let grace = registry.policy().grace;
        tracing::warn!(device = %device.id, period = ?period, grace = ?grace, active_alarms, "device offline: nothing received");
        Stats::inc(&shared.stats.offline_transitions);
    }
    if effects.auto_cleared > 0 {
        tracing::info!(device = %device.id, alarms = effects.auto_cleared, "auto-clear: no stop came in time");
    }
    if effects.events.is_empty() && effects.devices.is_empty() {
        return Ok(());
    }
    shared
        .tx
        .send(Record::Events {
            events: effects.events,
            devices: effects.devices,
        })
        .await
        .map_err(|_| ())
}

/// Writes the `last_seen` owed by the devices heard from since the last flush, as one record. Also at
/// shutdown, so the store's `last_seen` is current after a stop.
pub(crate) async fn flush_last_seen(shared: &Shared) -> Result<(), ()> {
    let devices = shared.registry.flush_last_seen();
    if devices.is_empty() {
        return Ok(());
    }
    shared
        .tx
        .send(Record::Events {
            events: Vec::new(),
            devices,
        })
        .await
        .map_err(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_flush_is_counted_from_the_due_time_not_from_the_check() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        // Checked 300 ms late: the next one is still due 5 s after this one was.
        let due = t0 + every;
        assert_eq!(
            next_due(due, every, due + Duration::from_millis(300)),
            t0 + 2 * every
        );
        // After a stall longer than the interval: due now, not in the past.
        let late = due + Duration::from_secs(12);
        assert_eq!(next_due(due, every, late), late);
    }
}
