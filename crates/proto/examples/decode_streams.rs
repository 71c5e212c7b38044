//! Decodes the streams of the `decode` bench once each, for instruction counts that do not depend on
//! what else the machine runs:
//!
//! ```text
//! cargo build -p alarm-center-proto --profile bench --example decode_streams
//! valgrind --tool=callgrind --toggle-collect='*decode_stream' target/release/examples/decode_streams dvrip-mask
//! ```
//!
//! Without an argument every stream is decoded; with names, only those. Prints the events per stream.

use std::hint::black_box;

#[path = "../benches/streams/mod.rs"]
mod streams;

use streams::{decode_stream, stream, FRAMES, NAMES};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = if args.is_empty() {
        NAMES.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for name in names {
        let Some(bytes) = stream(name) else {
            eprintln!("unknown stream {name}; known: {NAMES:?}");
            std::process::exit(2);
        };
        println!(
            "{name}: {FRAMES} frames, {} events",
            decode_stream(black_box(&bytes))
        );
    }
}
