//! The device core with exact times: no socket, no sleep.

use super::*;
use std::collections::BTreeMap;

use alarm_center_proto::{encode, Decoder};
use jiff::tz::TimeZone;

const PEER: &str = "192.0.2.7:40000";
/// Wall-clock time of monotonic 0 in these tests.
const EPOCH: i64 = 1_700_000_000_000;

fn at(mono_ms: u64) -> Now {
    Now {
        mono_ms,
        wall_ms: EPOCH + mono_ms as i64,
    }
}

fn policy() -> Policy {
    Policy {
        default_period: Duration::from_secs(1),
        grace: Duration::from_millis(500),
        stop_alarms_on_offline: true,
        auto_clear: BTreeMap::new(),
    }
}

fn device() -> Device {
    let mut profile = Profile::unconfigured("NVR-1", TimeZone::UTC);
    profile.channels.insert(2, "Garage".into());
    Device::new(profile, 0)
}

/// The one frame in `bytes`.
fn frame(bytes: &[u8]) -> Frame {
    let mut frames: Vec<Frame> = Decoder::default().feed(bytes).collect();
    assert_eq!(frames.len(), 1);
    frames.remove(0)
}

/// Decodes `bytes` with the device's state and feeds the frame in at `now`.
fn hear(device: &mut Device, now: Now, bytes: &[u8]) -> Effects {
    let frame = frame(bytes);
    let decoded = device.decode(&frame);
    let heard = Heard {
        connection: 1,
        peer: PEER.parse().unwrap(),
        peer_text: PEER,
        protocol: frame.protocol,
        decoded: &decoded,
    };
    device.on_frame(now, heard, false)
}

/// `device code action index (synthetic)` per event.
fn summary(effects: &Effects) -> Vec<String> {
    effects
        .events
        .iter()
        .map(|e| {
            let synthetic = e.synthetic.as_ref().map(|s| format!(" ({})", &**s));
            format!(
                "{} {} {:?}{}",
                e.code,
                &*e.action,
                e.index,
                synthetic.unwrap_or_default()
            )
        })
        .collect()
}

fn supervised_with_two_alarms() -> Device {
    let mut d = device();
    let first = hear(&mut d, at(0), &encode::dvrip_mask(2, 0, 0b11));
    assert_eq!(
        summary(&first),
        [
            "DeviceOnline pulse None",
            "VideoMotion start Some(0)",
            "VideoMotion start Some(1)"
        ]
    );
    assert!(hear(&mut d, at(0), &encode::dvrip_heartbeat()).supervised);
    d
}

#[test]
fn offline_strictly_after_period_plus_grace_with_synthetic_stops() {
    let mut d = supervised_with_two_alarms();
    assert_eq!(d.poll_timeout(&policy(), 0), Some(1_501));
    assert_eq!(
        d.handle_timeout(at(1_500), &policy(), 0),
        Effects::default()
    );
    let offline = d.handle_timeout(at(1_501), &policy(), 0);
    assert_eq!(
        summary(&offline),
        [
            "DeviceOffline pulse None",
            "VideoMotion stop Some(0) (offline)",
            "VideoMotion stop Some(1) (offline)"
        ]
    );
    assert_eq!(offline.offline, Some((Duration::from_secs(1), 2)));
    assert!(offline
        .events
        .iter()
        .all(|e| e.received_at == EPOCH + 1_501));
    assert_eq!(offline.events[2].channel_name.as_deref(), Some("Garage"));
    assert_eq!(
        offline.devices[0].state,
        Some((DeviceState::Offline, EPOCH + 1_501))
    );
    assert!(!d.is_online());
    assert_eq!(d.generation(), 1);
    assert_eq!(d.poll_timeout(&policy(), 0), None, "offline: nothing due");
    assert_eq!(
        d.handle_timeout(at(9_999), &policy(), 0),
        Effects::default()
    );
}

#[test]
fn keepalives_keep_it_online() {
    let mut d = supervised_with_two_alarms();
    for step in 1..=10 {
        let now = at(step * 300);
        assert!(d.handle_timeout(now, &policy(), 0).events.is_empty());
        hear(&mut d, now, &encode::dvrip_heartbeat());
    }
    assert_eq!(d.poll_timeout(&policy(), 0), Some(3_000 + 1_501));
    assert!(d.is_online());
}

#[test]
fn back_online_the_mask_bits_still_set_start_again() {
    let mut d = supervised_with_two_alarms();
    d.handle_timeout(at(2_000), &policy(), 0);
    let back = hear(&mut d, at(2_000), &encode::dvrip_mask(2, 0, 0b01));
    assert_eq!(
        summary(&back),
        ["DeviceOnline pulse None", "VideoMotion start Some(0)"]
    );
    // Stamped after the offline it ends, though both happened in the same millisecond.
    assert_eq!(back.events[0].received_at, EPOCH + 2_001);
    assert_eq!(
        back.devices[0].state,
        Some((DeviceState::Online, EPOCH + 2_001))
    );
}

#[test]
fn without_keepalives_silence_means_nothing() {
    // An XM camera: a connection per alarm, nothing in between.
    let mut d = device();
    hear(
        &mut d,
        at(0),
        &encode::bare_json(r#"{"Code":"VideoMotion","Action":"Start","Index":0}"#),
    );
    assert_eq!(d.poll_timeout(&policy(), 0), None);
    assert!(d
        .handle_timeout(at(86_400_000), &policy(), 0)
        .events
        .is_empty());
    assert!(d.is_online());
}

#[test]
fn a_configured_period_supervises_without_keepalives() {
    let mut profile = Profile::unconfigured("NVR-1", TimeZone::UTC);
    profile.period = Some(Duration::from_secs(60));
    let mut d = Device::new(profile, 0);
    hear(&mut d, at(0), &encode::dvrip_mask(2, 0, 0b1));
    assert_eq!(d.poll_timeout(&policy(), 0), Some(60_501));
    // An announced period overrides the configured one.
    let announce = r#"{"method":"client.keepAlive","params":{"timeout":10}}"#;
    let effects = hear(&mut d, at(1_000), &encode::dhip(1, 1, announce));
    assert_eq!(effects.devices[0].keepalive_period, Some(10));
    assert_eq!(d.poll_timeout(&policy(), 0), Some(11_501));
}

#[test]
fn a_stall_gives_a_whole_period_again() {
    let mut d = supervised_with_two_alarms();
    // Ingest was held up at 1 400 ms: frames waited unread, so silence counts from then.
    assert_eq!(d.poll_timeout(&policy(), 1_400), Some(2_901));
    assert!(d
        .handle_timeout(at(2_900), &policy(), 1_400)
        .events
        .is_empty());
    assert!(d
        .handle_timeout(at(2_901), &policy(), 1_400)
        .offline
        .is_some());
}

#[test]
fn offline_without_stopping_alarms_keeps_them_and_the_session() {
    let mut d = supervised_with_two_alarms();
    let keep = Policy {
        stop_alarms_on_offline: false,
        ..policy()
    };
    let offline = d.handle_timeout(at(1_501), &keep, 0);
    assert_eq!(summary(&offline), ["DeviceOffline pulse None"]);
    assert_eq!(d.active_alarms(), 2);
    assert_eq!(d.generation(), 0);
    // The same mask again is no news: the session remembers it.
    let back = hear(&mut d, at(2_000), &encode::dvrip_mask(2, 0, 0b11));
    assert_eq!(summary(&back), ["DeviceOnline pulse None"]);
}

#[test]
fn alarms_whose_stop_never_comes_are_auto_cleared() {
    let clear = Policy {
        auto_clear: BTreeMap::from([("VideoMotion".to_owned(), Duration::from_millis(1_500))]),
        ..policy()
    };
    let mut d = device();
    let start = |code: &str| format!(r#"{{"Code":"{code}","Action":"Start","Index":0}}"#);
    hear(&mut d, at(100), &encode::bare_json(&start("VideoMotion")));
    hear(&mut d, at(200), &encode::bare_json(&start("AlarmLocal")));
    assert_eq!(d.poll_timeout(&clear, 0), Some(1_600));
    assert_eq!(d.handle_timeout(at(1_599), &clear, 0), Effects::default());
    let cleared = d.handle_timeout(at(1_600), &clear, 0);
    assert_eq!(summary(&cleared), ["VideoMotion stop Some(0) (auto-clear)"]);
    assert_eq!(cleared.events[0].channel, Some(1));
    assert_eq!(cleared.auto_cleared, 1);
    // AlarmLocal has no limit: it stays active, and nothing more is due.
    assert_eq!(d.active_alarms(), 1);
    assert_eq!(d.poll_timeout(&clear, 0), None);
    assert!(d
        .handle_timeout(at(86_400_000), &clear, 0)
        .events
        .is_empty());
    // A `*` limit covers every other code.
    let all = Policy {
        auto_clear: BTreeMap::from([("*".to_owned(), Duration::from_secs(60))]),
        ..policy()
    };
    assert_eq!(d.poll_timeout(&all, 0), Some(60_200));
}

#[test]
fn a_stop_ends_tracking() {
    let mut d = device();
    hear(
        &mut d,
        at(0),
        &encode::bare_json(r#"{"Code":"VideoMotion","Action":"Start","Index":3}"#),
    );
    hear(
        &mut d,
        at(10),
        &encode::bare_json(r#"{"Code":"VideoMotion","Action":"Stop","Index":3}"#),
    );
    assert_eq!(d.active_alarms(), 0);
}

#[test]
fn the_row_is_written_on_news_and_last_seen_alone_is_flushed() {
    let mut d = device();
    let first = hear(&mut d, at(0), &encode::dvrip_heartbeat());
    assert_eq!(first.devices.len(), 1, "first frame: online");
    assert_eq!(d.take_last_seen(), None, "the row said it");
    // KeepAlives change only last_seen: no row, one flush owed (asked for once).
    let keepalive = hear(&mut d, at(1_000), &encode::dvrip_heartbeat());
    assert!(keepalive.devices.is_empty());
    assert!(keepalive.last_seen_pending);
    let again = hear(&mut d, at(2_000), &encode::dvrip_heartbeat());
    assert!(!again.last_seen_pending, "owed already");
    let flushed = d.take_last_seen().expect("owed");
    assert_eq!(
        (flushed.id.as_str(), flushed.last_seen),
        ("NVR-1", EPOCH + 2_000)
    );
    assert_eq!(flushed.state, None, "only last_seen");
    assert_eq!(d.take_last_seen(), None);
    // New identity fields are news.
    let serial = r#"{"Code":"VideoMotion","Action":"Pulse","SerialNo":"AB-1"}"#;
    let news = hear(&mut d, at(3_000), &encode::bare_json(serial));
    assert_eq!(news.devices[0].serial.as_deref(), Some("AB-1"));
    assert_eq!(
        news.devices[0].protocol.as_deref(),
        Some("json"),
        "another framing"
    );
    let same = hear(&mut d, at(4_000), &encode::bare_json(serial));
    assert!(same.devices.is_empty(), "the same serial again is not");
    // A new peer (a reconnection from another port) is.
    let frame = frame(&encode::dvrip_heartbeat());
    let decoded = d.decode(&frame);
    let moved = d.on_frame(
        at(5_000),
        Heard {
            connection: 2,
            peer: "192.0.2.7:40001".parse().unwrap(),
            peer_text: "192.0.2.7:40001",
            protocol: frame.protocol,
            decoded: &decoded,
        },
        false,
    );
    assert_eq!(moved.devices[0].peer.as_deref(), Some("192.0.2.7:40001"));
}

#[test]
fn connections_attach_conflict_and_identify_elsewhere() {
    let mut d = device();
    let a: IpAddr = "192.0.2.7".parse().unwrap();
    let b: IpAddr = "198.51.100.9".parse().unwrap();
    let first = d.attach(1, a, at(0));
    assert_eq!(first.conflicting, 0);
    let row = first.first_contact.expect("a new device gets its row");
    assert_eq!(row.first_frame, FrameRef::Carrier);
    assert_eq!(row.state, Some((DeviceState::Offline, EPOCH)));
    // A second connection from the same address is no conflict; one from another address is.
    assert_eq!(d.attach(2, a, at(1)), Attached::default());
    assert_eq!(d.attach(3, b, at(2)).conflicting, 2);
    hear(&mut d, at(3), &encode::dvrip_mask(2, 0, 0b1));
    // Connection 3 turns out to be another device: the others stay, so does the device.
    let (moved, effects) = d.identified_as(3, "OTHER", at(4));
    assert_eq!((moved, effects), (None, Effects::default()));
    d.detach(2);
    // The last one leaves: offline, stamped after its online, and its alarms go with it.
    let (moved, effects) = d.identified_as(1, "OTHER", at(3));
    assert_eq!(moved.map(|m| m.len()), Some(1));
    assert_eq!(summary(&effects), ["DeviceOffline pulse None"]);
    assert_eq!(effects.events[0].received_at, EPOCH + 4);
    assert!(!d.is_online());
    assert_eq!(d.active_alarms(), 0);
}

#[test]
fn expiry_needs_silence_no_connection_and_no_configuration() {
    let mut d = device();
    d.attach(1, "192.0.2.7".parse().unwrap(), at(0));
    assert!(!d.expired(10_000, 5_000), "a connection is open");
    d.detach(1);
    assert!(d.expired(10_000, 5_000));
    assert!(!d.expired(4_999, 5_000));
    d.touch(8_000);
    assert!(!d.expired(10_000, 5_000));
    // Silence before a restart counts; hearing from it ends it.
    let mut restored = device();
    restored.restore(true, Some(30), 4_000);
    assert!(restored.expired(1_000, 5_000));
    restored.touch(1_000);
    assert!(!restored.expired(1_000, 5_000));
    let mut configured = Profile::unconfigured("NVR-2", TimeZone::UTC);
    configured.configured = true;
    assert!(!Device::new(configured, 0).expired(u64::MAX, 1));
}

#[test]
fn restored_devices_get_a_whole_period_to_come_back() {
    let mut d = device();
    d.restore(true, Some(30), 120_000);
    assert!(d.is_online());
    // Supervised (it announced a period), counted from the restart, not from before it.
    assert_eq!(d.poll_timeout(&policy(), 0), Some(30_501));
    let mut quiet = device();
    quiet.restore(true, None, 0);
    assert_eq!(quiet.poll_timeout(&policy(), 0), None);
}

#[test]
fn huge_periods_saturate() {
    let mut d = supervised_with_two_alarms();
    let forever = Policy {
        default_period: Duration::MAX,
        auto_clear: BTreeMap::from([("*".to_owned(), Duration::MAX)]),
        ..policy()
    };
    assert_eq!(d.poll_timeout(&forever, 0), Some(u64::MAX));
    assert_eq!(
        d.handle_timeout(at(u64::MAX - 1), &forever, 0),
        Effects::default()
    );
}

#[test]
fn device_times_get_the_configured_zone() {
    let mut profile = Profile::unconfigured("NVR-1", crate::zone("Europe/Berlin").unwrap());
    profile.channels.insert(1, "Door".into());
    let mut d = Device::new(profile, 0);
    let json = r#"{"Code":"VideoMotion","Action":"Start","Index":0,"Time":"2024-05-01 10:00:00"}"#;
    let effects = hear(&mut d, at(0), &encode::bare_json(json));
    let event = effects.events.iter().find(|e| e.code == "VideoMotion");
    let event = event.expect("the alarm");
    assert_eq!(event.channel_name.as_deref(), Some("Door"));
    assert_eq!(
        event.device_time.as_deref(),
        Some("2024-05-01T10:00:00+02:00")
    );
}

#[test]
fn only_an_earlier_deadline_is_rescheduled() {
    let mut d = supervised_with_two_alarms();
    assert_eq!(d.reschedule(&policy(), 0), Some(1_501));
    assert_eq!(d.reschedule(&policy(), 0), None, "scheduled already");
    // A keepAlive moves the deadline later: nothing to schedule until the old one fires.
    hear(&mut d, at(1_000), &encode::dvrip_heartbeat());
    assert_eq!(d.reschedule(&policy(), 0), None);
    assert!(d.handle_timeout(at(1_501), &policy(), 0).events.is_empty());
    d.timer_fired();
    assert_eq!(d.reschedule(&policy(), 0), Some(2_501));
    // An alarm with an auto-clear limit sooner than that is scheduled at once.
    let clear = Policy {
        auto_clear: BTreeMap::from([("Tamper".to_owned(), Duration::from_millis(100))]),
        ..policy()
    };
    hear(
        &mut d,
        at(1_200),
        &encode::bare_json(r#"{"Code":"Tamper","Action":"Start","Index":7}"#),
    );
    assert_eq!(d.reschedule(&clear, 0), Some(1_300));
    // Offline: nothing left to schedule.
    d.timer_fired();
    d.handle_timeout(at(9_000), &policy(), 0);
    assert_eq!(d.reschedule(&policy(), 0), None);
}
