//! A store stall must not make devices offline: while the writer is blocked, connections wait for
//! room instead of reading their sockets, and that silence is ours, not the devices'. Device events
//! are stored in the order of their timestamps. Issue 9, item 6.

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_store::{Db, EventQuery};

const WAIT: Duration = Duration::from_secs(60);

fn keepalive(serial: &str, id: u32) -> Vec<u8> {
    encode::dhip(
        1,
        id,
        &format!(
            r#"{{"id":{id},"method":"global.keepAlive","params":{{"timeout":1,"SerialNo":"{serial}"}}}}"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_still_sending_stay_online_while_the_store_is_blocked() {
    let mut t = start(|c| {
        c.supervision.keepalive = Duration::from_secs(1);
        c.supervision.grace = Duration::from_secs(1);
    })
    .await;
    // Three supervised devices, a keepAlive every 300 ms (period 1 s + grace 1 s).
    let mut devices = Vec::new();
    for serial in ["STALL-1", "STALL-2", "STALL-3"] {
        let mut stream = t.connect().await;
        send(&mut stream, &keepalive(serial, 1)).await;
        devices.push((serial, stream));
    }
    let mut online = 0;
    while online < 3 {
        online += t
            .events(1, WAIT)
            .await
            .iter()
            .filter(|e| e.event.code == "DeviceOnline")
            .count();
    }
    let keepalives = tokio::spawn(async move {
        for round in 2..40u32 {
            for (serial, stream) in &mut devices {
                send(stream, &keepalive(serial, round)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        devices
    });
    // Block the store: another connection holds the write lock, so every commit waits.
    let path = t.dir.path().join("alarm-center.db");
    let blocker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(5));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    // A busy device fills the writer's queue (32,768 records) while the store is blocked.
    let mut flood = t.connect().await;
    let event = encode::bare_json(
        r#"{"Code":"VideoMotion","Action":"Pulse","Index":0,"SerialNo":"FLOOD"}"#,
    );
    let burst: Vec<u8> = (0..50_000).flat_map(|_| event.clone()).collect();
    let flooding = tokio::spawn(async move {
        send(&mut flood, &burst).await;
        flood
    });
    blocker.join().unwrap();
    let _flood = flooding.await.unwrap();
    let _devices = keepalives.await.unwrap();
    // Everything is committed after the stall.
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while db.event_count().unwrap() < 50_003 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = db
        .events(&EventQuery {
            ascending: true,
            limit: Some(200_000),
            ..EventQuery::default()
        })
        .unwrap();
    let offline: Vec<_> = events
        .iter()
        .filter(|e| e.event.code == "DeviceOffline")
        .map(|e| e.event.device.clone())
        .collect();
    assert!(
        offline.is_empty(),
        "false offline during the stall: {offline:?}"
    );
    // Per device, device events are stored in the order of their timestamps.
    for serial in ["STALL-1", "STALL-2", "STALL-3", "FLOOD"] {
        let times: Vec<i64> = events
            .iter()
            .filter(|e| e.event.device == serial && e.event.kind == "device")
            .map(|e| e.event.received_at)
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{serial}: {times:?}"
        );
    }
    t.server.shutdown().await.unwrap();
}
