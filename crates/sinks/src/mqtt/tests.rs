//! Unit tests of Home Assistant discovery: what is published when, and the bounds.

use std::collections::BTreeMap;
use std::sync::Arc;

use alarm_center_store::StoredEvent;

use super::discovery::{device_class, Discovery, DiscoveryCounts, KnownDevice};
use super::{Message, MqttConfig};

pub(super) fn event(device: &str, code: &str, action: &str, channel: Option<i64>) -> StoredEvent {
    StoredEvent {
        id: 1,
        frame_id: None,
        event: alarm_center_store::NewEvent {
            frame: alarm_center_store::FrameRef::None,
            device: device.into(),
            code: code.into(),
            action: action.into(),
            index: channel.map(|c| c - 1),
            channel,
            channel_name: None,
            kind: if code.starts_with("Device") {
                "device"
            } else {
                "alarm"
            }
            .into(),
            device_time: None,
            // 2026-11-30T00:00:00.000Z
            received_at: 1_795_996_800_000,
            data: None,
            synthetic: None,
        },
    }
}

fn discovery(max_devices: usize, max_entities: usize) -> Discovery {
    let config = MqttConfig {
        discovery_max_devices: max_devices,
        discovery_max_entities_per_device: max_entities,
        ..MqttConfig::default()
    };
    Discovery::new(Arc::new(config), BTreeMap::new())
}

fn topics(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.topic.as_str()).collect()
}

#[test]
fn only_what_is_new_is_published() {
    let mut d = discovery(10, 10);
    let online = d.observe(&event("cam", "DeviceOnline", "pulse", None));
    assert_eq!(
        topics(&online),
        ["homeassistant/binary_sensor/alarm-center_cam/connectivity/config"]
    );
    assert!(d
        .observe(&event("cam", "DeviceOffline", "pulse", None))
        .is_empty());
    let first = d.observe(&event("cam", "VideoMotion", "start", Some(1)));
    assert_eq!(
        topics(&first),
        ["homeassistant/binary_sensor/alarm-center_cam/1_VideoMotion/config"]
    );
    // The same entity again, and its stop: nothing new.
    assert!(d
        .observe(&event("cam", "VideoMotion", "stop", Some(1)))
        .is_empty());
    let second = d.observe(&event("cam", "CrossLineDetection", "pulse", Some(2)));
    assert_eq!(
        topics(&second),
        ["homeassistant/event/alarm-center_cam/2_CrossLineDetection/config"]
    );
    // A device first seen through an alarm: its connectivity config and the entity's.
    let other = d.observe(&event("nvr", "AlarmLocal", "start", None));
    assert_eq!(
        topics(&other),
        [
            "homeassistant/binary_sensor/alarm-center_nvr/connectivity/config",
            "homeassistant/binary_sensor/alarm-center_nvr/device_AlarmLocal/config"
        ]
    );
    // Log records make no entity.
    let mut log = event("nvr", "Log", "pulse", None);
    log.event.kind = "log".into();
    assert!(d.observe(&log).is_empty());
    assert_eq!(d.all().len(), 5);
    assert_eq!(
        d.counts(),
        DiscoveryCounts {
            devices: 2,
            entities: 3,
            full_devices: 0,
            skipped: 0
        }
    );
}

#[test]
fn bounds_stop_new_configs_and_count_what_was_skipped() {
    let mut d = discovery(2, 3);
    for device in ["a", "b", "c"] {
        d.observe(&event(device, "DeviceOnline", "pulse", None));
        for channel in 1..=5 {
            d.observe(&event(device, "VideoMotion", "start", Some(channel)));
        }
    }
    // "c" is past discovery-max-devices: its 6 events made nothing. "a" and "b" have 3 entities each,
    // and 2 events each found the entity bound.
    assert_eq!(
        d.counts(),
        DiscoveryCounts {
            devices: 2,
            entities: 6,
            full_devices: 2,
            skipped: 6 + 2 * 2
        }
    );
    assert_eq!(d.all().len(), 2 + 6);
    // An entity already announced is no new entity, even at the bound.
    assert!(d
        .observe(&event("a", "VideoMotion", "stop", Some(1)))
        .is_empty());
    assert_eq!(d.counts().skipped, 10);
}

#[test]
fn loading_respects_the_bounds_and_prefers_named_and_active_devices() {
    let row = |id: &str, name: Option<&str>, seen: &str| KnownDevice {
        id: id.into(),
        name: name.map(Into::into),
        last_seen: seen.into(),
    };
    let entity = |device: &str, channel: i64| alarm_center_store::EventKey {
        device: device.into(),
        channel: Some(channel),
        code: "VideoMotion".into(),
        pulse: false,
        channel_name: Some(format!("Ch{channel}")),
    };
    let mut d = discovery(2, 2);
    d.load(
        vec![
            row("idle-new", None, "2026-11-30T00:00:00.000Z"),
            row("active", None, "2026-11-01T00:00:00.000Z"),
            row("named", Some("Porch"), "2026-10-01T00:00:00.000Z"),
        ],
        (1..=3).map(|c| entity("active", c)).collect(),
    );
    assert_eq!(
        d.counts(),
        DiscoveryCounts {
            devices: 2,
            entities: 2,
            full_devices: 1,
            skipped: 0
        }
    );
    let all = d.all();
    assert!(topics(&all)
        .iter()
        .all(|t| t.contains("alarm-center_active/") || t.contains("alarm-center_named/")));
    let named: serde_json::Value = serde_json::from_slice(&all[3].payload).unwrap();
    assert_eq!(named["device"]["name"], "Porch");
    let ch1: serde_json::Value = serde_json::from_slice(&all[1].payload).unwrap();
    assert_eq!(ch1["name"], "Ch1 VideoMotion");
    // The bound was reached at load: the next new device is refused without a second warning.
    assert!(d
        .observe(&event("idle-new", "DeviceOnline", "pulse", None))
        .is_empty());
    assert_eq!(d.counts().skipped, 1);
}

#[test]
fn discovery_off_makes_no_configs() {
    let mut d = Discovery::new(
        Arc::new(MqttConfig {
            discovery: false,
            ..MqttConfig::default()
        }),
        BTreeMap::new(),
    );
    assert!(d
        .observe(&event("cam", "VideoMotion", "start", Some(1)))
        .is_empty());
    assert!(d.all().is_empty());
}

#[test]
fn device_classes_map_problems_and_tampering_before_motion() {
    let cases = [
        ("LossDetect", Some("problem")),
        ("VideoLoss", Some("problem")),
        ("BlindDetect", Some("tamper")),
        ("VideoBlind", Some("tamper")),
        ("VideoAbnormalDetection", Some("problem")),
        ("StorageNotExist", Some("problem")),
        ("StorageLowSpace", Some("problem")),
        ("StorageFailure", Some("problem")),
        ("DiskFull", Some("problem")),
        ("NetAbort", Some("problem")),
        ("VideoMotion", Some("motion")),
        ("SmartMotionHuman", Some("motion")),
        ("SmartMotionVehicle", Some("motion")),
        ("HumanDetect", Some("motion")),
        ("CrossLineDetection", Some("motion")),
        ("CrossRegionDetection", Some("motion")),
        ("FaceRecognition", Some("motion")),
        ("AudioMutation", Some("sound")),
        ("SmokeDetection", Some("smoke")),
        ("AlarmLocal", None),
    ];
    for (code, class) in cases {
        assert_eq!(device_class(code), class, "{code}");
    }
}
