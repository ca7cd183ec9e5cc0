//! Criterion benches of payment channel updates: the payer's signature and the provider's full
//! check (its own signature, then libbitcoinconsensus on the completed commitment).

use blackbox_benches::channel::fixture;
use blackbox_payments::{PayerChannel, ProviderChannel};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn channel(c: &mut Criterion) {
    let (params, payer_key, provider_key) = fixture();
    let payer = PayerChannel::new(params).expect("channel");
    let provider = ProviderChannel::new(params).expect("channel");
    let mut g = c.benchmark_group("channel");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign-update", |b| b.iter(|| payer.sign(5_000, &payer_key).expect("sign")));
    let update = payer.sign(5_000, &payer_key).expect("sign");
    g.bench_function("verify-update", |b| b.iter(|| provider.check(&update, &provider_key).expect("valid")));
    g.finish();
}

criterion_group!(benches, channel);
criterion_main!(benches);
