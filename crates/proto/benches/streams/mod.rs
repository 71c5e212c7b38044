//! The streams of the `decode` bench, shared with `examples/decode_streams.rs` (instruction counts):
//! 10,000 frames of each wire variant, and the loop that decodes them.

use alarm_center_proto::{encode, Decoder, Session};
use std::hint::black_box;

pub(crate) const FRAMES: usize = 10_000;

/// The JSON event notification of the bench (about 400 bytes), as a DHIP-style RPC body.
fn event_json(i: usize) -> String {
    let action = if i.is_multiple_of(2) { "Start" } else { "Stop" };
    format!(
        r#"{{"id":{i},"method":"client.notifyEventStream","params":{{"SID":513,"eventList":[{{"Action":"{action}","Code":"CrossRegionDetection","Index":{idx},"Data":{{"Class":"Normal","CountInGroup":1,"Direction":"Enter","EventID":{i},"FrameSequence":412233,"GroupID":{i},"LocaleTime":"2024-05-01 10:00:00","Mark":0,"Name":"IVS-1","Object":{{"Action":"Appear","ObjectID":512,"ObjectType":"Human"}},"PTS":42949710940.0,"Source":46082368.0,"UTC":1714557600}}}}]}},"session":1604224811}}"#,
        idx = i % 16
    )
}

/// The bench's streams, by name.
pub(crate) fn stream(name: &str) -> Option<Vec<u8>> {
    let each = |f: &dyn Fn(usize) -> Vec<u8>| (0..FRAMES).flat_map(f).collect();
    Some(match name {
        "dvrip-mask" => {
            each(&|i| encode::dvrip_mask(2, 0, (i as u32).wrapping_mul(2_654_435_761) & 0xFFFF))
        }
        "dvrip-text" => each(&|i| {
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
        }),
        "dhip-json-event-400B" => each(&|i| encode::dhip(1, i as u32, &event_json(i))),
        "dvrip-json-event-400B" => each(&|i| encode::dvrip_json(i as u32, 1, &event_json(i))),
        "bare-json-event-400B" => each(&|i| encode::bare_json(&event_json(i))),
        "xm-alarm" => each(&|i| {
            encode::xm_alarm(
                "cdf680a9a0279bf8",
                [192, 168, 1, 10].into(),
                (i % 4) as u32,
                "HumanDetect",
                i % 2 == 0,
                "2024-01-27 21:10:58",
            )
        }),
        _ => return None,
    })
}

pub(crate) const NAMES: [&str; 6] = [
    "dvrip-mask",
    "dvrip-text",
    "dhip-json-event-400B",
    "dvrip-json-event-400B",
    "bare-json-event-400B",
    "xm-alarm",
];

/// The bench's loop: 4 KiB chunks (as a socket read would deliver them) into a decoder, every frame
/// through a session. Returns the events.
#[inline(never)]
pub(crate) fn decode_stream(stream: &[u8]) -> usize {
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
