//! The connection threads (D62): they stop with the server however it goes away; one of them accepts
//! (D73) and spreads what it accepts (D64).

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
    // The gauges of the three threads, summed, once every connection is counted.
    let text = metrics_with_open(&t, CONNECTIONS, Duration::from_secs(10)).await;
    assert_eq!(open_by_thread(&text).len(), 3, "{text}");
    // Closed connections leave their thread's gauge.
    drop(open);
    metrics_with_open(&t, 0, Duration::from_secs(10)).await;
    t.server.shutdown().await.unwrap();
}

/// One thread accepts (D73): connections opened one after another stay on it until it has clearly
/// more than another (the slack of `handoff::target`, 4 + 1/16 of its own). When every thread
/// watched the device port, each connection woke them all and landed on whichever won the race for
/// the accept lock (this test failed 6 runs in 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_thread_accepts_and_keeps_connections_within_the_slack() {
    const THREADS: usize = 4;
    let t = start(|c| c.server.connection_threads = THREADS).await;
    let mut open = Vec::new();
    let mut counts = Vec::new();
    for n in 1..=4u64 {
        open.push(t.connect().await);
        // Each connection counted on its thread before the next one connects.
        counts = open_by_thread(&metrics_with_open(&t, n, Duration::from_secs(10)).await);
    }
    assert_eq!(counts, [4, 0, 0, 0], "connections open on each thread");
    t.server.shutdown().await.unwrap();
}

/// A flood of connections puts the acceptor behind (D73): it calls the other thread in, which accepts
/// too, and every connection is served. Four client threads connect as fast as they can, faster than
/// a debug build accepts, so connections wait in the accept queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_calls_the_other_threads_in_to_accept() {
    const CLIENTS: usize = 4;
    const EACH: usize = 500;
    // Both ends of 2,000 connections in this process.
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let t = start(|c| {
        c.server.connection_threads = 2;
        c.server.max_connections_per_ip = 10_000;
        c.server.max_connections = 10_000;
    })
    .await;
    let addr = t.server.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|_| std::net::TcpStream::connect(addr).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let open: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let text = metrics_with_open(&t, open.len() as u64, Duration::from_secs(20)).await;
    let counter = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("alarm_center_{name}_total ")))
            .map(|n| n.parse::<u64>().unwrap())
    };
    assert!(counter("accept_helpers_called") >= Some(1), "{text}");
    assert!(
        counter("connections_accepted_by_helpers") >= Some(1),
        "{text}"
    );
    drop(open);
    t.server.shutdown().await.unwrap();
}

/// `/metrics` once the connection threads' gauges add up to `open`; fails after `within`.
async fn metrics_with_open(t: &TestServer, open: u64, within: Duration) -> String {
    let metrics = format!("http://{}/metrics", t.server.api_addr().unwrap());
    let deadline = Instant::now() + within;
    loop {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        let counts = open_by_thread(&text);
        if counts.iter().sum::<u64>() == open {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "open by thread {counts:?}, awaited {open} in all"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The gauges of `alarm_center_connections_open_by_thread`, in thread order.
fn open_by_thread(metrics: &str) -> Vec<u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("alarm_center_connections_open_by_thread{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// Devices that connect all at once end up spread evenly over the connection threads (D64): the
/// thread that accepts (one, D73; when the threads raced to accept, the race was uneven: 65/35 and
/// 31/69 with 100 devices on two threads) hands new ones over when it has clearly more than another. Every device
/// is served wherever it lands: each sends an alarm and all are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_at_once_are_spread_evenly_over_the_threads() {
    const DEVICES: usize = 200;
    const THREADS: usize = 4;
    let mut t = start(|c| {
        c.server.connection_threads = THREADS;
        // 200 new devices from one address within a minute.
        c.server.max_new_devices_per_ip_per_minute = 0;
    })
    .await;
    let addr = t.server.local_addr();
    let connects = (0..DEVICES).map(|_| tokio::spawn(tokio::net::TcpStream::connect(addr)));
    let mut devices = Vec::new();
    for connect in connects {
        devices.push(connect.await.unwrap().unwrap());
    }
    let text = metrics_with_open(&t, DEVICES as u64, Duration::from_secs(10)).await;
    let counts = open_by_thread(&text);
    let (most, fewest) = (counts.iter().max().unwrap(), counts.iter().min().unwrap());
    // Within the slack of `handoff::target` (4 + 1/16 of the busier thread's) and one decision
    // made on counts that a connection's end had not lowered yet.
    assert!(
        most - fewest <= 4 + most / 16 + 1,
        "connections per thread: {counts:?}"
    );
    for (i, device) in devices.iter_mut().enumerate() {
        let alarm = format!(
            r#"{{"id":9,"method":"client.notifyEventStream","params":{{"SerialNo":"SPREAD-{i}","eventList":[{{"Action":"Start","Code":"VideoMotion","Index":0}}]}}}}"#
        );
        send(device, &alarm_center_proto::encode::dhip(1, 1, &alarm)).await;
    }
    let events = t.events(2 * DEVICES, Duration::from_secs(20)).await;
    let alarms = events.iter().filter(|e| e.event.code == "VideoMotion");
    assert_eq!(alarms.count(), DEVICES);
    t.server.shutdown().await.unwrap();
}
