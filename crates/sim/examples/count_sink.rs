//! The reference ceiling of `scripts/compare.sh`: a TCP server that accepts device connections, cuts
//! what they send into frames with the same `Decoder` alarm-center uses, counts them, and does nothing
//! else — no session, no store, no answer. What alarm-center does per event beyond this is its own
//! cost.
//!
//! `cargo run --release -p alarm-center-sim --example count_sink -- 127.0.0.1:25003 [seconds [ms]]`
//! prints one line per second, or every `ms` milliseconds (`frames=… bytes=… connections=…`), and a
//! total when it stops (after `seconds`, default 60, or at Ctrl-C).
//!
//! Its accept queue is as long as alarm-center's default (`server.listen-backlog`, 4096), and a failed
//! accept (out of file descriptors) is counted and retried, not the end of accepting: devices that
//! open a connection per alarm (`conn_per_alarm`) get the same treatment from both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alarm_center_proto::{Decoder, DecoderConfig};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

#[derive(Default)]
struct Counts {
    frames: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    accept_errors: AtomicU64,
}

/// alarm-center's default `server.listen-backlog`.
const BACKLOG: u32 = 4096;

fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = match addr {
        std::net::SocketAddr::V4(_) => TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:25003".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let every_ms: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let listener = bind(&listen)?;
    eprintln!("count_sink listening on {listen} for {seconds} s");
    let counts = Arc::new(Counts::default());
    let accept = {
        let counts = counts.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        counts.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(count(stream, counts.clone()));
                    }
                    Err(_) => {
                        // Out of file descriptors and similar, as alarm-center does: wait, retry.
                        counts.accept_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms.max(1)));
    tick.tick().await;
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let frames = counts.frames.load(Ordering::Relaxed);
        println!(
            "frames_per_s={} frames={frames} bytes={} connections={} accept_errors={}",
            (frames - last) * 1000 / every_ms.max(1),
            counts.bytes.load(Ordering::Relaxed),
            counts.connections.load(Ordering::Relaxed),
            counts.accept_errors.load(Ordering::Relaxed)
        );
        last = frames;
    }
    accept.abort();
    println!(
        "total frames={} bytes={} connections={} seconds={:.1}",
        counts.frames.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed),
        counts.connections.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads one connection to its end, counting its frames.
async fn count(mut stream: TcpStream, counts: Arc<Counts>) {
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let frames = decoder.feed(&buf[..n]).count() as u64;
        counts.frames.fetch_add(frames, Ordering::Relaxed);
    }
}
