//! read_capture on synthetic pcap / pcapng files built in the test.

use crate::common::*;
use alarm_center_capture::pcap::Summary;

const DEV: &str = "10.1.1.10:40000";
const CENTER: &str = "10.1.1.2:15002";
/// Wraps a raw IP packet into a link-layer frame.
type Wrap = fn(&[u8]) -> Vec<u8>;

const T0: u32 = 1_706_389_858; // 2024-01-27T21:10:58Z

/// Writes raw-IP packets (linktype 101) into a little-endian microsecond pcap, 1 ms apart.
fn raw_pcap(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(101, false, false);
    for (i, p) in packets.iter().enumerate() {
        w.packet(T0, i as u32 * 1000, p);
    }
    w.finish()
}

fn data(id: u32, events: &[Ev]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Data { id: i, data, .. } if *i == id => Some(data.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn syn_data_fin_over_ethernet() {
    let pkts = [
        tcp_ip(DEV, CENTER, 1000, "S", b""),
        tcp_ip(CENTER, DEV, 5000, "SA", b""),
        tcp_ip(DEV, CENTER, 1001, "A", b""),
        tcp_ip(DEV, CENTER, 1001, "A", b"hello "),
        tcp_ip(DEV, CENTER, 1007, "A", b"world"),
        tcp_ip(CENTER, DEV, 5001, "A", b"ok"),
        tcp_ip(DEV, CENTER, 1012, "FA", b""),
        tcp_ip(CENTER, DEV, 5003, "FA", b""),
    ];
    let mut w = PcapWriter::new(1, false, false);
    for (i, p) in pkts.iter().enumerate() {
        w.packet(T0, 123_456 + i as u32, &ethernet(p));
    }
    let (events, summary) = run(&w.finish(), None).unwrap();
    assert_eq!(data(1, &events), [b"hello ".to_vec(), b"world".to_vec()]);
    assert_eq!(data(2, &events), [b"ok".to_vec()]);
    let ends: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Ev::End { .. }))
        .collect();
    assert_eq!(ends, [&Ev::End { id: 1 }, &Ev::End { id: 2 }]);
    let Ev::Data { src, dst, ts, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (src.to_string(), dst.to_string()),
        (DEV.to_string(), CENTER.to_string())
    );
    assert_eq!(ts.to_rfc3339(), "2024-01-27T21:10:58.123459Z");
    let expected = Summary {
        packets: 8,
        tcp_segments: 8,
        skipped_packets: 0,
        streams: 2,
        retransmitted_bytes: 0,
        gaps: 0,
        truncated: false,
    };
    assert_eq!(summary, expected);
}

#[test]
fn out_of_order_is_delivered_in_order() {
    let text = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let chunk = |i: usize| {
        tcp_ip(
            DEV,
            CENTER,
            101 + 7 * i as u32,
            "A",
            &text[7 * i..(7 * i + 7).min(36)],
        )
    };
    let mut pkts = vec![tcp_ip(DEV, CENTER, 100, "S", b"")];
    pkts.extend([0, 3, 2, 5, 4, 1].map(chunk));
    let (events, summary) = run(&raw_pcap(&pkts), Some(15002)).unwrap();
    assert_eq!(bytes_of(&events, 1), text);
    assert_eq!(data(1, &events).len(), 6);
    assert_eq!((summary.gaps, summary.retransmitted_bytes), (0, 0));
}

#[test]
fn retransmission_and_overlap_are_delivered_once() {
    let pkts = [
        tcp_ip(DEV, CENTER, 0, "S", b""),
        tcp_ip(DEV, CENTER, 1, "A", b"abcdef"),
        tcp_ip(DEV, CENTER, 1, "A", b"abcdef"), // full retransmission: 6
        tcp_ip(DEV, CENTER, 4, "A", b"defghi"), // overlaps 3
        tcp_ip(DEV, CENTER, 13, "A", b"mnop"),  // out of order
        tcp_ip(DEV, CENTER, 12, "A", b"lmn"),   // fills, overlaps 2 of the buffered one
        tcp_ip(DEV, CENTER, 10, "A", b"jk"),
        tcp_ip(DEV, CENTER, 1, "A", b"abcdefghijklmnop"), // everything again: 16
    ];
    let (events, summary) = run(&raw_pcap(&pkts), None).unwrap();
    assert_eq!(bytes_of(&events, 1), b"abcdefghijklmnop");
    assert_eq!(summary.retransmitted_bytes, 6 + 3 + 2 + 16);
    assert_eq!(summary.gaps, 0);
}

#[test]
fn sequence_number_wraparound() {
    let isn = u32::MAX - 10;
    let text: Vec<u8> = (0u8..40).collect();
    let seg = |i: usize| {
        tcp_ip(
            DEV,
            CENTER,
            isn.wrapping_add(1 + 8 * i as u32),
            "A",
            &text[8 * i..8 * i + 8],
        )
    };
    let mut pkts = vec![tcp_ip(DEV, CENTER, isn, "S", b"")];
    pkts.extend([0, 2, 1, 4, 3].map(seg));
    let (events, summary) = run(&raw_pcap(&pkts), None).unwrap();
    assert_eq!(bytes_of(&events, 1), text);
    assert_eq!(summary.gaps, 0);
}

#[test]
fn hole_becomes_gap_and_reading_continues() {
    let pkts = [
        tcp_ip(DEV, CENTER, 0, "S", b""),
        tcp_ip(DEV, CENTER, 1, "A", b"0123456789"),
        // bytes 11..16 ("ABCDE") never captured
        tcp_ip(DEV, CENTER, 16, "A", b"fghij"),
        tcp_ip(DEV, CENTER, 21, "FA", b"klm"),
    ];
    let (events, summary) = run(&raw_pcap(&pkts), None).unwrap();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match e {
            Ev::Data { data, .. } => String::from_utf8(data.clone()).unwrap(),
            Ev::Gap { missing, .. } => format!("gap {missing}"),
            Ev::End { .. } => "end".into(),
        })
        .collect();
    assert_eq!(kinds, ["0123456789", "gap 5", "fghij", "klm", "end"]);
    assert_eq!(summary.gaps, 1);
}

#[test]
fn hole_filled_after_fin_gives_no_gap() {
    let pkts = [
        tcp_ip(DEV, CENTER, 0, "S", b""),
        tcp_ip(DEV, CENTER, 4, "FA", b"def"),
        tcp_ip(DEV, CENTER, 1, "A", b"abc"),
    ];
    let (events, summary) = run(&raw_pcap(&pkts), None).unwrap();
    assert_eq!(bytes_of(&events, 1), b"abcdef");
    assert_eq!(events.last(), Some(&Ev::End { id: 1 }));
    assert_eq!(summary.gaps, 0);
}

#[test]
fn port_filter_keeps_only_directions_towards_the_port() {
    let other_dev = "10.1.1.11:41000";
    let other_srv = "10.1.1.2:9999";
    let pkts = [
        tcp_ip(DEV, CENTER, 10, "A", b"dvrip"),
        tcp_ip(other_dev, other_srv, 10, "A", b"other"),
        tcp_ip(CENTER, DEV, 90, "A", b"reply"),
        tcp_ip(other_srv, other_dev, 90, "A", b"reply2"),
    ];
    let file = raw_pcap(&pkts);
    let (events, summary) = run(&file, Some(15002)).unwrap();
    assert_eq!(summary.streams, 1);
    assert_eq!(summary.tcp_segments, 4);
    assert_eq!(bytes_of(&events, 1), b"dvrip");
    assert!(events.iter().all(|e| e.id() == 1));

    let (events, summary) = run(&file, None).unwrap();
    assert_eq!(summary.streams, 4);
    let all: Vec<_> = (1..=4).map(|id| bytes_of(&events, id)).collect();
    assert_eq!(all, [&b"dvrip"[..], b"other", b"reply", b"reply2"]);
}

#[test]
fn ipv6_raw_and_ethernet() {
    let (dev, center) = ("[2001:db8::10]:40000", "[2001:db8::2]:15002");
    let pkts = [
        tcp_ip(dev, center, 7, "S", b""),
        tcp_ip(dev, center, 8, "A", b"v6 "),
        tcp_ip(dev, center, 11, "A", b"data"),
    ];
    for (linktype, wrap) in [(229u32, (|p: &[u8]| p.to_vec()) as Wrap), (1, ethernet)] {
        let mut w = PcapWriter::new(linktype, false, false);
        for p in &pkts {
            w.packet(T0, 0, &wrap(p));
        }
        let (events, summary) = run(&w.finish(), Some(15002)).unwrap();
        assert_eq!(bytes_of(&events, 1), b"v6 data", "linktype {linktype}");
        let Ev::Data { src, dst, .. } = &events[0] else {
            panic!()
        };
        assert_eq!(
            (src.to_string(), dst.to_string()),
            (dev.to_string(), center.to_string())
        );
        assert_eq!(summary.skipped_packets, 0);
    }
}

#[test]
fn linux_sll_sll2_null_and_vlan() {
    let wraps: [(u32, Wrap); 5] = [
        (113, sll),
        (276, sll2),
        (0, null),
        (1, ethernet_vlan),
        (228, |p| p.to_vec()),
    ];
    for (linktype, wrap) in wraps {
        for (dev, center) in [(DEV, CENTER), ("[fe80::1]:5000", "[fe80::2]:15002")] {
            let mut w = PcapWriter::new(linktype, false, false);
            w.packet(T0, 0, &wrap(&tcp_ip(dev, center, 1, "A", b"cooked")));
            w.packet(T0, 1, &wrap(&tcp_ip(dev, center, 7, "A", b" bytes")));
            let (events, summary) = run(&w.finish(), Some(15002)).unwrap();
            if linktype == 228 && dev.starts_with('[') {
                // LINKTYPE_IPV4 carrying IPv6 is still decoded by the IP version nibble.
                assert_eq!(summary.tcp_segments, 2);
            }
            assert_eq!(
                bytes_of(&events, 1),
                b"cooked bytes",
                "linktype {linktype} {dev}"
            );
        }
    }
}

#[test]
fn pcap_byte_orders_and_nanosecond_timestamps() {
    for be in [false, true] {
        for nano in [false, true] {
            let mut w = PcapWriter::new(101, be, nano);
            let frac = if nano { 123_456_789 } else { 123_456 };
            w.packet(T0, frac, &tcp_ip(DEV, CENTER, 1, "A", b"x"));
            let (events, _) = run(&w.finish(), None).unwrap();
            let Ev::Data { ts, .. } = &events[0] else {
                panic!()
            };
            let expected = if nano {
                "2024-01-27T21:10:58.123456789Z"
            } else {
                "2024-01-27T21:10:58.123456Z"
            };
            assert_eq!(ts.to_rfc3339(), expected, "be={be} nano={nano}");
        }
    }
}

#[test]
fn pcapng_interfaces_sections_and_resolutions() {
    let dev2 = "10.1.1.20:42000";
    let mut le = PcapngWriter::new(false);
    le.interface(1, None, None); // Ethernet, microseconds
    le.interface(276, Some(9), Some(100)); // SLL2, nanoseconds, +100 s
    le.block(0x0bad, &[1, 2, 3, 4]); // unknown block: ignored
    let t0_us = u64::from(T0) * 1_000_000;
    le.epb(
        0,
        t0_us + 5,
        &ethernet(&tcp_ip(DEV, CENTER, 1, "A", b"if0 ")),
    );
    let t0_ns = u64::from(T0) * 1_000_000_000;
    le.epb(
        1,
        t0_ns + 123_456_789,
        &sll2(&tcp_ip(dev2, CENTER, 1, "A", b"if1")),
    );
    le.epb(
        7,
        t0_us,
        &ethernet(&tcp_ip(DEV, CENTER, 5, "A", b"bad interface")),
    );
    let mut be = PcapngWriter::new(true);
    be.interface(101, Some(0x80 | 10), None); // raw IP, 1/1024 s
    be.epb(
        0,
        u64::from(T0) * 1024 + 256,
        &tcp_ip(DEV, CENTER, 5, "A", b"be "),
    );
    be.spb(&tcp_ip(DEV, CENTER, 8, "A", b"spb"));
    let file = [le.finish(), be.finish()].concat();

    let (events, summary) = run(&file, None).unwrap();
    assert_eq!(bytes_of(&events, 1), b"if0 be spb");
    assert_eq!(bytes_of(&events, 2), b"if1");
    let ts: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Ev::Data { ts, .. } => Some(ts.to_rfc3339()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ts,
        [
            "2024-01-27T21:10:58.000005Z",
            "2024-01-27T21:12:38.123456789Z",
            "2024-01-27T21:10:58.250000Z",
            "2024-01-27T21:10:58.250000Z",
        ]
    );
    assert_eq!(
        (summary.packets, summary.skipped_packets, summary.streams),
        (5, 1, 2)
    );
}

#[test]
fn skipped_packets_and_snaplen_cut() {
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 1, 1, 10], [10, 1, 1, 2], 64)
        .udp(5000, 15002)
        .write(&mut udp, b"udp")
        .unwrap();
    let cut = ethernet(&tcp_ip(DEV, CENTER, 4, "A", b"LOST-IN-SNAPLEN"));
    let mut w = PcapWriter::new(1, false, false);
    w.packet(T0, 0, &ethernet(&tcp_ip(DEV, CENTER, 0, "S", b"")));
    w.packet(T0, 1, &ethernet(&tcp_ip(DEV, CENTER, 1, "A", b"abc")));
    w.packet(T0, 2, &ethernet(&udp));
    w.packet(T0, 3, &[0xff; 7]); // shorter than an Ethernet header
    w.packet(T0, 4, &[0u8; 60]); // Ethernet type 0
    w.packet_cut(T0, 5, &cut, cut.len() - 5);
    w.packet(T0, 6, &ethernet(&tcp_ip(DEV, CENTER, 19, "A", b"tail")));
    let (events, summary) = run(&w.finish(), None).unwrap();
    assert_eq!(summary.skipped_packets, 4);
    assert_eq!(summary.tcp_segments, 3);
    assert_eq!(events[1], Ev::Gap { id: 1, missing: 15 });
    assert_eq!(bytes_of(&events, 1), b"abctail");
    assert!(!summary.truncated);
}

#[test]
fn truncated_final_record_keeps_what_was_read() {
    let pkts = [
        tcp_ip(DEV, CENTER, 0, "S", b""),
        tcp_ip(DEV, CENTER, 1, "A", b"first"),
        tcp_ip(DEV, CENTER, 6, "A", b"second"),
    ];
    let file = raw_pcap(&pkts);
    let last_len = 16 + pkts[2].len();
    for cut in [1, 10, 16, 20, last_len - 1] {
        let (events, summary) = run(&file[..file.len() - cut], None).unwrap();
        assert_eq!(bytes_of(&events, 1), b"first", "cut {cut}");
        assert_eq!(events.last(), Some(&Ev::End { id: 1 }));
        assert!(summary.truncated);
        assert_eq!((summary.packets, summary.skipped_packets), (3, 1));
    }
    let mut ng = PcapngWriter::new(false);
    ng.interface(101, None, None);
    for p in &pkts {
        ng.epb(0, 0, p);
    }
    let ng = ng.finish();
    let (events, summary) = run(&ng[..ng.len() - 3], None).unwrap();
    assert_eq!(bytes_of(&events, 1), b"first");
    assert!(summary.truncated);
}

#[test]
fn unreadable_input_is_a_clear_error() {
    let msg = |b: &[u8]| run(b, None).unwrap_err().to_string();
    assert_eq!(msg(b""), "empty input: not a pcap or pcapng capture");
    assert_eq!(
        msg(b"GET / HTTP/1.1\r\n"),
        "not a pcap or pcapng capture (starts with 47455420)"
    );
    assert_eq!(
        msg(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]),
        "bad capture header: pcap file header is truncated"
    );
    let hex = read_fixture("sample-dvrip69-mask-motion-ch1-ch3.hex");
    assert!(msg(&hex).starts_with("not a pcap or pcapng capture"));
}
