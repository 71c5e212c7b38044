//! Decode + classify + extract throughput per variant: a stream of frames is fed in 4 KiB chunks
//! (as a socket read would deliver them) to a `Decoder`, and every frame goes through a `Session`.
//!
//! Run: `cargo bench -p alarm-center-proto --bench decode`. Figures are frames per second.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

mod streams;

use streams::{decode_stream, stream, FRAMES, NAMES};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    for name in NAMES {
        let stream = stream(name).expect("a known stream");
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
