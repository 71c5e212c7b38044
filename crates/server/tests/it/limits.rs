//! Bad input and hostile peers: each refused or closed with a counter, while other devices keep working.

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_server::Stats;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_lengths_are_kept_and_other_devices_work() {
    let mut t = start(|c| c.server.max_frame = 1024).await;
    let mut bad = t.connect().await;
    // Random-looking garbage, then a DVRIP header declaring 1 MiB, then a valid frame.
    let garbage: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x01)
        .collect();
    send(&mut bad, &garbage).await;
    let mut huge = encode::dvrip_frame(0xF6, 0, [0; 24], &[]);
    huge[4..8].copy_from_slice(&(1u32 << 20).to_le_bytes());
    send(&mut bad, &huge).await;
    send(&mut bad, &vec![b'x'; 1 << 20]).await;
    send(
        &mut bad,
        &encode::bare_json(r#"{"Code":"VideoLoss","Action":"Start","Index":0,"SerialNo":"BAD-1"}"#),
    )
    .await;
    let mut good = t.connect().await;
    send(
        &mut good,
        &encode::xm_alarm(
            "GOOD-1",
            [10, 0, 0, 9].into(),
            2,
            "HumanDetect",
            true,
            "2024-01-01 00:00:00",
        ),
    )
    .await;
    let mut events = t
        .until(WAIT, |e| {
            e.event.device == "BAD-1" && e.event.code == "VideoLoss"
        })
        .await;
    if !events
        .iter()
        .any(|e| e.event.device == "GOOD-1" && e.event.code == "HumanDetect")
    {
        events.extend(
            t.until(WAIT, |e| {
                e.event.device == "GOOD-1" && e.event.code == "HumanDetect"
            })
            .await,
        );
    }
    let stats = t.server.stats();
    assert!(Stats::get(&stats.frames_junk) >= 1);
    assert!(
        Stats::get(&stats.frames_error) >= 2,
        "the oversized frame counts as an error"
    );
    t.server.shutdown().await.unwrap();
    let db = alarm_center_store::Db::open_read_only(t.dir.path()).unwrap();
    assert!(
        db.frame_count().unwrap() >= 3,
        "junk and the truncated oversized frame are archived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_byte_per_interval_sender_is_closed_and_others_keep_working() {
    let mut t = start(|c| c.server.frame_timeout = Duration::from_millis(800)).await;
    let mut slow = t.connect().await;
    let frame = encode::dvrip_mask(2, 0, 1);
    let slow_task = tokio::spawn(async move {
        for byte in &frame {
            if tokio::io::AsyncWriteExt::write_all(&mut slow, std::slice::from_ref(byte))
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_by_server(&mut slow, WAIT).await
    });
    let mut good = t.connect().await;
    for i in 0..5 {
        send(
            &mut good,
            &encode::dhip(
                1,
                i,
                &format!(
                    r#"{{"Code":"AlarmLocal","Action":"Pulse","Index":{i},"SerialNo":"OK-2"}}"#
                ),
            ),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        slow_task.await.unwrap(),
        "the slow sender was not disconnected"
    );
    let events = t.events(6, WAIT).await;
    assert_eq!(
        events.iter().filter(|e| e.event.device == "OK-2").count(),
        6,
        "{:?}",
        summary(&events)
    );
    assert_eq!(t.server.stats().closed("slow_sender"), 1);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_from_one_address_are_refused_past_the_limit() {
    let mut t = start(|c| {
        c.server.max_connections_per_ip = 100;
        c.server.idle_timeout = Duration::from_secs(2);
    })
    .await;
    // Client and server sockets live in this one process: raise the soft descriptor limit to the hard one.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let addr = t.server.local_addr();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    // Past the limit the server closes at once; the first 100 stay open until the idle timeout.
    let mut closed_now = 0;
    for s in idle.iter_mut().skip(100).take(200) {
        if closed_by_server(s, Duration::from_secs(2)).await {
            closed_now += 1;
        }
    }
    assert_eq!(closed_now, 200);
    let stats = t.server.stats();
    let deadline = tokio::time::Instant::now() + WAIT;
    while Stats::get(&stats.refused_per_ip_limit) < 1900 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(Stats::get(&stats.refused_per_ip_limit), 1900);
    // A device from another address still gets through.
    let mut other = tokio::net::TcpStream::connect(addr).await.unwrap();
    // 127.0.0.1 is full; the kernel routes 127.0.0.2 on loopback too.
    drop(other);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    other = socket.connect(addr).await.unwrap();
    send(&mut other, &encode::dvrip_mask(2, 0, 1)).await;
    let events = t.events(2, WAIT).await;
    assert_eq!(events[1].event.device, "addr-127.0.0.2");
    // The idle ones are closed by the idle timeout.
    assert!(closed_by_server(&mut idle[0], Duration::from_secs(5)).await);
    assert!(t.server.stats().closed("idle") >= 1);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_devices_can_be_refused() {
    let mut t = start(|c| {
        c.server.allow_unknown_devices = false;
        c.devices.push(alarm_center_server::config::DeviceConfig {
            id: "front".into(),
            serial: Some("KNOWN-1".into()),
            ..Default::default()
        });
    })
    .await;
    let mut stranger = t.connect().await;
    send(
        &mut stranger,
        &encode::bare_json(
            r#"{"Code":"VideoMotion","Action":"Start","Index":0,"SerialNo":"STRANGER"}"#,
        ),
    )
    .await;
    let mut known = t.connect().await;
    send(
        &mut known,
        &encode::bare_json(
            r#"{"Code":"VideoMotion","Action":"Start","Index":0,"SerialNo":"known-1"}"#,
        ),
    )
    .await;
    let events = t.events(2, WAIT).await;
    assert_eq!(
        summary(&events),
        [
            "front DeviceOnline pulse None",
            "front VideoMotion start Some(1)"
        ]
    );
    assert!(
        closed_by_server(&mut stranger, WAIT).await,
        "the unknown device stays connected"
    );
    assert_eq!(t.server.stats().closed("unknown_device"), 1);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_unknown_devices_refused_padding_or_silence_cannot_hold_a_connection() {
    let t = start(|c| {
        c.server.allow_unknown_devices = false;
        c.server.frame_timeout = Duration::from_millis(500);
    })
    .await;
    // Padding (NUL bytes, newlines) decodes to no frame at all; it used to keep the connection forever.
    let mut padding = t.connect().await;
    let mut silent = t.connect().await;
    let trickle = async {
        for _ in 0..40 {
            if tokio::io::AsyncWriteExt::write_all(&mut padding, b"\0\r\n")
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let (padding_closed, silent_closed) =
        tokio::join!(trickle, closed_by_server(&mut silent, WAIT));
    assert!(
        padding_closed || closed_by_server(&mut padding, Duration::from_millis(100)).await,
        "the padding-only connection stays"
    );
    assert!(silent_closed, "the silent connection stays");
    assert_eq!(t.server.stats().closed("unknown_device"), 2);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_port_queues_a_burst_of_connections_before_they_are_accepted() {
    // Nobody accepts: every connection waits in the kernel's queue. A short queue (std's 128,
    // mio's 1024) makes the excess hang in SYN retries, as a burst of XM cameras did.
    let listener = alarm_center_server::bind_devices("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for i in 0..2000 {
        let stream =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await
                .unwrap_or_else(|_| {
                    panic!("connection {i} not queued: the accept queue is too short")
                })
                .unwrap();
        held.push(stream);
    }
    drop(listener);
}
