//! Uploads: allocation within quota and per-peer limits, each upload with an id and a staging
//! file of its own; only the peer that allocated it can write, commit or abort it; the commit
//! verifies every block against the header's share root, and a committed share is immutable.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use blackbox_core::{hashtree, EncodingParams, FileLayout, Hash, ShareHeader};
use blackbox_net::wire::UploadId;
use blackbox_net::{PeerId, Response};
use blackbox_payments::Usage;
use blackbox_util::now_secs;

use super::pay::Bill;
use super::{Reply, StorageServer};
use crate::error::NodeError;
use crate::store::{ShareKey, ShareMeta, ShareStore};

/// Most blocks of all uploads in progress together: bounds the memory (33 bytes a block) that
/// allocations can make a node hold, whatever the quota. 2^21 blocks is 2 TiB of 3-of-10 file data.
const MAX_PENDING_BLOCKS: usize = 1 << 21;

/// What one peer may hold of a node's uploads in progress.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Uploads in progress per peer.
    pub per_peer: usize,
    /// Bytes reserved by one peer's uploads in progress.
    pub reserved_per_peer: u64,
    /// Longest an upload may stay unfinished, however busy it keeps itself.
    pub max_age: Duration,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self { per_peer: 256, reserved_per_peer: 64 << 30, max_age: Duration::from_secs(6 * 3600) }
    }
}

/// An upload in progress: who owns it, its share, layout and the leaf hashes received so far.
pub(super) struct Upload {
    owner: PeerId,
    key: ShareKey,
    layout: FileLayout,
    leaves: Vec<Option<Hash>>,
    pub(super) reserved: u64,
    started: Instant,
    /// Last time a block not written before arrived (rewrites do not keep an upload alive).
    progressed: Instant,
    /// Lease length asked for at allocation (already clamped).
    lease_secs: u64,
}

impl<S: ShareStore> StorageServer<S> {
    /// Sets the per-peer limits of uploads in progress.
    pub fn with_upload_limits(mut self, limits: UploadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Drops uploads that made no progress for the upload timeout, or outlived the longest age.
    pub fn expire_idle_uploads(&self) {
        let expired: Vec<UploadId> = {
            let mut st = self.lock();
            let (idle, old) = (self.upload_timeout, self.limits.max_age);
            let ids: Vec<UploadId> = st
                .uploads
                .iter()
                .filter(|(_, u)| u.progressed.elapsed() > idle || u.started.elapsed() > old)
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                st.uploads.remove(id);
            }
            ids
        };
        for id in expired {
            info!(upload = id, "dropping idle upload");
            if let Err(e) = self.store.abort_upload(id) {
                warn!(error = %e, "failed to drop idle upload");
            }
        }
    }

    /// Refuses an allocation that would take more than this node or this peer may hold.
    fn check_room(&self, st: &super::State, from: &PeerId, blocks: usize, need: u64) -> Result<(), NodeError> {
        let in_flight = st.uploads.values().map(|u| u.leaves.len()).sum::<usize>();
        if in_flight.saturating_add(blocks) > MAX_PENDING_BLOCKS {
            return Err(NodeError::Busy { in_flight, limit: MAX_PENDING_BLOCKS });
        }
        let mine: Vec<&Upload> = st.uploads.values().filter(|u| u.owner == *from).collect();
        if mine.len() >= self.limits.per_peer {
            return Err(NodeError::PeerUploads { have: mine.len(), limit: self.limits.per_peer });
        }
        let my_blocks = mine.iter().map(|u| u.leaves.len()).sum::<usize>();
        if my_blocks.saturating_add(blocks) > MAX_PENDING_BLOCKS / 16 {
            return Err(NodeError::Busy { in_flight: my_blocks, limit: MAX_PENDING_BLOCKS / 16 });
        }
        let reserved = mine.iter().map(|u| u.reserved).sum::<u64>();
        if reserved.saturating_add(need) > self.limits.reserved_per_peer {
            return Err(NodeError::PeerReserved { reserved, limit: self.limits.reserved_per_peer });
        }
        let used = st.committed + st.reserved();
        if used.saturating_add(need) > self.quota {
            return Err(NodeError::Full { used, quota: self.quota, need });
        }
        Ok(())
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
            return Ok(Response::Allocated { already_have: true, upload: 0 });
        }
        self.expire_idle_uploads();
        let layout = FileLayout::new(params, size);
        let need = layout.share_len();
        let blocks = usize::try_from(layout.num_segments()).map_err(|_| NodeError::FileTooLarge)?;
        let id = loop {
            let id: u64 = secp256k1::rand::random();
            if id != 0 && !self.lock().uploads.contains_key(&id) {
                break id;
            }
        };
        self.store.begin_upload(id, &key)?;
        let mut st = self.lock();
        if let Err(e) = self.check_room(&st, from, blocks, need) {
            drop(st);
            let _ = self.store.abort_upload(id);
            return Err(e);
        }
        let now = Instant::now();
        let upload = Upload {
            owner: *from,
            key,
            layout,
            leaves: vec![None; blocks],
            reserved: need,
            started: now,
            progressed: now,
            lease_secs: self.leases.grant(lease),
        };
        st.uploads.insert(id, upload);
        Ok(Response::Allocated { already_have: false, upload: id })
    }

    pub(super) fn write_blocks(
        &self,
        from: &PeerId,
        key: ShareKey,
        id: UploadId,
        start: u64,
        blocks: &[Bytes],
    ) -> Reply {
        // Hash before taking the lock; check and record under it; write the bytes outside it.
        let leaves: Vec<Hash> = blocks.iter().map(|b| hashtree::leaf(b)).collect();
        let offsets: Vec<u64> = {
            let st = self.lock();
            let up = owned(st.uploads.get(&id), from, &key)?;
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
            (0..blocks.len() as u64).map(|i| up.layout.block_offset(start + i)).collect()
        };
        for (block, offset) in blocks.iter().zip(&offsets) {
            self.store.write_at(id, *offset, block)?;
        }
        let mut st = self.lock();
        let up = st.uploads.get_mut(&id).ok_or(NodeError::NoSuchUpload)?;
        let mut fresh = false;
        for (i, leaf) in leaves.into_iter().enumerate() {
            let slot = &mut up.leaves[start as usize + i];
            fresh |= slot.is_none();
            *slot = Some(leaf);
        }
        if fresh {
            up.progressed = Instant::now();
        }
        Ok(Response::Ok)
    }

    pub(super) fn commit(&self, from: &PeerId, key: ShareKey, id: UploadId, header: &Bytes, bill: &Bill) -> Reply {
        let _share = self.key_lock(&key);
        self.commit_locked(from, key, id, header, bill)
    }

    /// [`Self::commit`] with the share's lock already held.
    pub(super) fn commit_locked(
        &self,
        from: &PeerId,
        key: ShareKey,
        id: UploadId,
        header: &Bytes,
        bill: &Bill,
    ) -> Reply {
        let upload = {
            let mut st = self.lock();
            if let Err(e) = owned(st.uploads.get(&id), from, &key) {
                drop(st);
                // A retry of a commit that went through: the same share is there; nothing billed.
                return self.stored_as(&key, header)?.ok_or(e);
            }
            st.uploads.remove(&id).ok_or(NodeError::NoSuchUpload)?
        };
        match self.stored_as(&key, header) {
            Ok(None) => {}
            answer => {
                // Stored already (or with another header): this upload goes, space and staging file.
                let _ = self.store.abort_upload(id);
                return answer.map(|a| a.unwrap_or(Response::Ok));
            }
        }
        // Storage rent for the whole lease, billed before the share becomes visible.
        let rent = Usage::default().with_storage(upload.reserved, upload.lease_secs);
        let charge = match self.charge(bill, rent, "storing this share") {
            Ok(c) => c,
            Err(e) => {
                self.lock().uploads.insert(id, upload);
                return Err(e);
            }
        };
        let result = self.verify_and_store(id, key, &upload, header);
        match &result {
            Err(_) => {
                self.uncharge(bill, charge);
                if let Err(e) = self.store.abort_upload(id) {
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

    /// `Ok` if the share is stored with this header already, an error if with another one,
    /// `None` if it is not stored.
    fn stored_as(&self, key: &ShareKey, header: &Bytes) -> Result<Option<Response>, NodeError> {
        match self.store.meta(key)? {
            Some(m) if m.header == header.as_ref() => Ok(Some(Response::Ok)),
            Some(_) => Err(NodeError::AlreadyStored),
            None => Ok(None),
        }
    }

    fn verify_and_store(&self, id: UploadId, key: ShareKey, up: &Upload, header: &Bytes) -> Reply {
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
        if !self.store.commit(id, &key, &meta, &leaves, expires)? {
            return Err(NodeError::AlreadyStored);
        }
        Ok(Response::Ok)
    }

    pub(super) fn abort(&self, from: &PeerId, key: ShareKey, id: UploadId) -> Reply {
        {
            let mut st = self.lock();
            owned(st.uploads.get(&id), from, &key)?;
            st.uploads.remove(&id);
        }
        self.store.abort_upload(id)?;
        Ok(Response::Ok)
    }
}

impl<S: ShareStore> StorageServer<S> {
    /// Whether upload `id` is in progress, `from`'s, and for `key`.
    pub(super) fn owns_upload(&self, from: &PeerId, key: &ShareKey, id: UploadId) -> bool {
        owned(self.lock().uploads.get(&id), from, key).is_ok()
    }

    /// Whether upload `id` is still in progress.
    pub(super) fn upload_exists(&self, id: UploadId) -> bool {
        self.lock().uploads.contains_key(&id)
    }
}

/// The upload, if it exists, is `from`'s and is for `key` (another peer's upload is reported as
/// missing: its existence is none of the sender's business).
fn owned<'a>(up: Option<&'a Upload>, from: &PeerId, key: &ShareKey) -> Result<&'a Upload, NodeError> {
    match up {
        Some(u) if u.owner == *from && u.key == *key => Ok(u),
        _ => Err(NodeError::NoSuchUpload),
    }
}
