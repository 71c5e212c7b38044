//! The connection threads (D62): they stop with the server however it goes away.

use std::time::{Duration, Instant};

use crate::common::*;

/// A server dropped without `shutdown` (its runtime ends under it, as when a program returns from
/// `main` or a test ends) must not leave its connection threads accepting on the device port.
#[test]
fn connection_threads_stop_when_the_server_is_dropped_without_shutdown() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr, dir) = runtime.block_on(async {
        let t = start(|c| c.server.connection_threads = 3).await;
        let addr = t.server.local_addr();
        // Served while the server runs: a connection is accepted and kept.
        let mut stream = t.connect().await;
        assert!(!closed_by_server(&mut stream, Duration::from_millis(300)).await);
        let TestServer { server, dir, .. } = t;
        drop(server);
        (addr, dir)
    });
    drop(runtime);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the device port still accepts 10 s after the server and its runtime were dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(dir);
}

/// `/metrics` shows how the open connections are spread over the connection threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_connections_open_on_each_thread() {
    const CONNECTIONS: u64 = 20;
    let t = start(|c| c.server.connection_threads = 3).await;
    let mut open = Vec::new();
    for _ in 0..CONNECTIONS {
        open.push(t.connect().await);
    }
    let metrics = format!("http://{}/metrics", t.server.api_addr().unwrap());
    // The gauges of the three threads, summed, once every connection is counted.
    let gauges = |text: &str| -> Vec<u64> {
        text.lines()
            .filter(|l| l.starts_with("alarm_center_connections_open_by_thread{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        let counts = gauges(&text);
        assert_eq!(counts.len(), 3, "{text}");
        if counts.iter().sum::<u64>() == CONNECTIONS {
            break;
        }
        assert!(Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Closed connections leave their thread's gauge.
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        if gauges(&text).iter().sum::<u64>() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.server.shutdown().await.unwrap();
}
