//! Criterion benches of the pipeline and of each of its parts, per 1 MiB segment of plaintext.

use blackbox_benches::{blake3_hash, chacha, data, measure, memcpy, Decoding, Encoding, RsEncode, SEG};
use criterion::{criterion_group, Criterion, Throughput};

fn parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("ceiling");
    g.throughput(Throughput::Bytes(SEG as u64));
    let src = data(SEG);
    let mut dst = vec![0u8; SEG];
    g.bench_function("memcpy", |b| b.iter(|| memcpy(&src, &mut dst)));
    let mut buf = data(SEG);
    g.bench_function("chacha20poly1305", |b| b.iter(|| chacha(&mut buf)));
    g.bench_function("blake3", |b| b.iter(|| blake3_hash(&src)));
    for (k, n) in [(3, 10), (29, 80)] {
        let mut rs = RsEncode::new(&src, k, n);
        g.bench_function(format!("rs-encode-{k}-of-{n}"), |b| b.iter(|| rs.step()));
    }
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(SEG as u64));
    for (k, n) in [(3, 10), (29, 80)] {
        let mut e = Encoding::new(k, n);
        g.bench_function(format!("encode-{k}-of-{n}"), |b| b.iter(|| e.step()));
        let mut d = Decoding::new(k, n);
        g.bench_function(format!("decode-data-{k}-of-{n}"), |b| b.iter(|| d.step(0)));
        g.bench_function(format!("decode-recovery-{k}-of-{n}"), |b| b.iter(|| d.step(n - k)));
    }
    g.finish();
}

criterion_group!(benches, parts, pipeline);

fn main() {
    blackbox_benches::tune_allocator();
    benches();
    Criterion::default().configure_from_args().final_summary();
    // The ratio to the ceiling, measured again in this run.
    for (k, n) in [(3, 10), (29, 80)] {
        println!("{}", measure(k, n, 1.0));
    }
}
