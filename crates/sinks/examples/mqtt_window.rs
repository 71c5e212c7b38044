//! The ceiling of QoS 1 publishing to the local broker (127.0.0.1:1883), without the sink: N publishes
//! of 300 bytes with at most W unacknowledged, written one `write` per publish (as rumqttc 0.25's event
//! loop does) or as many as the window allows per `write` ("batched"). Packets are encoded by rumqttc's
//! own `mqttbytes`. Tells how much a different client event loop could gain (docs/benchmarks.md §12).
//!
//! `cargo run --release -p alarm-center-sinks --example mqtt_window -- [per-packet|batched] [N] [W]`
//! (defaults per-packet, 200000, 100).
use std::sync::Arc;
use std::time::Instant;

use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::bytes::BytesMut;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batched = args.get(1).map(|a| a == "batched").unwrap_or(false);
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let window: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut stream = TcpStream::connect("127.0.0.1:1883").await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = BytesMut::new();
    let mut connect = Connect::new(format!("exp-{}", std::process::id()));
    connect.keep_alive = 60;
    connect.clean_session = true;
    connect.write(&mut buf).unwrap();
    stream.write_all(&buf).await.unwrap();
    buf.clear();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    loop {
        stream.read_buf(&mut rbuf).await.unwrap();
        if let Ok(Packet::ConnAck(_)) = Packet::read(&mut rbuf, 1 << 20) {
            break;
        }
    }
    let (mut rd, mut wr) = stream.into_split();
    let permits = Arc::new(Semaphore::new(window));
    let started = Instant::now();
    let reader = {
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut acked = 0usize;
            while acked < n {
                rd.read_buf(&mut rbuf).await.unwrap();
                loop {
                    match Packet::read(&mut rbuf, 1 << 20) {
                        Ok(Packet::PubAck(_)) => {
                            acked += 1;
                            permits.add_permits(1);
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        })
    };
    let payload = vec![b'x'; 300];
    let mut pkid: u16 = 0;
    let mut sent = 0usize;
    let mut writes = 0usize;
    while sent < n {
        permits.acquire().await.unwrap().forget();
        let mut take = 1;
        if batched {
            while take < n - sent {
                match permits.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        take += 1
                    }
                    Err(_) => break,
                }
            }
        }
        for _ in 0..take {
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            let mut p = Publish::new("exp/window", QoS::AtLeastOnce, payload.clone());
            p.pkid = pkid;
            p.write(&mut buf).unwrap();
        }
        wr.write_all(&buf).await.unwrap();
        buf.clear();
        writes += 1;
        sent += take;
    }
    reader.await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} window {window}: {n} publishes acknowledged in {secs:.2} s = {:.0}/s ({writes} writes)",
        if batched { "batched" } else { "per-packet" },
        n as f64 / secs
    );
}
