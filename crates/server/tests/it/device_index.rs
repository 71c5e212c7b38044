//! The per-device index (D61, D68) once the devices fall silent: the writer completes an addition
//! on its own (D70) rather than waiting for a write that may never come.

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;

/// `device_index.upto` and the newest event id, read from the store's file.
fn upto_and_newest(dir: &std::path::Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(dir.join(alarm_center_store::DB_FILE)).unwrap();
    conn.query_row(
        "SELECT (SELECT upto FROM device_index), (SELECT MAX(id) FROM events)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_added_to_the_per_device_index_once_the_devices_fall_silent() {
    // A burst of fewer events than an addition's 16,384, all in well within the second after the
    // store opened: its addition is due once that second has passed, and no write comes after it
    // (no connection closes, no last-seen flush) to drive it.
    const ALARMS: usize = 2_000;
    const DEVICES: usize = 4;
    let mut server = start(|c| c.supervision.last_seen_flush = Duration::from_secs(3_600)).await;
    let mut streams = Vec::new();
    for device in 0..DEVICES {
        let mut stream = server.connect().await;
        for i in 0..ALARMS / DEVICES {
            let body = format!(
                r#"{{"Code":"VideoMotion","Action":"Pulse","Index":{},"SerialNo":"IDX{device}"}}"#,
                i % 4
            );
            send(&mut stream, &encode::dhip(1, i as u32, &body)).await;
        }
        streams.push(stream);
    }
    // The device-online events come too.
    server
        .events(ALARMS + DEVICES, Duration::from_secs(60))
        .await;
    let dir = server.dir.path().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (upto, newest) = upto_and_newest(&dir);
        if upto == newest {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index stopped at event {upto} of {newest} with the devices silent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(streams);
}
