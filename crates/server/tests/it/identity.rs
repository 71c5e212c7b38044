//! A device's identity cannot be used to push it off: connections of one device coexist, a replaced
//! connection loses nothing it has read, and devices known only by their address (several behind
//! one NAT router) keep their own alarm state. Issue 9, item 1.

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_store::{Db, EventQuery};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

fn keepalive(serial: &str, id: u32) -> String {
    format!(
        r#"{{"id":{id},"method":"global.keepAlive","params":{{"timeout":60,"SerialNo":"{serial}"}}}}"#
    )
}

fn motion(serial: &str, action: &str, index: u32, id: u32) -> String {
    format!(
        r#"{{"id":{id},"method":"client.notifyEventStream","params":{{"SerialNo":"{serial}","eventList":[{{"Action":"{action}","Code":"VideoMotion","Index":{index}}}]}}}}"#
    )
}

fn stored(dir: &std::path::Path, device: &str) -> Vec<alarm_center_store::StoredEvent> {
    let db = Db::open_read_only(dir).unwrap();
    let mut events = db
        .events(&EventQuery {
            device: Some(device.into()),
            ascending: true,
            limit: Some(100_000),
            ..EventQuery::default()
        })
        .unwrap();
    events.retain(|e| e.event.kind != "device");
    events
}

/// Still open: a read times out instead of returning end of stream.
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_claiming_a_serial_neither_evicts_the_device_nor_loses_its_events() {
    let t = start(|_| {}).await;
    let addr = t.server.local_addr();
    // The real device: a burst of 3,000 alarm events in one write, then an attacker claims its serial
    // from another address while the server is still working through the burst.
    let mut device = connect_from([127, 0, 0, 1], addr).await;
    let mut burst = encode::dhip(1, 1, &keepalive("NVR-REAL", 1));
    for i in 0..3000u32 {
        let action = if i % 2 == 0 { "Start" } else { "Stop" };
        burst.extend(encode::dhip(
            1,
            i + 2,
            &motion("NVR-REAL", action, i % 8, i + 2),
        ));
    }
    send(&mut device, &burst).await;
    let mut intruder = connect_from([127, 0, 0, 2], addr).await;
    send(
        &mut intruder,
        &encode::dhip(9, 1, &keepalive("NVR-REAL", 1)),
    )
    .await;
    send(
        &mut intruder,
        &encode::dhip(9, 2, &motion("NVR-REAL", "Stop", 0, 2)),
    )
    .await;
    // The device is still connected and still heard.
    send(
        &mut device,
        &encode::dhip(1, 9999, &motion("NVR-REAL", "Start", 7, 9999)),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = stored(t.dir.path(), "NVR-REAL").len();
        if n >= 3002 || tokio::time::Instant::now() > deadline {
            assert_eq!(
                n, 3002,
                "3,000 burst events + the intruder's + the device's last"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        still_open(&mut device).await,
        "the device's connection was closed"
    );
    assert!(still_open(&mut intruder).await);
    let stats = t.server.stats();
    assert_eq!(alarm_center_server::Stats::get(&stats.closed_replaced), 0);
    assert!(alarm_center_server::Stats::get(&stats.identity_conflicts) >= 1);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_behind_one_address_without_identity_coexist_with_their_own_alarm_state() {
    let mut t = start(|_| {}).await;
    // Two DVRs behind one NAT address, sending binary 0x69 masks (no identity at all).
    let mut a = t.connect().await;
    let mut b = t.connect().await;
    send(&mut a, &encode::dvrip_mask(2, 0, 0b01)).await; // A: channel 1 starts
    t.until(WAIT, |e| {
        e.event.code == "VideoMotion" && e.event.channel == Some(1)
    })
    .await;
    send(&mut b, &encode::dvrip_mask(2, 0, 0b10)).await; // B: channel 2 starts
    t.until(WAIT, |e| {
        e.event.code == "VideoMotion" && e.event.channel == Some(2)
    })
    .await;
    send(&mut a, &encode::dvrip_mask(2, 0, 0b00)).await; // A: channel 1 stops (and nothing else)
    let events = t
        .until(WAIT, |e| {
            e.event.code == "VideoMotion" && e.event.action == "stop"
        })
        .await;
    let stops: Vec<_> = events
        .iter()
        .filter(|e| e.event.action == "stop")
        .map(|e| e.event.channel)
        .collect();
    assert_eq!(
        stops,
        [Some(1)],
        "B's alarm must not be stopped by A's mask"
    );
    t.no_events_for(Duration::from_millis(300)).await;
    assert!(still_open(&mut a).await && still_open(&mut b).await);
    t.server.shutdown().await.unwrap();
}
