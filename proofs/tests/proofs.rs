//! Property tests: honest proofs verify; any altered byte, position or path entry fails; the
//! codec round-trips and refuses garbage without panicking.

use blackbox_core::{hashtree, EncodingParams, FileEncoder, FileKey, ShareHeader};
use blackbox_proofs::{prove, verify, BlockTree, Challenge, Proof};
use proptest::prelude::*;

/// A small coded file: its header and the blocks of every share.
fn file(size: usize, k: usize, n: usize, segment: u32, seed: u8) -> (ShareHeader, Vec<Vec<Vec<u8>>>) {
    let params = EncodingParams::new(k, n, segment).expect("params");
    let data: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    let mut enc = FileEncoder::new([seed; 32] as FileKey, params, size as u64);
    let mut shares = vec![Vec::new(); n];
    let layout = *enc.layout();
    let mut off = 0;
    while !enc.is_done() {
        let len = layout.segment_len(enc.next_segment());
        for (j, b) in enc.encode_next(&data[off..off + len]).expect("encode").into_iter().enumerate() {
            shares[j].push(b.to_vec());
        }
        off += len;
    }
    let (header, _) = enc.finish().expect("finish");
    (header, shares)
}

fn honest(header: &ShareHeader, blocks: &[Vec<u8>], challenge: &Challenge) -> Proof {
    let tree = BlockTree::new(blocks.iter().map(|b| hashtree::leaf(b)).collect());
    prove(challenge, &header.layout(), &tree, |i| Ok::<_, ()>(blocks[i as usize].clone()))
        .expect("read")
        .expect("prove")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn honest_proofs_verify_and_tampering_fails(
        size in 0usize..200_000,
        seg_kib in prop::sample::select(vec![4u32, 8, 64]),
        share in 0u8..4,
        count in 1u16..64,
        nonce in any::<[u8; 32]>(),
        pick in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (header, shares) = file(size, 2, 4, seg_kib * 1024, 7);
        let challenge = Challenge { storage_index: [9; 32], share, nonce, count };
        let proof = honest(&header, &shares[share as usize], &challenge);
        prop_assert_eq!(verify(&challenge, &header, &proof), Ok(()));
        let decoded = Proof::decode(&proof.encode());
        prop_assert_eq!(decoded.as_ref(), Ok(&proof));

        let i = pick.index(proof.samples.len());
        // A flipped data byte.
        let mut bad = proof.clone();
        let mut data = bad.samples[i].data.to_vec();
        let b = byte.index(data.len());
        data[b] ^= flip;
        bad.samples[i].data = data.into();
        prop_assert!(verify(&challenge, &header, &bad).is_err());
        // A flipped byte of any path entry.
        for inner in [true, false] {
            let mut bad = proof.clone();
            let list = if inner { &mut bad.samples[i].inner } else { &mut bad.samples[i].outer };
            if !list.is_empty() {
                let e = byte.index(list.len());
                list[e][b % 32] ^= flip;
                prop_assert!(verify(&challenge, &header, &bad).is_err());
                // A dropped path entry.
                let mut short = proof.clone();
                let list = if inner { &mut short.samples[i].inner } else { &mut short.samples[i].outer };
                list.pop();
                prop_assert!(verify(&challenge, &header, &short).is_err());
            }
        }
        // A changed position.
        let mut bad = proof.clone();
        bad.samples[i].position.chunk ^= 1;
        prop_assert!(verify(&challenge, &header, &bad).is_err());
        let mut bad = proof.clone();
        bad.samples[i].position.block += 1;
        prop_assert!(verify(&challenge, &header, &bad).is_err());
        // A missing sample.
        let mut bad = proof.clone();
        bad.samples.remove(i);
        prop_assert!(verify(&challenge, &header, &bad).is_err());
        // Another share's blocks answering for this one.
        let other = (share + 1) % 4;
        let wrong = honest(&header, &shares[other as usize], &challenge);
        prop_assert!(verify(&challenge, &header, &wrong).is_err());
        // The same proof under a fresh nonce.
        let mut fresh = challenge;
        fresh.nonce[0] ^= 1;
        if fresh.positions(&header.layout()) != challenge.positions(&header.layout()) {
            prop_assert!(verify(&fresh, &header, &proof).is_err());
        }
    }

    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Proof::decode(&bytes);
    }

    #[test]
    fn truncated_or_extended_encodings_fail(count in 1u16..20, nonce in any::<[u8; 32]>(), cut in any::<prop::sample::Index>()) {
        let (header, shares) = file(50_000, 2, 3, 4096, 1);
        let challenge = Challenge { storage_index: [1; 32], share: 0, nonce, count };
        let bytes = honest(&header, &shares[0], &challenge).encode();
        let at = cut.index(bytes.len());
        prop_assert!(Proof::decode(&bytes[..at]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(Proof::decode(&longer).is_err());
    }
}

#[test]
fn positions_are_deterministic_spread_and_bounded() {
    let (header, _) = file(3_000_000, 3, 10, 1 << 20, 2);
    let layout = header.layout();
    let c = Challenge { storage_index: [3; 32], share: 1, nonce: [4; 32], count: 256 };
    let p = c.positions(&layout);
    assert_eq!(p, c.positions(&layout));
    assert!(p.len() > 200 && p.len() <= 256);
    assert!(p.iter().all(|q| q.block < layout.num_segments()));
    assert!(p.iter().any(|q| q.block == 0) && p.iter().any(|q| q.block == 2));
    let bad = Challenge { count: 0, ..c };
    assert!(verify(&bad, &header, &Proof::default()).is_err());
    let too_many = Challenge { count: blackbox_proofs::MAX_COUNT + 1, ..c };
    assert!(too_many.check().is_err());
}

#[test]
fn largest_proof_fits_its_limit() {
    // k = 1 with 1 MiB segments: the largest blocks there are (1,025 chunks).
    let (header, shares) = file(3 << 20, 1, 2, 1 << 20, 5);
    let c = Challenge { storage_index: [0; 32], share: 0, nonce: [1; 32], count: blackbox_proofs::MAX_COUNT };
    let proof = honest(&header, &shares[0], &c);
    assert_eq!(verify(&c, &header, &proof), Ok(()));
    assert!(proof.encode().len() <= blackbox_proofs::MAX_PROOF_LEN);
    assert!(proof.samples.iter().all(|s| s.inner.len() == 11));
}
