//! One device's frames should keep their arrival order across connections: XM cameras open one
//! connection per alarm, so a start and its stop arrive on two connections a millisecond apart, and
//! the two connection tasks race (issue 9, item 5). Without the arrival order (`server.arrival-order-window
//! = "0s"`) 9 to 72 of the 180 pairs were stored swapped on a 2-core machine.

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_store::{Db, EventQuery};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_and_its_stop_on_two_connections_are_stored_in_order() {
    // Many short connections from one address at once: above the default per-address limit.
    let t = start(|c| c.server.max_connections_per_ip = 10_000).await;
    let addr = t.server.local_addr();
    let (cameras, pairs) = (12, 15);
    // Twelve cameras at once, each sending start/stop pairs on fresh connections back to back.
    let mut tasks = Vec::new();
    for camera in 0..cameras {
        tasks.push(tokio::spawn(async move {
            for i in 0..pairs {
                let alarm = |start: bool| {
                    encode::xm_alarm(
                        &format!("CAM-{camera}"),
                        "192.0.2.30".parse().unwrap(),
                        i % 4,
                        "HumanDetect",
                        start,
                        "2024-01-27 21:10:58",
                    )
                };
                let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
                send(&mut first, &alarm(true)).await;
                let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
                send(&mut second, &alarm(false)).await;
                drop((first, second));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let expected = (cameras * pairs * 2) as usize;
    let events = loop {
        let mut events = db
            .events(&EventQuery {
                code: Some("HumanDetect".into()),
                ascending: true,
                limit: Some(10_000),
                ..EventQuery::default()
            })
            .unwrap();
        events.retain(|e| e.event.synthetic.is_none());
        if events.len() >= expected || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(events.len(), expected);
    let mut swapped = 0;
    for camera in 0..cameras {
        let actions: Vec<&str> = events
            .iter()
            .filter(|e| e.event.device == format!("CAM-{camera}"))
            .map(|e| e.event.action.as_str())
            .collect();
        let bad = actions
            .chunks(2)
            .filter(|pair| pair != &["start", "stop"])
            .count();
        swapped += bad;
    }
    assert_eq!(swapped, 0, "start/stop pairs stored out of order");
    t.server.shutdown().await.unwrap();
}

/// Connections get their ids (and their places in the arrival line) in the kernel's accept order
/// whichever connection thread accepts them (D62): connections opened one after another, faster than
/// four threads racing to accept them, are numbered in the order they were opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_numbered_in_accept_order_across_connection_threads() {
    const CONNECTIONS: usize = 250;
    let t = start(|c| c.server.connection_threads = 4).await;
    let mut opened = Vec::new();
    for _ in 0..CONNECTIONS {
        let stream = t.connect().await;
        opened.push((stream.local_addr().unwrap().to_string(), stream));
    }
    let stats = t.server.stats();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while alarm_center_server::Stats::get(&stats.connections_accepted) < CONNECTIONS as u64 {
        assert!(tokio::time::Instant::now() < deadline, "not all accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.server.shutdown().await.unwrap();
    let db = rusqlite::Connection::open(t.dir.path().join(alarm_center_store::DB_FILE)).unwrap();
    let peers: Vec<String> = db
        .prepare("SELECT peer FROM connections ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<String> = opened.iter().map(|(peer, _)| peer.clone()).collect();
    assert_eq!(peers, expected);
}
