//! read_capture on the real tcpdump capture of loopback traffic to 127.0.0.1:15002
//! (see tests/fixtures/README.md for how it was made).

use crate::common::*;
use alarm_center_capture::{sniff, InputKind, Timestamp};

const FILES: [&str; 3] = [
    "capture-loopback-15002.pcap",
    "capture-loopback-15002-nano.pcap",
    "capture-loopback-15002.pcapng",
];

fn sent() -> Vec<u8> {
    [
        read_fixture("sample-dvrip69-mask-motion-ch1-ch3.bin"),
        read_fixture("sample-xm-alarmcenter-humandetect.bin"),
    ]
    .concat()
}

#[test]
fn stream_towards_15002_carries_exactly_the_sent_bytes() {
    for name in FILES {
        let file = read_fixture(name);
        let (events, summary) = run(&file, Some(15002)).unwrap();
        assert_eq!(bytes_of(&events, 1), sent(), "{name}");
        assert_eq!(summary.streams, 1, "{name}");
        assert_eq!((summary.packets, summary.tcp_segments), (12, 12), "{name}");
        assert_eq!((summary.skipped_packets, summary.gaps), (0, 0), "{name}");
        assert_eq!(
            (summary.retransmitted_bytes, summary.truncated),
            (0, false),
            "{name}"
        );
        // Sent in three chunks with pauses: 20 + 116 + 113 bytes.
        let sizes: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                Ev::Data { data, .. } => Some(data.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [20, 116, 113], "{name}");
        assert_eq!(events.last(), Some(&Ev::End { id: 1 }), "{name}");
        let Ev::Data { src, dst, .. } = &events[0] else {
            panic!("{name}")
        };
        assert_eq!(dst.to_string(), "127.0.0.1:15002");
        assert!(src.ip().is_loopback() && src.port() != 15002);
    }
}

#[test]
fn both_directions_without_port_filter() {
    let (events, summary) = run(&read_fixture(FILES[0]), None).unwrap();
    assert_eq!(summary.streams, 2);
    assert_eq!(bytes_of(&events, 1), sent());
    assert!(bytes_of(&events, 2).is_empty(), "the listener sent nothing");
    let ends = events
        .iter()
        .filter(|e| matches!(e, Ev::End { .. }))
        .count();
    assert_eq!(ends, 2);
}

#[test]
fn timestamps_agree_across_formats() {
    let ts = |name: &str| -> Vec<Timestamp> {
        run(&read_fixture(name), Some(15002))
            .unwrap()
            .0
            .iter()
            .filter_map(|e| match e {
                Ev::Data { ts, .. } => Some(*ts),
                _ => None,
            })
            .collect()
    };
    let micro = ts(FILES[0]);
    let nano = ts(FILES[1]);
    assert_eq!(
        nano,
        ts(FILES[2]),
        "pcapng was converted from the nanosecond pcap"
    );
    for (m, n) in micro.iter().zip(&nano) {
        let rendered = m.to_rfc3339();
        assert_eq!(
            rendered.len(),
            "2025-01-01T00:00:00.000000Z".len(),
            "{rendered}"
        );
        // Two tcpdump processes captured the same packets: same instant to within 1 ms.
        let as_ns = |t: &Timestamp| i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos);
        assert!(
            (as_ns(m) - as_ns(n)).abs() < 1_000_000,
            "{rendered} vs {}",
            n.to_rfc3339()
        );
    }
}

#[test]
fn fixtures_sniff_as_captures() {
    assert_eq!(sniff(&read_fixture(FILES[0])), InputKind::Pcap);
    assert_eq!(sniff(&read_fixture(FILES[1])), InputKind::Pcap);
    assert_eq!(sniff(&read_fixture(FILES[2])), InputKind::Pcapng);
}
