//! Property tests of the whole pure pipeline: encode, lose shares, corrupt bits, decode.

use blackbox_core::{
    hashtree, EncodingParams, FileEncoder, FileLayout, ReadCap, SegmentDecoder, SegmentRebuilder, ShareHeader,
    ShareVerifier,
};
use proptest::prelude::*;

/// Encodes `data` and returns the header, cap and every share as a list of blocks.
fn encode(data: &[u8], k: usize, n: usize, seg: u32) -> (ShareHeader, ReadCap, Vec<Vec<Vec<u8>>>) {
    let params = EncodingParams::new(k, n, seg).unwrap();
    let mut enc = FileEncoder::new([9u8; 32], params, data.len() as u64);
    let mut shares = vec![Vec::new(); n];
    let layout = *enc.layout();
    let mut off = 0;
    for i in 0..layout.num_segments() {
        let len = layout.segment_len(i);
        let blocks = enc.encode_next(&data[off..off + len]).unwrap();
        off += len;
        for (s, b) in blocks.into_iter().enumerate() {
            shares[s].push(b.to_vec());
        }
    }
    let (header, cap) = enc.finish().unwrap();
    (header, cap, shares)
}

/// A reader as the client does it: verify each share's leaves, skip shares with bad blocks.
fn decode(cap: &ReadCap, header: &ShareHeader, shares: &[Option<Vec<Vec<u8>>>]) -> Option<Vec<u8>> {
    assert_eq!(header.root(), cap.root);
    let layout: FileLayout = header.layout();
    let verifiers: Vec<Option<ShareVerifier>> = shares
        .iter()
        .enumerate()
        .map(|(s, share)| {
            let share = share.as_ref()?;
            // A node sends leaf hashes it stored at upload time: those of the genuine blocks.
            let leaves = share.iter().map(|b| hashtree::leaf(b)).collect();
            ShareVerifier::new(header, s, leaves)
        })
        .collect();
    let mut dec = SegmentDecoder::new();
    let mut out = Vec::new();
    for i in 0..layout.num_segments() {
        let mut blocks = Vec::new();
        for (s, share) in shares.iter().enumerate() {
            let (Some(share), Some(v)) = (share, &verifiers[s]) else {
                continue;
            };
            let block = &share[i as usize];
            if v.check(i, block) {
                blocks.push((s, block.as_slice()));
            }
            if blocks.len() == cap.k as usize {
                break;
            }
        }
        out.extend(dec.decode(&cap.key, &layout, i, &blocks).ok()?);
    }
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_k_shares_rebuild(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        k in 1usize..6, extra in 0usize..6, seed: u64,
    ) {
        let n = k + extra;
        let (header, cap, shares) = encode(&data, k, n, 4096);
        // Drop n-k shares chosen by the seed.
        let mut order: Vec<usize> = (0..n).collect();
        let mut x = seed;
        for i in (1..n).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (x >> 33) as usize % (i + 1));
        }
        let mut kept: Vec<Option<Vec<Vec<u8>>>> = vec![None; n];
        for &s in &order[..k] {
            kept[s] = Some(shares[s].clone());
        }
        prop_assert_eq!(decode(&cap, &header, &kept), Some(data.clone()));
        // Fewer than k shares cannot decode.
        if k > 1 {
            kept[order[0]] = None;
            prop_assert_eq!(decode(&cap, &header, &kept), None);
        }
    }

    #[test]
    fn any_k_shares_rebuild_the_others_bit_identically(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        k in 1usize..6, extra in 0usize..6, seed: u64,
    ) {
        let n = k + extra;
        let (header, _, shares) = encode(&data, k, n, 4096);
        let layout = header.layout();
        // Keep k shares chosen by the seed; rebuild all n from them, without the key.
        let mut order: Vec<usize> = (0..n).collect();
        let mut x = seed;
        for i in (1..n).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (x >> 33) as usize % (i + 1));
        }
        let kept = &order[..k];
        let all: Vec<usize> = (0..n).collect();
        let mut rb = SegmentRebuilder::new();
        for i in 0..layout.num_segments() {
            let blocks: Vec<(usize, &[u8])> = kept.iter().map(|&s| (s, shares[s][i as usize].as_slice())).collect();
            let rebuilt = rb.rebuild(&layout, i, &blocks, &all).unwrap();
            for s in 0..n {
                prop_assert_eq!(rebuilt[s].as_ref(), shares[s][i as usize].as_slice());
            }
        }
        let roots: Vec<_> = (0..n).map(|s| hashtree::share_root(&shares[s].iter().map(|b| hashtree::leaf(b)).collect::<Vec<_>>())).collect();
        prop_assert_eq!(roots, header.share_roots.clone());
        // Fewer than k blocks cannot rebuild.
        if k > 1 {
            let blocks: Vec<(usize, &[u8])> = kept[1..].iter().map(|&s| (s, shares[s][0].as_slice())).collect();
            prop_assert!(rb.rebuild(&layout, 0, &blocks, &all).is_err());
        }
    }

    #[test]
    fn flipped_bit_is_detected_and_skipped(
        data in proptest::collection::vec(any::<u8>(), 1..20_000),
        share in 0usize..10, block_pick: usize, byte_pick: usize, bit in 0u8..8,
    ) {
        let (header, cap, shares) = encode(&data, 3, 10, 4096);
        let mut held: Vec<Option<Vec<Vec<u8>>>> = shares.iter().cloned().map(Some).collect();
        let stored = held[share].as_mut().unwrap();
        let b = block_pick % stored.len();
        let at = byte_pick % stored[b].len();
        let genuine_leaf = hashtree::leaf(&stored[b]);
        stored[b][at] ^= 1 << bit;
        prop_assert_ne!(hashtree::leaf(&stored[b]), genuine_leaf);
        // The reader checks blocks against leaves computed before the corruption.
        let leaves: Vec<_> = shares[share].iter().map(|b| hashtree::leaf(b)).collect();
        let v = ShareVerifier::new(&header, share, leaves).unwrap();
        prop_assert!(!v.check(b as u64, &held[share].as_ref().unwrap()[b]));
        prop_assert_eq!(decode_with_leaves(&cap, &header, &held, &shares), Some(data));
    }
}

/// Like `decode`, but with leaves from the genuine shares (what a node recorded at upload).
fn decode_with_leaves(
    cap: &ReadCap,
    header: &ShareHeader,
    held: &[Option<Vec<Vec<u8>>>],
    genuine: &[Vec<Vec<u8>>],
) -> Option<Vec<u8>> {
    let layout = header.layout();
    let verifiers: Vec<ShareVerifier> = genuine
        .iter()
        .enumerate()
        .map(|(s, share)| ShareVerifier::new(header, s, share.iter().map(|b| hashtree::leaf(b)).collect()).unwrap())
        .collect();
    let mut dec = SegmentDecoder::new();
    let mut out = Vec::new();
    for i in 0..layout.num_segments() {
        let blocks: Vec<(usize, &[u8])> = held
            .iter()
            .enumerate()
            .filter_map(|(s, sh)| sh.as_ref().map(|sh| (s, sh[i as usize].as_slice())))
            .filter(|(s, b)| verifiers[*s].check(i, b))
            .take(cap.k as usize)
            .collect();
        out.extend(dec.decode(&cap.key, &layout, i, &blocks).ok()?);
    }
    Some(out)
}

#[test]
fn leaves_for_wrong_share_are_rejected() {
    let data = vec![5u8; 10_000];
    let (header, _cap, shares) = encode(&data, 3, 10, 4096);
    let leaves: Vec<_> = shares[1].iter().map(|b| hashtree::leaf(b)).collect();
    assert!(ShareVerifier::new(&header, 1, leaves.clone()).is_some());
    assert!(ShareVerifier::new(&header, 2, leaves.clone()).is_none());
    assert!(ShareVerifier::new(&header, 1, leaves[..2].to_vec()).is_none());
}

#[test]
fn k_equals_n_and_max_n() {
    let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    for (k, n) in [(1, 1), (4, 4), (29, 80), (1, 255)] {
        let (header, cap, shares) = encode(&data, k, n, 8192);
        let mut kept: Vec<Option<Vec<Vec<u8>>>> = vec![None; n];
        for s in n - k..n {
            kept[s] = Some(shares[s].clone());
        }
        assert_eq!(decode(&cap, &header, &kept), Some(data.clone()), "k={k} n={n}");
    }
}
