//! Challenges: proofs of retrievability made from the blocks as they are on disk now.

use std::collections::HashMap;

use blackbox_core::ShareHeader;
use blackbox_net::wire::Si;
use blackbox_net::{PeerId, Response};
use blackbox_payments::Usage;
use blackbox_proofs::{BlockTree, Challenge};

use super::pay::Bill;
use super::{Reply, StorageServer};
use crate::error::NodeError;
use crate::store::{ShareKey, ShareStore, StoreError};

/// Challenges one peer may have answered per minute; each proof re-hashes blocks from disk.
pub const CHALLENGES_PER_MINUTE: u32 = 600;

/// Proofs made at the same time, over all peers.
const MAX_PROOFS_AT_ONCE: usize = 4;

/// One of the node's proof slots, given back when dropped.
struct ProofSlot<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> ProofSlot<'a> {
    fn take(running: &'a std::sync::atomic::AtomicUsize) -> Option<Self> {
        use std::sync::atomic::Ordering;
        let mut now = running.load(Ordering::Relaxed);
        loop {
            if now >= MAX_PROOFS_AT_ONCE {
                return None;
            }
            match running.compare_exchange(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Self(running)),
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for ProofSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Most peers whose challenge counts are kept in one minute.
const MAX_TRACKED: usize = 100_000;

/// Channel opens one peer may ask per minute; each costs the node chain queries.
pub const OPENS_PER_MINUTE: u32 = 30;

/// Requests of one kind answered per peer in the current minute.
#[derive(Debug, Default)]
pub(super) struct PeerBudget {
    minute: u64,
    counts: HashMap<PeerId, u32>,
}

impl PeerBudget {
    /// Counts one request from `peer`; false when it is over `limit` this minute.
    pub(super) fn take(&mut self, peer: &PeerId, now: u64, limit: u32) -> bool {
        if now / 60 != self.minute {
            self.minute = now / 60;
            self.counts.clear();
        }
        // Past the tracking bound, newcomers wait for the next minute (nobody's count is reset).
        if self.counts.len() >= MAX_TRACKED && !self.counts.contains_key(peer) {
            return false;
        }
        let n = self.counts.entry(*peer).or_default();
        *n += 1;
        *n <= limit
    }
}

impl<S: ShareStore> StorageServer<S> {
    /// Proves the pieces a challenge selects (at most [`CHALLENGES_PER_MINUTE`] per peer); billed
    /// as egress of the proof's bytes when the node takes payments and the request is paid.
    pub(super) fn challenge(
        &self,
        from: &PeerId,
        si: Si,
        share: u8,
        nonce: [u8; 32],
        count: u16,
        bill: &Bill,
    ) -> Reply {
        let challenge = Challenge { storage_index: si, share, nonce, count };
        challenge.check().map_err(NodeError::BadChallenge)?;
        let now = blackbox_util::now_secs();
        if !self.challenges.lock().unwrap_or_else(|p| p.into_inner()).take(from, now, CHALLENGES_PER_MINUTE) {
            return Err(NodeError::TooManyChallenges { limit: CHALLENGES_PER_MINUTE });
        }
        // Each proof loads a share's leaf hashes and re-hashes blocks: a few at a time, node-wide.
        let _slot = ProofSlot::take(&self.proofs_running)
            .ok_or(NodeError::Busy { in_flight: MAX_PROOFS_AT_ONCE, limit: MAX_PROOFS_AT_ONCE })?;
        self.delay_proof();
        let asked = ShareKey { si, share };
        self.committed_meta(&asked)?;
        let key = self.proof_source(asked)?;
        let meta = self.committed_meta(&key)?;
        let layout =
            ShareHeader::decode(&meta.header).map_err(|_| StoreError::Corrupt("stored share header"))?.layout();
        let leaves = self.store.leaves(&key, 0, u32::MAX)?;
        if leaves.len() as u64 != meta.num_blocks || meta.num_blocks != layout.num_segments() {
            return Err(StoreError::Corrupt("stored leaf hashes").into());
        }
        let tree = BlockTree::new(leaves);
        let proof = blackbox_proofs::prove(&challenge, &layout, &tree, |index| {
            let len = layout.block_len(index);
            let block = self
                .store
                .read_at(&key, layout.block_offset(index), len)?
                .ok_or(StoreError::Io(format!("block {index} is missing on disk")))?;
            Ok::<_, StoreError>(self.served(index, block).to_vec())
        })?
        .map_err(NodeError::Proof)?;
        let bytes = proof.encode();
        if bill.channel.is_some() {
            self.charge(bill, Usage::default().with_egress(bytes.len() as u64), "answering this challenge")?;
        }
        // Counted, never refused: a node past its bandwidth still proves what it holds.
        self.egress.add(bytes.len() as u64);
        Ok(Response::Proof(bytes.into()))
    }
}

#[cfg(not(feature = "faults"))]
impl<S: ShareStore> StorageServer<S> {
    /// A block as this node serves it.
    #[inline]
    pub(super) fn served(&self, _index: u64, block: bytes::Bytes) -> bytes::Bytes {
        block
    }

    /// The share a proof is made from: the one asked for.
    #[inline]
    fn proof_source(&self, asked: ShareKey) -> Result<ShareKey, NodeError> {
        Ok(asked)
    }

    #[inline]
    fn delay_proof(&self) {}

    #[inline]
    pub(super) fn pace(&self, _bytes: usize) {}

    /// The slot records this node reports: the ones it holds.
    #[inline]
    pub(super) fn reported_slots(&self, _si: &[u8; 32], now: Vec<(u8, Vec<u8>)>) -> Vec<(u8, Vec<u8>)> {
        now
    }
}
