//! Reads of committed shares: leaf hashes, and blocks billed as egress once they are in hand.

use blackbox_core::ShareHeader;
use blackbox_net::wire::{MAX_BLOCKS, MAX_LEAVES, MAX_MESSAGE};
use blackbox_net::Response;
use blackbox_payments::Usage;

use super::pay::Bill;
use super::{Reply, StorageServer};
use crate::store::{ShareKey, ShareStore, StoreError};

impl<S: ShareStore> StorageServer<S> {
    pub(super) fn read_leaves(&self, key: ShareKey, start: u64, count: u32) -> Reply {
        self.committed_meta(&key)?;
        Ok(Response::Leaves(self.store.leaves(&key, start, count.min(MAX_LEAVES))?))
    }

    pub(super) fn read_blocks(&self, key: ShareKey, start: u64, count: u32, bill: &Bill) -> Reply {
        let meta = self.committed_meta(&key)?;
        if start >= meta.num_blocks || count == 0 {
            return Err(crate::NodeError::BlockRange);
        }
        let layout =
            ShareHeader::decode(&meta.header).map_err(|_| StoreError::Corrupt("stored share header"))?.layout();
        let end = start.saturating_add(count.min(MAX_BLOCKS) as u64).min(meta.num_blocks);
        // Fit the reply in one message: at least one block, then as many as fit.
        let mut size = 16 + 4 + layout.block_len(start);
        let mut stop = start + 1;
        while stop < end && size + 4 + layout.block_len(stop) <= MAX_MESSAGE {
            size += 4 + layout.block_len(stop);
            stop += 1;
        }
        let offset = layout.block_offset(start);
        let len = (layout.block_offset(stop - 1) - offset) as usize + layout.block_len(stop - 1);
        let egress = Usage::default().with_egress(len as u64);
        self.egress_allows(len as u64)?;
        self.covers(bill, egress, "serving these blocks")?;
        let bytes =
            self.store.read_at(&key, offset, len)?.ok_or(StoreError::Io("share data is missing on disk".into()))?;
        // Billed once the bytes are in hand, so a failed read costs the payer nothing.
        self.charge(bill, egress, "serving these blocks")?;
        self.egress.add(len as u64);
        let mut blocks = Vec::with_capacity((stop - start) as usize);
        let mut at = 0;
        for index in start..stop {
            let bl = layout.block_len(index);
            blocks.push(self.served(index, bytes.slice(at..at + bl)));
            at += bl;
        }
        Ok(Response::Blocks(blocks))
    }
}
