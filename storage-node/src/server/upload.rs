//! Uploads: allocation within quota, block writes by the upload's owner only, and the commit that
//! verifies every block against the header's share root before the share becomes visible.

use std::time::Instant;

use bytes::Bytes;
use tracing::{info, warn};

use blackbox_core::{hashtree, EncodingParams, FileLayout, Hash, ShareHeader};
use blackbox_net::{PeerId, Response};
use blackbox_payments::Usage;
use blackbox_util::now_secs;

use super::{Reply, StorageServer};
use crate::error::NodeError;
use crate::store::{ShareKey, ShareMeta, ShareStore};

/// Most blocks of all uploads in progress together: bounds the memory (33 bytes a block) that
/// allocations can make a node hold, whatever the quota. 2^21 blocks is 2 TiB of 3-of-10 file data.
const MAX_PENDING_BLOCKS: usize = 1 << 21;

/// An upload in progress: who owns it, its expected layout and the leaf hashes received so far.
pub(super) struct Upload {
    owner: PeerId,
    layout: FileLayout,
    leaves: Vec<Option<Hash>>,
    pub(super) reserved: u64,
    touched: Instant,
    /// Lease length asked for at allocation (already clamped).
    lease_secs: u64,
}

impl<S: ShareStore> StorageServer<S> {
    /// Drops uploads idle for longer than the upload timeout.
    pub fn expire_idle_uploads(&self) {
        let expired: Vec<ShareKey> = {
            let mut st = self.lock();
            let timeout = self.upload_timeout;
            let keys: Vec<ShareKey> =
                st.uploads.iter().filter(|(_, u)| u.touched.elapsed() > timeout).map(|(k, _)| *k).collect();
            for k in &keys {
                st.uploads.remove(k);
            }
            keys
        };
        for key in expired {
            info!(share = key.share, "dropping idle upload");
            if let Err(e) = self.store.abort_upload(&key) {
                warn!(error = %e, "failed to drop idle upload");
            }
        }
    }

    /// Reserves space for one share of a file of `size` bytes coded with `(k, n, segment size)`.
    pub(super) fn allocate(
        &self,
        from: &PeerId,
        key: ShareKey,
        (k, n, seg): (u8, u8, u32),
        size: u64,
        lease: u32,
    ) -> Reply {
        let params = EncodingParams::new(k as usize, n as usize, seg).map_err(NodeError::BadParams)?;
        if key.share as usize >= params.n() {
            return Err(NodeError::ShareOutOfRange);
        }
        if self.store.meta(&key)?.is_some() {
            return Ok(Response::Allocated { already_have: true });
        }
        self.expire_idle_uploads();
        let layout = FileLayout::new(params, size);
        let need = layout.share_len();
        let blocks = usize::try_from(layout.num_segments()).map_err(|_| NodeError::FileTooLarge)?;
        {
            let mut st = self.lock();
            let (previous, previous_blocks) = st.uploads.get(&key).map_or((0, 0), |u| (u.reserved, u.leaves.len()));
            let in_flight = st.uploads.values().map(|u| u.leaves.len()).sum::<usize>() - previous_blocks;
            if in_flight.saturating_add(blocks) > MAX_PENDING_BLOCKS {
                return Err(NodeError::Busy { in_flight, limit: MAX_PENDING_BLOCKS });
            }
            let used = st.committed + st.reserved() - previous;
            if used.saturating_add(need) > self.quota {
                return Err(NodeError::Full { used, quota: self.quota, need });
            }
            let upload = Upload {
                owner: *from,
                layout,
                leaves: vec![None; blocks],
                reserved: need,
                touched: Instant::now(),
                lease_secs: self.leases.grant(lease),
            };
            st.uploads.insert(key, upload);
        }
        if let Err(e) = self.store.begin_upload(&key) {
            self.lock().uploads.remove(&key);
            return Err(e.into());
        }
        Ok(Response::Allocated { already_have: false })
    }

    pub(super) fn write_blocks(&self, from: &PeerId, key: ShareKey, start: u64, blocks: &[Bytes]) -> Reply {
        // Hash before taking the lock; check, write and record under it, so an upload replaced
        // in between can never receive bytes meant for the old one.
        let leaves: Vec<Hash> = blocks.iter().map(|b| hashtree::leaf(b)).collect();
        let mut st = self.lock();
        let up = st.uploads.get_mut(&key).ok_or(NodeError::NoSuchUpload)?;
        if up.owner != *from {
            return Err(NodeError::NotOwner);
        }
        let end = start.checked_add(blocks.len() as u64).filter(|&e| e <= up.layout.num_segments());
        if end.is_none() || blocks.is_empty() {
            return Err(NodeError::BlockRange);
        }
        for (i, block) in blocks.iter().enumerate() {
            let index = start + i as u64;
            let want = up.layout.block_len(index);
            if block.len() != want {
                return Err(NodeError::BlockSize { index, want });
            }
        }
        for (i, (block, leaf)) in blocks.iter().zip(leaves).enumerate() {
            let index = start + i as u64;
            self.store.write_at(&key, up.layout.block_offset(index), block)?;
            up.leaves[index as usize] = Some(leaf);
        }
        up.touched = Instant::now();
        Ok(Response::Ok)
    }

    pub(super) fn commit(&self, from: &PeerId, key: ShareKey, header: &Bytes) -> Reply {
        let upload = {
            let mut st = self.lock();
            match st.uploads.get(&key) {
                Some(up) if up.owner == *from => {}
                Some(_) => return Err(NodeError::NotOwner),
                None => return Err(NodeError::NoSuchUpload),
            }
            st.uploads.remove(&key).ok_or(NodeError::NoSuchUpload)?
        };
        // Storage rent for the whole lease, billed before the share becomes visible.
        let rent = Usage::default().with_storage(upload.reserved, upload.lease_secs);
        if let Err(e) = self.charge(from, rent, "storing this share") {
            self.lock().uploads.insert(key, upload);
            return Err(e);
        }
        let result = self.verify_and_store(key, &upload, header);
        match &result {
            Err(_) => {
                self.uncharge(from, rent);
                if let Err(e) = self.store.abort_upload(&key) {
                    warn!(error = %e, "failed to drop rejected upload");
                }
            }
            Ok(_) => {
                let mut st = self.lock();
                st.committed += upload.reserved;
                st.shares += 1;
            }
        }
        result
    }

    fn verify_and_store(&self, key: ShareKey, up: &Upload, header: &Bytes) -> Reply {
        let leaves: Vec<Hash> =
            up.leaves.iter().enumerate().map(|(i, l)| l.ok_or(NodeError::BlockMissing(i))).collect::<Result<_, _>>()?;
        let parsed = ShareHeader::decode(header).map_err(NodeError::BadHeader)?;
        if parsed.layout() != up.layout {
            return Err(NodeError::HeaderMismatch);
        }
        if parsed.share_roots[key.share as usize] != hashtree::share_root(&leaves) {
            return Err(NodeError::RootMismatch);
        }
        let meta = ShareMeta { header: header.to_vec(), num_blocks: leaves.len() as u64, share_len: up.reserved };
        let expires = now_secs().saturating_add(up.lease_secs);
        self.store.commit(&key, &meta, &leaves, expires)?;
        Ok(Response::Ok)
    }

    pub(super) fn abort(&self, from: &PeerId, key: ShareKey) -> Reply {
        let mut st = self.lock();
        match st.uploads.get(&key) {
            Some(up) if up.owner == *from => {
                st.uploads.remove(&key);
                drop(st);
                self.store.abort_upload(&key)?;
                Ok(Response::Ok)
            }
            _ => Err(NodeError::NoSuchUpload),
        }
    }
}
