//! Challenges: proofs of retrievability made from the blocks as they are on disk now.

use blackbox_core::ShareHeader;
use blackbox_net::wire::Si;
use blackbox_net::Response;
use blackbox_proofs::{BlockTree, Challenge};

use super::{Reply, StorageServer};
use crate::error::NodeError;
use crate::store::{ShareKey, ShareStore, StoreError};

impl<S: ShareStore> StorageServer<S> {
    /// Proves the pieces a challenge selects.
    pub(super) fn challenge(&self, si: Si, share: u8, nonce: [u8; 32], count: u16) -> Reply {
        let challenge = Challenge { storage_index: si, share, nonce, count };
        challenge.check().map_err(NodeError::BadChallenge)?;
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
        Ok(Response::Proof(proof.encode().into()))
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
}
