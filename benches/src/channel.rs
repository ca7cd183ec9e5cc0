//! Payment channel update costs: signing (payer) and full verification (provider: its own
//! signature, then libbitcoinconsensus on the completed spend, which checks both signatures).

use std::time::Instant;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{OutPoint, Txid};
use blackbox_payments::channel::public_key;
use blackbox_payments::{ChannelParams, ChannelUpdate, PayerChannel, ProviderChannel};

/// A channel between two fixed keys, and the keys.
pub fn fixture() -> (ChannelParams, SecretKey, SecretKey) {
    let (payer, provider) =
        (SecretKey::from_slice(&[1; 32]).expect("key"), SecretKey::from_slice(&[2; 32]).expect("key"));
    let params = ChannelParams {
        funding: OutPoint { txid: Txid::from_byte_array([7; 32]), vout: 0 },
        capacity: 100_000_000,
        payer: public_key(&payer),
        provider: public_key(&provider),
        timeout: 1_000,
        fee: 1_000,
    };
    (params, payer, provider)
}

/// Updates signed per second and verified per second, each on one core for about `seconds`.
pub fn measure_channel(seconds: f64) -> (f64, f64) {
    let (params, payer_key, provider_key) = fixture();
    let payer = PayerChannel::new(params).expect("channel");
    let provider = ProviderChannel::new(params).expect("channel");
    let start = Instant::now();
    let mut updates: Vec<ChannelUpdate> = Vec::new();
    while start.elapsed().as_secs_f64() < seconds {
        updates.push(payer.sign(1_000 + updates.len() as u64, &payer_key).expect("sign"));
    }
    let signed = updates.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        provider.check(&updates[n % updates.len()], &provider_key).expect("valid update");
        n += 1;
    }
    (signed, n as f64 / start.elapsed().as_secs_f64())
}
