//! Never panics, bounded memory, and reassembly invariants under random input.

use crate::common::*;
use alarm_center_capture::{parse_hex, pcap::read_capture, sniff};
use proptest::prelude::*;

const DEV: &str = "10.9.9.9:40000";
const CENTER: &str = "10.9.9.1:15002";

/// Reads a capture, discarding events; must never panic.
fn read_any(bytes: &[u8]) {
    if let Ok(summary) = read_capture(bytes, None, |ev| {
        if let alarm_center_capture::CaptureEvent::Data { data, .. } = ev {
            assert!(!data.is_empty());
        }
    }) {
        assert!(summary.skipped_packets <= summary.packets);
        assert!(summary.tcp_segments <= summary.packets);
    }
}

fn pcap_header(be: bool, nano: bool, linktype: u32) -> Vec<u8> {
    PcapWriter::new(linktype, be, nano).finish()
}

fn rich_pcapng() -> Vec<u8> {
    let mut w = PcapngWriter::new(false);
    w.interface(1, None, Some(-5));
    w.interface(276, Some(9), None);
    w.epb(0, 1, &ethernet(&tcp_ip(DEV, CENTER, 0, "S", b"")));
    w.epb(0, 2, &ethernet(&tcp_ip(DEV, CENTER, 5, "A", b"later")));
    w.epb(1, 3, &sll2(&tcp_ip(DEV, CENTER, 1, "A", b"abcd")));
    w.spb(&ethernet(&tcp_ip(CENTER, DEV, 9, "R", b"")));
    w.finish()
}

#[test]
fn every_truncation_and_byte_corruption_of_real_and_synthetic_captures() {
    let files = [
        read_fixture("capture-loopback-15002.pcap"),
        read_fixture("capture-loopback-15002-nano.pcap"),
        read_fixture("capture-loopback-15002.pcapng"),
        rich_pcapng(),
    ];
    for file in &files {
        for cut in 0..=file.len() {
            read_any(&file[..cut]);
        }
        let mut copy = file.clone();
        for i in 0..copy.len() {
            for v in [0x00, 0xff, copy[i] ^ 0x80, copy[i].wrapping_add(1)] {
                let old = std::mem::replace(&mut copy[i], v);
                read_any(&copy);
                copy[i] = old;
            }
        }
    }
}

#[test]
fn huge_length_fields_do_not_allocate_or_fail() {
    let mut w = PcapWriter::new(1, false, false);
    w.packet(1, 0, &ethernet(&tcp_ip(DEV, CENTER, 1, "A", b"ok")));
    let mut file = w.finish();
    // A record header announcing a 4 GiB packet.
    file.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    file.extend_from_slice(&[0; 64]);
    let (events, summary) = run(&file, None).unwrap();
    assert_eq!(bytes_of(&events, 1), b"ok");
    assert!(summary.truncated);

    let mut ng = PcapngWriter::new(false);
    ng.interface(1, None, None);
    let mut ng = ng.finish();
    ng.extend_from_slice(&[6, 0, 0, 0, 0xfc, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
    let (_, summary) = run(&ng, None).unwrap();
    assert!(summary.truncated);
}

/// Reads from a reader that returns at most 3 bytes per call, like a slow pipe.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(3).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn short_reads_give_the_same_result() {
    for name in [
        "capture-loopback-15002.pcap",
        "capture-loopback-15002.pcapng",
    ] {
        let file = read_fixture(name);
        let mut out = Vec::new();
        let summary = read_capture(Trickle(&file), Some(15002), |ev| {
            if let alarm_center_capture::CaptureEvent::Data { data, .. } = ev {
                out.extend_from_slice(data);
            }
        })
        .unwrap();
        let (events, expected) = run(&file, Some(15002)).unwrap();
        assert_eq!(out, bytes_of(&events, 1), "{name}");
        assert_eq!(summary, expected, "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        kind in 0u8..5,
        linktype in prop::sample::select(vec![0u32, 1, 101, 113, 228, 229, 276, 9999]),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut file = match kind {
            0 => pcap_header(false, false, linktype),
            1 => pcap_header(true, true, linktype),
            2 => PcapngWriter::new(false).finish(),
            3 => PcapngWriter::new(true).finish(),
            _ => Vec::new(),
        };
        file.extend_from_slice(&body);
        read_any(&file);
        let _ = sniff(&file);
    }

    #[test]
    fn random_frames_in_valid_records_never_panic(
        linktype in prop::sample::select(vec![0u32, 1, 101, 113, 228, 229, 276]),
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20),
    ) {
        let mut w = PcapWriter::new(linktype, false, false);
        for f in &frames {
            w.packet(0, 0, f);
        }
        read_any(&w.finish());
    }

    /// Random segmentation, order, duplication and loss of a known byte stream: every Data
    /// event must hold the right bytes at the right offset (offset advanced by gaps too).
    #[test]
    fn reassembly_reproduces_the_stream(
        isn in any::<u32>(),
        len in 1usize..600,
        cuts in prop::collection::vec((0usize..600, 1usize..80), 1..40),
        cover in any::<bool>(),
        order in any::<u64>(),
    ) {
        let stream: Vec<u8> = (0..len).map(|i| (i * 7 + i / 256) as u8).collect();
        let mut segs: Vec<(usize, usize)> = cuts
            .into_iter()
            .map(|(s, l)| (s % len, l.min(len - s % len)))
            .collect();
        if cover {
            segs.extend((0..len).step_by(50).map(|s| (s, 50.min(len - s))));
        }
        // Deterministic shuffle from `order`.
        let mut x = order | 1;
        for i in (1..segs.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            segs.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut pkts = vec![tcp_ip(DEV, CENTER, isn, "S", b"")];
        for (s, l) in &segs {
            let seq = isn.wrapping_add(1).wrapping_add(*s as u32);
            pkts.push(tcp_ip(DEV, CENTER, seq, "A", &stream[*s..s + l]));
        }
        let mut w = PcapWriter::new(101, false, false);
        for p in &pkts {
            w.packet(0, 0, p);
        }
        let (events, summary) = run(&w.finish(), Some(15002)).unwrap();
        let mut pos = 0usize;
        for e in &events {
            match e {
                Ev::Data { data, .. } => {
                    prop_assert_eq!(data.as_slice(), &stream[pos..pos + data.len()]);
                    pos += data.len();
                }
                Ev::Gap { missing, .. } => pos += *missing as usize,
                Ev::End { .. } => {}
            }
        }
        let max_end = segs.iter().map(|(s, l)| s + l).max().unwrap_or(0);
        prop_assert_eq!(pos, max_end);
        let sent: usize = segs.iter().map(|(_, l)| l).sum();
        let delivered: usize = events
            .iter()
            .map(|e| if let Ev::Data { data, .. } = e { data.len() } else { 0 })
            .sum();
        prop_assert_eq!(summary.retransmitted_bytes as usize, sent - delivered);
        if cover {
            prop_assert_eq!(summary.gaps, 0);
            prop_assert_eq!(pos, len);
        }
    }

    #[test]
    fn hex_parser_never_panics(text in "[0-9a-fA-Fx:|* #\\\\,\n\t.g-]{0,400}") {
        let _ = parse_hex(&text);
        let _ = sniff(text.as_bytes());
    }

    #[test]
    fn mutated_hex_fixtures_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..6),
    ) {
        let names = [
            "hexdump/input.hexdump-C",
            "hexdump/input.xxd",
            "hexdump/loopback-15002.tshark-x",
            "sample-dvrip-json-and-heartbeat.hex",
        ];
        let mut chars: Vec<char> = String::from_utf8(read_fixture(names[which])).unwrap().chars().collect();
        for (idx, c) in edits {
            let i = idx.index(chars.len());
            chars[i] = c;
        }
        let text: String = chars.into_iter().collect();
        if let Err(e) = parse_hex(&text) {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }
}
