//! Proofs of retrievability over the shares of blackbox (pure: no I/O).
//!
//! A challenge names a share and carries a fresh nonce; the nonce derives which pieces of the share
//! the node must return. A piece is one 1 KiB BLAKE3 chunk of a block: the node answers with the
//! chunk, the chaining values that lead from it to the block's hash (BLAKE3 is itself a tree), and
//! the Merkle path from that block hash to the share root. The share root is in the share header,
//! whose hash is the root that read and verify caps carry, so the verify cap is enough to audit.
//!
//! Why chunks and not whole blocks: a block is up to 1 MiB / k (349 KiB at 3-of-10), so a day of
//! whole-block samples would move hundreds of MB per share; chunks move ~1.5 KiB per sample and
//! catch lost data at the same rate (a lost block loses every chunk in it).
//!
//! Detection: if a fraction `f` of a share's chunks is missing or corrupt and `c` chunks are asked
//! uniformly at random, the node escapes with probability at most `(1 − f)^c`
//! ([`miss_probability`]). Losing 1% of a share and escaping a day of audits with at most 0.1%
//! chance needs `c ≥ ln(0.001) / ln(0.99) = 687.3`, so the defaults ask [`DEFAULT_COUNT`] = 32
//! chunks in each of [`DEFAULT_AUDITS_PER_DAY`] = 24 audits: 768 a day, escape chance 0.044%.

mod codec;
mod tree;

use blackbox_core::{hashtree, FileLayout, Hash, ShareHeader, StorageIndex};
use blake3::hazmat::{self, HasherExt, Mode};
use bytes::Bytes;

pub use codec::{MAX_INNER, MAX_OUTER, MAX_PROOF_LEN, PROOF_VERSION};
pub use tree::{root_from_path, BlockTree};

/// Bytes of one proved piece (BLAKE3's chunk length).
pub const CHUNK_LEN: usize = 1024;
/// Most pieces one challenge may ask for, so that every answer fits one wire message.
pub const MAX_COUNT: u16 = 256;
/// Pieces asked per audit by default.
pub const DEFAULT_COUNT: u16 = 32;
/// Audits of each share per day by default (one an hour).
pub const DEFAULT_AUDITS_PER_DAY: u32 = 24;

const CHALLENGE_CONTEXT: &str = "blackbox 2026 challenge positions v1";

/// Why a proof was refused or could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// The challenge asks for no pieces or more than [`MAX_COUNT`].
    #[error("challenge count {0} outside 1..={MAX_COUNT}")]
    BadCount(u16),
    /// The share number is not one of the file's shares.
    #[error("share {0} is not a share of this file")]
    NoSuchShare(u8),
    /// The answer does not hold exactly the pieces the challenge asked for.
    #[error("proof answers {got} pieces, the challenge asked for {want}")]
    WrongPieces {
        /// Pieces asked.
        want: usize,
        /// Pieces answered.
        got: usize,
    },
    /// A piece is not the one asked for at that place.
    #[error("piece {index} is at block {block} chunk {chunk}, not where the challenge asked")]
    WrongPosition {
        /// Place in the answer.
        index: usize,
        /// Block it claims.
        block: u64,
        /// Chunk it claims.
        chunk: u32,
    },
    /// A piece or path has the wrong length for its place.
    #[error("piece at block {block} chunk {chunk} has the wrong shape")]
    BadShape {
        /// Block.
        block: u64,
        /// Chunk.
        chunk: u32,
    },
    /// A piece does not hash to the share root.
    #[error("piece at block {block} chunk {chunk} does not match the share root")]
    Mismatch {
        /// Block.
        block: u64,
        /// Chunk.
        chunk: u32,
    },
    /// The prover was given a block or leaves that do not fit the layout.
    #[error("cannot prove: {0}")]
    Prover(&'static str),
    /// The encoded proof is malformed.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
}

/// A demand to prove possession of pieces of one share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    /// The file.
    pub storage_index: StorageIndex,
    /// The share of it.
    pub share: u8,
    /// Fresh randomness from the auditor: the node cannot know the positions before it is asked.
    pub nonce: [u8; 32],
    /// Pieces to ask (before removing repeats).
    pub count: u16,
}

/// Where one piece lies: a block of the share and a 1 KiB chunk of that block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Block (segment) index.
    pub block: u64,
    /// Chunk within the block.
    pub chunk: u32,
}

/// One proved piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Where it lies.
    pub position: Position,
    /// The chunk's bytes.
    pub data: Bytes,
    /// Chaining values of the sibling subtrees inside the block's BLAKE3 tree, bottom-up.
    pub inner: Vec<Hash>,
    /// Sibling hashes in the share's block tree, bottom-up.
    pub outer: Vec<Hash>,
}

/// A node's answer to a challenge: one sample per asked position, in the challenge's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Proof {
    /// The samples.
    pub samples: Vec<Sample>,
}

/// Chance that `count` uniform samples all miss when a fraction `missing` of the pieces is gone.
pub fn miss_probability(missing: f64, count: u64) -> f64 {
    (1.0 - missing.clamp(0.0, 1.0)).powf(count as f64)
}

/// Samples needed so that a loss of fraction `missing` escapes with at most `escape` chance.
pub fn samples_needed(missing: f64, escape: f64) -> u64 {
    if missing <= 0.0 {
        return u64::MAX;
    }
    if missing >= 1.0 {
        return 1;
    }
    (escape.ln() / (1.0 - missing).ln()).ceil() as u64
}

/// Number of chunks in a block of `len` bytes.
fn chunks_in(len: usize) -> u64 {
    len.div_ceil(CHUNK_LEN).max(1) as u64
}

/// Chunks in the whole share.
pub fn share_chunks(layout: &FileLayout) -> u64 {
    let blocks = layout.num_segments();
    (blocks - 1) * chunks_in(layout.block_len(0)) + chunks_in(layout.block_len(blocks - 1))
}

impl Challenge {
    /// Checks the count.
    pub fn check(&self) -> Result<(), ProofError> {
        if self.count == 0 || self.count > MAX_COUNT {
            return Err(ProofError::BadCount(self.count));
        }
        Ok(())
    }

    /// The positions asked, sorted and without repeats: `count` uniform draws over every chunk of
    /// the share, from a BLAKE3 stream keyed by the whole challenge.
    pub fn positions(&self, layout: &FileLayout) -> Vec<Position> {
        let mut h = blake3::Hasher::new_derive_key(CHALLENGE_CONTEXT);
        h.update(&self.storage_index).update(&[self.share]).update(&self.nonce).update(&self.count.to_le_bytes());
        let mut stream = h.finalize_xof();
        let total = share_chunks(layout);
        let per_block = chunks_in(layout.block_len(0));
        let last = layout.num_segments() - 1;
        let mut out: Vec<Position> = (0..self.count)
            .map(|_| {
                let mut word = [0u8; 8];
                stream.fill(&mut word);
                // Bias is at most total / 2^64: negligible.
                let g = u64::from_le_bytes(word) % total;
                let block = (g / per_block).min(last);
                Position { block, chunk: (g - block * per_block) as u32 }
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The subtree siblings on the way from chunk `chunk` to the top of a block of `len` bytes,
/// top-down: (offset, length) of each sibling.
fn inner_siblings(len: usize, chunk: u32) -> Vec<(usize, usize)> {
    let target = chunk as usize * CHUNK_LEN;
    let (mut off, mut len) = (0usize, len);
    let mut out = Vec::new();
    while len > CHUNK_LEN {
        let left = hazmat::left_subtree_len(len as u64) as usize;
        if target - off < left {
            out.push((off + left, len - left));
            len = left;
        } else {
            out.push((off, left));
            off += left;
            len -= left;
        }
    }
    out
}

fn context_key() -> hazmat::ContextKey {
    hazmat::hash_derive_key_context(hashtree::LEAF_CONTEXT)
}

/// Proves one piece from the whole `block` it lies in and the share's block tree.
pub fn prove_sample(
    layout: &FileLayout,
    tree: &BlockTree,
    position: Position,
    block: &[u8],
) -> Result<Sample, ProofError> {
    if position.block >= layout.num_segments() || tree.leaf_count() != layout.num_segments() {
        return Err(ProofError::Prover("block index or leaf count does not fit the layout"));
    }
    if block.len() != layout.block_len(position.block) || u64::from(position.chunk) >= chunks_in(block.len()) {
        return Err(ProofError::Prover("block length does not fit the layout"));
    }
    let start = position.chunk as usize * CHUNK_LEN;
    let data = Bytes::copy_from_slice(&block[start..(start + CHUNK_LEN).min(block.len())]);
    Ok(Sample { position, data, inner: inner_path(block, position.chunk), outer: tree.path(position.block) })
}

/// Chaining values of the sibling subtrees from chunk `chunk` of `block` up to the block's hash,
/// bottom-up (each a complete BLAKE3 subtree at an aligned offset).
fn inner_path(block: &[u8], chunk: u32) -> Vec<Hash> {
    let ck = context_key();
    let mut inner: Vec<Hash> = inner_siblings(block.len(), chunk)
        .into_iter()
        .map(|(off, len)| {
            let mut h = blake3::Hasher::new_from_context_key(&ck);
            h.set_input_offset(off as u64);
            h.update(&block[off..off + len]);
            h.finalize_non_root()
        })
        .collect();
    inner.reverse();
    inner
}

/// Proves a whole challenge; `read_block` returns the stored bytes of a block.
pub fn prove<E>(
    challenge: &Challenge,
    layout: &FileLayout,
    tree: &BlockTree,
    mut read_block: impl FnMut(u64) -> Result<Vec<u8>, E>,
) -> Result<Result<Proof, ProofError>, E> {
    if let Err(e) = challenge.check() {
        return Ok(Err(e));
    }
    let mut samples = Vec::new();
    let mut current: Option<(u64, Vec<u8>)> = None;
    for p in challenge.positions(layout) {
        if current.as_ref().is_none_or(|(b, _)| *b != p.block) {
            current = Some((p.block, read_block(p.block)?));
        }
        let block = current.as_ref().map_or(&[][..], |(_, bytes)| &bytes[..]);
        match prove_sample(layout, tree, p, block) {
            Ok(s) => samples.push(s),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(Proof { samples }))
}

/// The block hash (tree leaf) a sample implies, or why it cannot be one.
fn sample_leaf(layout: &FileLayout, s: &Sample) -> Result<Hash, ProofError> {
    let Position { block, chunk } = s.position;
    let shape = || ProofError::BadShape { block, chunk };
    let len = layout.block_len(block);
    let start = chunk as usize * CHUNK_LEN;
    if start >= len || s.data.len() != (len - start).min(CHUNK_LEN) {
        return Err(shape());
    }
    let siblings = inner_siblings(len, chunk);
    if s.inner.len() != siblings.len() {
        return Err(shape());
    }
    if siblings.is_empty() {
        return Ok(hashtree::leaf(&s.data));
    }
    let ck = context_key();
    let mode = Mode::DeriveKeyMaterial(&ck);
    let mut h = blake3::Hasher::new_from_context_key(&ck);
    h.set_input_offset(start as u64);
    h.update(&s.data);
    let mut cv = h.finalize_non_root();
    // Bottom-up: the innermost sibling pairs with the chunk first; the top merge is the root.
    let top = siblings.len() - 1;
    for (depth, ((off, _), sib)) in siblings.iter().rev().zip(&s.inner).enumerate() {
        let sibling_is_right = *off > start;
        let (l, r) = if sibling_is_right { (&cv, sib) } else { (sib, &cv) };
        if depth == top {
            return Ok(*hazmat::merge_subtrees_root(l, r, mode).as_bytes());
        }
        cv = hazmat::merge_subtrees_non_root(l, r, mode);
    }
    Err(shape())
}

/// Checks `proof` against `challenge` and the header of the file (already checked against the cap):
/// every asked piece is present, in order, and hashes up to the share's root.
pub fn verify(challenge: &Challenge, header: &ShareHeader, proof: &Proof) -> Result<(), ProofError> {
    challenge.check()?;
    let root = header.share_roots.get(challenge.share as usize).ok_or(ProofError::NoSuchShare(challenge.share))?;
    let layout = header.layout();
    let want = challenge.positions(&layout);
    if want.len() != proof.samples.len() {
        return Err(ProofError::WrongPieces { want: want.len(), got: proof.samples.len() });
    }
    let count = layout.num_segments();
    for (index, (p, s)) in want.iter().zip(&proof.samples).enumerate() {
        if *p != s.position {
            return Err(ProofError::WrongPosition { index, block: s.position.block, chunk: s.position.chunk });
        }
        let leaf = sample_leaf(&layout, s)?;
        let tree_root = root_from_path(leaf, p.block, count, &s.outer)
            .ok_or(ProofError::BadShape { block: p.block, chunk: p.chunk })?;
        if hashtree::share_root_from(count, &tree_root) != *root {
            return Err(ProofError::Mismatch { block: p.block, chunk: p.chunk });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_math_meets_the_daily_target() {
        assert_eq!(samples_needed(0.01, 0.001), 688);
        let per_day = u64::from(DEFAULT_COUNT) * u64::from(DEFAULT_AUDITS_PER_DAY);
        assert!(per_day >= 688);
        assert!(miss_probability(0.01, per_day) < 0.001);
        assert!((miss_probability(0.5, 1) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn chunk_leaf_matches_block_hash() {
        // Leaves rebuilt from any chunk and its inner path equal the block hash, for lengths
        // around the BLAKE3 subtree boundaries.
        for len in [64usize, 1024, 1088, 2048, 3072, 4160, 8192, 349_568] {
            let block: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            for chunk in 0..chunks_in(len) as u32 {
                let start = chunk as usize * CHUNK_LEN;
                let s = Sample {
                    position: Position { block: 0, chunk },
                    data: Bytes::copy_from_slice(&block[start..(start + CHUNK_LEN).min(len)]),
                    inner: inner_path(&block, chunk),
                    outer: vec![],
                };
                let leaf = leaf_for_len(len, &s).unwrap();
                assert_eq!(leaf, hashtree::leaf(&block), "len {len} chunk {chunk}");
            }
        }
    }

    fn leaf_for_len(len: usize, s: &Sample) -> Result<Hash, ProofError> {
        // A layout whose block 0 has exactly `len` bytes: k = 1, segment = len - 16 (tag).
        let seg = (len - 16) as u64;
        let params = blackbox_core::EncodingParams::new(1, 1, blackbox_core::MAX_SEGMENT_SIZE).unwrap();
        let layout = FileLayout::new(params, seg);
        if layout.block_len(0) == len {
            return sample_leaf(&layout, s);
        }
        Err(ProofError::Prover("no layout with that block length"))
    }
}
