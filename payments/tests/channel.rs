//! Channel state machines against cheating, with every transaction checked by libbitcoinconsensus.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{OutPoint, Sequence, Txid, Witness};
use blackbox_payments::channel::public_key;
use blackbox_payments::consensus::verify_input;
use blackbox_payments::script::{p2wpkh, DUST_LIMIT};
use blackbox_payments::{ChannelParams, ChannelUpdate, PayerChannel, PaymentError, ProviderChannel};
use proptest::prelude::*;

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

fn params(payer: &SecretKey, provider: &SecretKey) -> ChannelParams {
    ChannelParams {
        funding: OutPoint { txid: Txid::from_byte_array([7; 32]), vout: 1 },
        capacity: 100_000,
        payer: public_key(payer),
        provider: public_key(provider),
        timeout: 500,
        fee: 1_000,
    }
}

#[test]
fn payments_close_and_refund_are_valid_spends() {
    let (pk, vk) = (key(1), key(2));
    let p = params(&pk, &vk);
    let mut payer = PayerChannel::new(p).unwrap();
    let mut provider = ProviderChannel::new(p).unwrap();
    assert_eq!(provider.closing_tx(&vk).unwrap(), None);
    for paid in [1, 300, 5_000, 99_000] {
        let u = payer.sign(paid, &pk).unwrap();
        payer.paid = paid;
        provider.check(&u, &vk).unwrap();
        provider.accept(&u);
    }
    let close = provider.closing_tx(&vk).unwrap().unwrap();
    verify_input(&close, 0, &p.funding_output()).unwrap();
    // The provider gets exactly what was paid; the payer's change is dust here and goes to the fee.
    assert_eq!(close.output.len(), 1);
    assert_eq!(close.output[0].value.to_sat(), 99_000);
    assert_eq!(close.output[0].script_pubkey, p2wpkh(&p.provider));
    let refund = payer.refund_tx(&pk).unwrap();
    assert_eq!(refund.lock_time, LockTime::from_height(500).unwrap());
    assert_eq!(refund.output[0].value.to_sat(), 99_000);
}

/// Only the payer can prove it pays a channel: the newest update byte for byte, or an older
/// update with the payer's valid signature; another key, a doctored amount or another channel
/// proves nothing.
#[test]
fn only_the_payers_signatures_prove_the_payer() {
    let (pk, vk, thief) = (key(1), key(2), key(3));
    let p = params(&pk, &vk);
    let payer = PayerChannel::new(p).unwrap();
    let mut provider = ProviderChannel::new(p).unwrap();
    let old = payer.sign(2_000, &pk).unwrap();
    let new = payer.sign(5_000, &pk).unwrap();
    provider.check(&new, &vk).unwrap();
    provider.accept(&new);
    provider.proves_payer(&new).unwrap();
    provider.proves_payer(&old).unwrap();
    let forged = PayerChannel::new(p).unwrap().sign(5_000, &thief).unwrap();
    assert_eq!(provider.proves_payer(&forged), Err(PaymentError::BadSignature));
    let forged_old = PayerChannel::new(p).unwrap().sign(1_000, &thief).unwrap();
    assert_eq!(provider.proves_payer(&forged_old), Err(PaymentError::BadSignature));
    let mut doctored = old.clone();
    doctored.paid = 1_999;
    assert_eq!(provider.proves_payer(&doctored), Err(PaymentError::BadSignature));
    let mut elsewhere = new.clone();
    elsewhere.channel.vout = 9;
    assert_eq!(provider.proves_payer(&elsewhere), Err(PaymentError::WrongChannel));
    let higher = payer.sign(6_000, &pk).unwrap();
    assert!(provider.proves_payer(&higher).is_err(), "a raise must go through check()");
    // A channel nothing was paid on yet: an empty update proves nothing.
    let fresh = ProviderChannel::new(p).unwrap();
    let empty = ChannelUpdate { channel: p.funding, paid: 0, signature: Vec::new() };
    assert_eq!(fresh.proves_payer(&empty), Err(PaymentError::BadSignature));
}

#[test]
fn replayed_lower_and_over_capacity_updates_are_refused() {
    let (pk, vk) = (key(1), key(2));
    let p = params(&pk, &vk);
    let payer = PayerChannel::new(p).unwrap();
    let mut provider = ProviderChannel::new(p).unwrap();
    let u = payer.sign(5_000, &pk).unwrap();
    provider.check(&u, &vk).unwrap();
    provider.accept(&u);
    assert_eq!(provider.check(&u, &vk), Err(PaymentError::NotIncreasing { got: 5_000, have: 5_000 }));
    let lower = payer.sign(4_000, &pk).unwrap();
    assert_eq!(provider.check(&lower, &vk), Err(PaymentError::NotIncreasing { got: 4_000, have: 5_000 }));
    let mut over = payer.sign(99_000, &pk).unwrap();
    over.paid = 99_001;
    assert_eq!(provider.check(&over, &vk), Err(PaymentError::OverCapacity { got: 99_001, max: 99_000 }));
    // The payer side never signs less than it already did.
    let signed = PayerChannel { params: p, paid: 5_000 };
    assert!(signed.sign(4_999, &pk).is_err());
}

#[test]
fn wrong_signatures_are_refused_by_the_code_and_by_consensus() {
    let (pk, vk) = (key(1), key(2));
    let p = params(&pk, &vk);
    let provider = ProviderChannel::new(p).unwrap();
    // Signed by someone else.
    let stranger = PayerChannel::new(ChannelParams { payer: public_key(&key(3)), ..p }).unwrap();
    let mut forged = stranger.sign(1_000, &key(3)).unwrap();
    forged.channel = p.funding;
    assert_eq!(provider.check(&forged, &vk), Err(PaymentError::BadSignature));
    // A flipped bit, and garbage.
    let mut u = PayerChannel::new(p).unwrap().sign(1_000, &pk).unwrap();
    u.signature[10] ^= 1;
    assert_eq!(provider.check(&u, &vk), Err(PaymentError::BadSignature));
    u.signature = vec![1, 2, 3];
    assert_eq!(provider.check(&u, &vk), Err(PaymentError::BadSignature));
    // An update for another channel.
    let mut other = PayerChannel::new(p).unwrap().sign(1_000, &pk).unwrap();
    other.channel.vout = 9;
    assert_eq!(provider.check(&other, &vk), Err(PaymentError::WrongChannel));
}

/// Builds the honest commitment for `paid`, witnessed with `payer_sig` and the provider's own
/// signature, and asks the consensus library.
fn consensus_with(p: &ChannelParams, paid: u64, payer_sig: Vec<u8>, vk: &SecretKey) -> Result<(), PaymentError> {
    let mut tx = p.commitment(paid).unwrap();
    let msg = p.sighash(&tx).unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let mine = bitcoin::ecdsa::Signature {
        signature: secp.sign_ecdsa(&msg, vk),
        sighash_type: bitcoin::sighash::EcdsaSighashType::All,
    }
    .to_vec();
    tx.input[0].witness = Witness::from_slice(&[Vec::new(), payer_sig, mine, vec![1], p.script().into_bytes()]);
    verify_input(&tx, 0, &p.funding_output())
}

#[test]
fn commitments_for_another_funding_output_or_address_are_refused() {
    let (pk, vk) = (key(1), key(2));
    let p = params(&pk, &vk);
    let provider = ProviderChannel::new(p).unwrap();
    let honest = PayerChannel::new(p).unwrap().sign(2_000, &pk).unwrap();
    assert!(consensus_with(&p, 2_000, honest.signature.clone(), &vk).is_ok());

    // Signed over a commitment spending a different funding output, presented for this channel.
    let elsewhere = ChannelParams { funding: OutPoint { txid: Txid::from_byte_array([8; 32]), vout: 1 }, ..p };
    let mut u = PayerChannel::new(elsewhere).unwrap().sign(2_000, &pk).unwrap();
    u.channel = p.funding;
    assert_eq!(provider.check(&u, &vk), Err(PaymentError::BadSignature));
    assert!(consensus_with(&p, 2_000, u.signature, &vk).is_err());

    // Signed over a commitment that pays the provider's share to another address.
    let mut evil = p.commitment(2_000).unwrap();
    evil.output[0].script_pubkey = p2wpkh(&public_key(&key(9)));
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sig = bitcoin::ecdsa::Signature {
        signature: secp.sign_ecdsa(&p.sighash(&evil).unwrap(), &pk),
        sighash_type: bitcoin::sighash::EcdsaSighashType::All,
    }
    .to_vec();
    let u = ChannelUpdate { channel: p.funding, paid: 2_000, signature: sig.clone() };
    assert_eq!(provider.check(&u, &vk), Err(PaymentError::BadSignature));
    assert!(consensus_with(&p, 2_000, sig, &vk).is_err());
}

#[test]
fn refund_before_the_timeout_fails_consensus() {
    let (pk, vk) = (key(1), key(2));
    let p = params(&pk, &vk);
    let payer = PayerChannel::new(p).unwrap();
    let good = payer.refund_tx(&pk).unwrap();
    verify_input(&good, 0, &p.funding_output()).unwrap();
    // Lock time below the script's timeout: CHECKLOCKTIMEVERIFY fails.
    let early = ChannelParams { timeout: 499, ..p };
    let mut tx = early.refund();
    tx.input[0].witness = good.input[0].witness.clone();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sig = bitcoin::ecdsa::Signature {
        signature: secp.sign_ecdsa(&p.sighash(&tx).unwrap(), &pk),
        sighash_type: bitcoin::sighash::EcdsaSighashType::All,
    }
    .to_vec();
    tx.input[0].witness = Witness::from_slice(&[sig, Vec::new(), p.script().into_bytes()]);
    assert!(verify_input(&tx, 0, &p.funding_output()).is_err());
    // A final sequence disables the lock time: also refused.
    let mut final_seq = good.clone();
    final_seq.input[0].sequence = Sequence::MAX;
    assert!(verify_input(&final_seq, 0, &p.funding_output()).is_err());
    // The 2-of-2 branch with only the payer's signature is refused.
    let mut one_sig = p.commitment(0).unwrap();
    one_sig.input[0].witness = Witness::from_slice(&[
        Vec::new(),
        good.input[0].witness.nth(0).unwrap().to_vec(),
        vec![1],
        p.script().into_bytes(),
    ]);
    assert!(verify_input(&one_sig, 0, &p.funding_output()).is_err());
}

#[test]
fn encodings_round_trip_and_refuse_garbage() {
    let p = params(&key(1), &key(2));
    assert_eq!(ChannelParams::decode(&p.encode()), Ok(p));
    let mut bad = p.encode();
    bad[0] = 9;
    assert!(ChannelParams::decode(&bad).is_err());
    let u = PayerChannel::new(p).unwrap().sign(777, &key(1)).unwrap();
    assert_eq!(ChannelUpdate::decode(&u.encode()), Ok(u.clone()));
    let mut long = u.encode();
    long.push(0);
    assert!(ChannelUpdate::decode(&long).is_err());
    assert!(p.commitment(0).unwrap().output.iter().all(|o| o.value.to_sat() >= DUST_LIMIT));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_increasing_sequence_is_accepted_and_closes_for_the_last(steps in proptest::collection::vec(1u64..20_000, 1..8)) {
        let (pk, vk) = (key(4), key(5));
        let p = ChannelParams { capacity: 200_000, ..params(&pk, &vk) };
        let mut payer = PayerChannel::new(p).unwrap();
        let mut provider = ProviderChannel::new(p).unwrap();
        let mut total = 0;
        for s in steps {
            total += s;
            let u = payer.sign(total, &pk).unwrap();
            payer.paid = total;
            provider.check(&u, &vk).unwrap();
            prop_assert_eq!(provider.accept(&u), s);
        }
        let close = provider.closing_tx(&vk).unwrap().unwrap();
        verify_input(&close, 0, &p.funding_output()).unwrap();
        let to_provider: u64 = close.output.iter().filter(|o| o.script_pubkey == p2wpkh(&p.provider)).map(|o| o.value.to_sat()).sum();
        prop_assert_eq!(to_provider, if total >= DUST_LIMIT { total } else { 0 });
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ChannelParams::decode(&bytes);
        let _ = ChannelUpdate::decode(&bytes);
    }
}
