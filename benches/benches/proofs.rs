//! Criterion benches of proofs of retrievability: one default audit (32 pieces) of a share of a
//! 64 MiB file coded 3-of-10 with 1 MiB segments, proved by the node and verified by the auditor.

use blackbox_benches::proofs::Fixture;
use blackbox_proofs::DEFAULT_COUNT;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn proofs(c: &mut Criterion) {
    let fx = Fixture::new(64 << 20);
    let mut g = c.benchmark_group("proofs");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("prove-32", |b| {
        b.iter(|| {
            i += 1;
            fx.prove(&fx.challenge(i, DEFAULT_COUNT))
        })
    });
    let c32 = fx.challenge(1, DEFAULT_COUNT);
    let p32 = fx.prove(&c32);
    g.bench_function("verify-32", |b| b.iter(|| assert!(fx.verify(&c32, &p32))));
    g.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
