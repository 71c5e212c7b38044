//! Devices the server has never seen are limited per source address and in total, and never-configured
//! devices that fall silent are forgotten: random serials cannot grow the registry and the store without
//! bound. Issue 9, item 10.

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_server::config::DeviceConfig;
use alarm_center_server::{Config, Stats};
use alarm_center_store::{Db, EventQuery, FrameQuery};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// A motion alarm from the device of serial `serial`.
fn alarm(serial: &str) -> Vec<u8> {
    encode::bare_json(&format!(
        r#"{{"Code":"VideoMotion","Action":"Start","Index":0,"SerialNo":"{serial}"}}"#
    ))
}

fn configured(id: &str, serial: &str) -> DeviceConfig {
    DeviceConfig {
        id: id.into(),
        serial: Some(serial.into()),
        ..Default::default()
    }
}

/// Connects from `source`, sends an alarm of `serial` and waits for it to be committed (`KNOWN-1`
/// is the configured device `front`).
async fn heard(t: &mut TestServer, source: [u8; 4], serial: &str) -> TcpStream {
    let mut stream = connect_from(source, t.server.local_addr()).await;
    send(&mut stream, &alarm(serial)).await;
    let device = if serial == "KNOWN-1" { "front" } else { serial };
    t.until(WAIT, |e| {
        e.event.code == "VideoMotion" && e.event.device == device
    })
    .await;
    stream
}

/// Still open: a read times out instead of returning end of stream.
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
        .await
        .is_err()
}

/// The ids in the store's `devices` table, sorted.
fn stored_devices(dir: &std::path::Path) -> Vec<String> {
    let db = Db::open_read_only(dir).unwrap();
    db.devices().unwrap().into_iter().map(|d| d.id).collect()
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// Polls the store until `done` holds for its device ids (or panics after `within`); returns how
/// long it took.
async fn wait_for_devices(
    dir: &std::path::Path,
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let ids = stored_devices(dir);
        if done(&ids) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "devices stay: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(t: &TestServer) -> String {
    let api = t.server.api_addr().unwrap();
    reqwest::get(format!("http://{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_devices_past_the_per_address_limit_are_refused_and_their_frames_kept() {
    let mut t = start(|c| {
        c.server.max_new_devices_per_ip_per_minute = 5;
        c.devices.push(configured("front", "KNOWN-1"));
    })
    .await;
    let addr = t.server.local_addr();
    let local = [127, 0, 0, 1];
    let mut admitted = Vec::new();
    for i in 0..5 {
        admitted.push(heard(&mut t, local, &format!("RND-{i}")).await);
    }
    // Random serials past the limit: closed (the device retries later), nothing created.
    for i in 5..20 {
        let mut refused = connect_from(local, addr).await;
        send(&mut refused, &alarm(&format!("RND-{i}"))).await;
        assert!(
            closed_by_server(&mut refused, WAIT).await,
            "RND-{i} was not refused"
        );
    }
    // From the same address, configured devices and devices already known are never limited.
    let mut front = heard(&mut t, local, "KNOWN-1").await;
    let mut again = heard(&mut t, local, "RND-0").await;
    // Another address has its own allowance.
    let mut elsewhere = heard(&mut t, [127, 0, 0, 2], "RND-X").await;
    for stream in admitted
        .iter_mut()
        .chain([&mut front, &mut again, &mut elsewhere])
    {
        assert!(still_open(stream).await);
    }
    assert_eq!(Stats::get(&t.server.stats().new_devices_refused), 15);
    let text = metrics(&t).await;
    assert!(
        text.contains("alarm_center_new_devices_refused_total 15\n"),
        "{text}"
    );
    t.server.shutdown().await.unwrap();
    assert_eq!(
        stored_devices(t.dir.path()),
        sorted(&["RND-0", "RND-1", "RND-2", "RND-3", "RND-4", "RND-X", "front"])
    );
    let db = Db::open_read_only(t.dir.path()).unwrap();
    assert_eq!(
        db.frame_count().unwrap(),
        23,
        "every frame is archived, the refused ones too"
    );
    let of = |device: &str| {
        db.frames(&FrameQuery {
            device: Some(device.into()),
            ..Default::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!(of("RND-7"), 0, "a refused frame is kept without device");
    assert_eq!(of("RND-0"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_new_device_limit_holds_across_addresses_and_kinds_of_identity() {
    let mut t = start(|c| {
        c.server.max_new_devices_per_minute = 3;
        c.devices.push(configured("front", "KNOWN-1"));
    })
    .await;
    let addr = t.server.local_addr();
    for i in 2..5 {
        heard(&mut t, [127, 0, 0, i], &format!("RND-{i}")).await;
    }
    // Past the limit, each from an address not seen yet: a serial, a DVR known only by its
    // address (0x69 masks), an HTTP-mode device (named by the address it reports).
    let mut serial = connect_from([127, 0, 0, 5], addr).await;
    send(&mut serial, &alarm("RND-5")).await;
    assert!(closed_by_server(&mut serial, WAIT).await);
    let mut masks = connect_from([127, 0, 0, 6], addr).await;
    send(&mut masks, &encode::dvrip_mask(2, 0, 1)).await;
    assert!(closed_by_server(&mut masks, WAIT).await);
    let mut http = connect_from([127, 0, 0, 7], addr).await;
    let body = r#"{"Action":"Start","Code":"VideoMotion","Index":0,"Data":{"IP":"192.0.2.20"}}"#;
    send(&mut http, &encode::http_event("alarm-center:15002", body)).await;
    let mut answer = String::new();
    tokio::time::timeout(WAIT, http.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 60"),
        "{answer}"
    );
    // A configured device from yet another address still comes in.
    heard(&mut t, [127, 0, 0, 8], "KNOWN-1").await;
    assert_eq!(Stats::get(&t.server.stats().new_devices_refused), 3);
    t.server.shutdown().await.unwrap();
    assert_eq!(
        stored_devices(t.dir.path()),
        sorted(&["RND-2", "RND-3", "RND-4", "front"])
    );
    let db = Db::open_read_only(t.dir.path()).unwrap();
    assert_eq!(db.frame_count().unwrap(), 7, "the refused frames are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_known_from_the_store_are_not_limited_after_a_restart() {
    let mut t = start(|c| c.server.max_new_devices_per_ip_per_minute = 0).await;
    let local = [127, 0, 0, 1];
    for serial in ["OLD-1", "OLD-2", "OLD-3"] {
        heard(&mut t, local, serial).await;
    }
    let TestServer { server, dir, .. } = t;
    server.shutdown().await.unwrap();
    let mut config = crate::common::config(dir.path());
    config.server.max_new_devices_per_ip_per_minute = 1;
    let mut t = start_with(dir, config).await;
    let mut streams = Vec::new();
    for serial in ["OLD-1", "OLD-2", "OLD-3", "NEW-1"] {
        streams.push(heard(&mut t, local, serial).await);
    }
    let mut refused = connect_from(local, t.server.local_addr()).await;
    send(&mut refused, &alarm("NEW-2")).await;
    assert!(closed_by_server(&mut refused, WAIT).await);
    for stream in &mut streams {
        assert!(still_open(stream).await);
    }
    assert_eq!(Stats::get(&t.server.stats().new_devices_refused), 1);
    t.server.shutdown().await.unwrap();
}

fn expiring(c: &mut Config, after: &str) {
    c.server.device_expiry = humantime::parse_duration(after).unwrap();
    c.devices.push(configured("front", "KNOWN-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_configured_devices_silent_past_the_expiry_are_forgotten_but_their_events_stay() {
    let mut t = start(|c| expiring(c, "2s")).await;
    let local = [127, 0, 0, 1];
    let gone = heard(&mut t, local, "GONE-1").await;
    drop(gone);
    drop(heard(&mut t, local, "KNOWN-1").await);
    // Silent too, but its connection is still open: it stays.
    let mut connected = heard(&mut t, local, "CONNECTED-1").await;
    let took = wait_for_devices(t.dir.path(), WAIT, |ids| {
        !ids.iter().any(|id| id == "GONE-1")
    })
    .await;
    assert!(
        took >= Duration::from_millis(1500),
        "expired after {took:?}"
    );
    assert_eq!(
        stored_devices(t.dir.path()),
        sorted(&["CONNECTED-1", "front"])
    );
    assert!(still_open(&mut connected).await);
    assert_eq!(Stats::get(&t.server.stats().devices_expired), 1);
    assert!(metrics(&t)
        .await
        .contains("alarm_center_devices_expired_total 1\n"));
    // Its history stays; when it comes back it is a new device again.
    heard(&mut t, local, "GONE-1").await;
    assert!(stored_devices(t.dir.path()).contains(&"GONE-1".to_owned()));
    t.server.shutdown().await.unwrap();
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let events = db
        .events(&EventQuery {
            device: Some("GONE-1".into()),
            ascending: true,
            ..Default::default()
        })
        .unwrap();
    let codes: Vec<&str> = events.iter().map(|e| e.event.code.as_str()).collect();
    assert_eq!(
        codes,
        ["DeviceOnline", "VideoMotion", "DeviceOnline", "VideoMotion"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_before_a_restart_counts_towards_the_expiry() {
    let mut t = start(|c| expiring(c, "0s")).await;
    let local = [127, 0, 0, 1];
    drop(heard(&mut t, local, "GONE-2").await);
    drop(heard(&mut t, local, "KNOWN-1").await);
    let TestServer { server, dir, .. } = t;
    server.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut config = crate::common::config(dir.path());
    expiring(&mut config, "2s");
    let t = start_with(dir, config).await;
    // Silent for 2.5 s already: forgotten at the first pass, not 2 s after the start.
    let took = wait_for_devices(t.dir.path(), WAIT, |ids| ids == ["front"]).await;
    assert!(took < Duration::from_millis(1500), "expired after {took:?}");
    t.server.shutdown().await.unwrap();
}
