//! Decode + classify + extract throughput per variant: a stream of frames is fed in 4 KiB chunks
//! (as a socket read would deliver them) to a `Decoder`, and every frame goes through a `Session`.
//!
//! Run: `cargo bench -p alarm-center-proto --bench decode`. Figures are frames per second.

use alarm_center_proto::{encode, Decoder, Session};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

const FRAMES: usize = 10_000;

/// A JSON event notification of about 400 bytes, as a DHIP-style RPC body.
fn event_json(i: usize) -> String {
    let action = if i.is_multiple_of(2) { "Start" } else { "Stop" };
    format!(
        r#"{{"id":{i},"method":"client.notifyEventStream","params":{{"SID":513,"eventList":[{{"Action":"{action}","Code":"CrossRegionDetection","Index":{idx},"Data":{{"Class":"Normal","CountInGroup":1,"Direction":"Enter","EventID":{i},"FrameSequence":412233,"GroupID":{i},"LocaleTime":"2024-05-01 10:00:00","Mark":0,"Name":"IVS-1","Object":{{"Action":"Appear","ObjectID":512,"ObjectType":"Human"}},"PTS":42949710940.0,"Source":46082368.0,"UTC":1714557600}}}}]}},"session":1604224811}}"#,
        idx = i % 16
    )
}

fn streams() -> Vec<(&'static str, Vec<u8>)> {
    let mask: Vec<u8> = (0..FRAMES)
        .flat_map(|i| encode::dvrip_mask(2, 0, (i as u32).wrapping_mul(2_654_435_761) & 0xFFFF))
        .collect();
    let text: Vec<u8> = (0..FRAMES)
        .flat_map(|i| {
            let mask = ((i % 7) + 1).to_string();
            encode::dvrip_text(
                1,
                0,
                &[
                    ("alarm channel", &mask),
                    ("Domain name", "nvr.example.org"),
                    ("Time", "2023-01-16 10:00:00"),
                ],
            )
        })
        .collect();
    let dhip: Vec<u8> = (0..FRAMES)
        .flat_map(|i| encode::dhip(1, i as u32, &event_json(i)))
        .collect();
    let dvrip_json: Vec<u8> = (0..FRAMES)
        .flat_map(|i| encode::dvrip_json(i as u32, 1, &event_json(i)))
        .collect();
    let bare: Vec<u8> = (0..FRAMES)
        .flat_map(|i| encode::bare_json(&event_json(i)))
        .collect();
    let xm: Vec<u8> = (0..FRAMES)
        .flat_map(|i| {
            encode::xm_alarm(
                "cdf680a9a0279bf8",
                [192, 168, 1, 10].into(),
                (i % 4) as u32,
                "HumanDetect",
                i % 2 == 0,
                "2024-01-27 21:10:58",
            )
        })
        .collect();
    vec![
        ("dvrip-mask", mask),
        ("dvrip-text", text),
        ("dhip-json-event-400B", dhip),
        ("dvrip-json-event-400B", dvrip_json),
        ("bare-json-event-400B", bare),
        ("xm-alarm", xm),
    ]
}

fn decode_stream(stream: &[u8]) -> usize {
    let mut decoder = Decoder::default();
    let mut session = Session::new();
    let mut events = 0;
    for chunk in stream.chunks(4096) {
        for frame in decoder.feed(chunk) {
            events += black_box(session.decode(&frame)).events.len();
        }
    }
    events
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    for (name, stream) in streams() {
        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| decode_stream(black_box(&stream)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
