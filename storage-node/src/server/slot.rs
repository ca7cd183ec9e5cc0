//! Mutable slots at the node: a new version of a slot share is accepted only with the slot key's
//! signature (checked against a verifying key that names the slot's storage index) and only as a
//! compare-and-swap on the version it replaces. Each version's share is stored like an immutable
//! share under the version's own storage index, so the previous version stays readable until the
//! new one is committed, and reads, audits and repairs work as for files.

use std::collections::HashMap;

use bytes::Bytes;

use blackbox_core::{SignedSlotHeader, SlotVerifyCap};
use blackbox_net::wire::{Si, SlotGroup, UploadId, MAX_SLOT_GROUPS};
use blackbox_net::{PeerId, Response};

use super::pay::Bill;
use super::{Reply, StorageServer};
use crate::error::NodeError;
use crate::store::{ShareKey, ShareStore};

/// How long a replaced version's share stays readable.
pub const REPLACED_GRACE_SECS: u64 = 600;

/// A slot version whose share is being uploaded.
#[derive(Debug, Clone)]
pub(super) struct SlotPending {
    key: ShareKey,
    header: Vec<u8>,
    replaces: u64,
}

/// Slot versions being uploaded, by upload id.
pub(super) type PendingSlots = HashMap<UploadId, SlotPending>;

impl<S: ShareStore> StorageServer<S> {
    /// The current version's sequence of a slot share (0: none).
    fn current_sequence(&self, key: &ShareKey) -> Result<u64, NodeError> {
        match self.store.slot(key)? {
            Some(bytes) => Ok(SignedSlotHeader::decode(&bytes).map_err(NodeError::BadSlot)?.header.sequence),
            None => Ok(0),
        }
    }

    fn check_swap(&self, key: &ShareKey, replaces: u64) -> Result<(), NodeError> {
        let current = self.current_sequence(key)?;
        if current != replaces {
            return Err(NodeError::Conflict { current, replaces });
        }
        Ok(())
    }

    /// Checks a new version's signed header and reserves space for its share.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn slot_allocate(
        &self,
        from: &PeerId,
        (si, share): (Si, u8),
        verifying_key: [u8; 32],
        header: &Bytes,
        replaces: u64,
        lease: u32,
    ) -> Reply {
        let signed = SignedSlotHeader::decode(header).map_err(NodeError::BadSlot)?;
        let cap = SlotVerifyCap { verifying_key };
        if cap.storage_index() != si {
            return Err(NodeError::BadSlot(blackbox_core::SlotError::WrongSlot));
        }
        signed.verify(&cap).map_err(NodeError::BadSlot)?;
        let seq = signed.header.sequence;
        if seq <= replaces {
            return Err(NodeError::SlotNotNewer { sequence: seq, replaces });
        }
        let key = ShareKey { si, share };
        self.check_swap(&key, replaces)?;
        let sh = &signed.header.share_header;
        let vkey = ShareKey { si: signed.header.version_index(), share };
        let params = (sh.params.k() as u8, sh.params.n() as u8, sh.params.segment_size());
        let answer = self.allocate(from, vkey, params, sh.size, lease)?;
        match answer {
            Response::Allocated { already_have: false, upload } => {
                let pending = SlotPending { key, header: header.to_vec(), replaces };
                let mut all = self.slot_pending.lock().unwrap_or_else(|p| p.into_inner());
                // Versions whose upload expired or was aborted go with it (bounded by the uploads).
                all.retain(|id, _| self.upload_exists(*id));
                all.insert(upload, pending);
            }
            // The version's share is stored already (a retried write): make it current.
            Response::Allocated { already_have: true, .. } => {
                let _locks = self.key_locks(&[key, vkey]);
                self.check_swap(&key, replaces)?;
                self.set_current(&key, header, replaces)?;
            }
            _ => {}
        }
        Ok(answer)
    }

    /// Commits an uploaded version share and makes it the slot share's current version, if the
    /// slot still holds the version it replaces; the replaced version's share is then deleted.
    pub(super) fn slot_commit(&self, from: &PeerId, (si, share): (Si, u8), upload: UploadId, bill: &Bill) -> Reply {
        let key = ShareKey { si, share };
        let pending = {
            let mut all = self.slot_pending.lock().unwrap_or_else(|p| p.into_inner());
            // Another peer's commit of this upload leaves it untouched.
            let vkey = all
                .get(&upload)
                .and_then(|p| SignedSlotHeader::decode(&p.header).ok())
                .map(|h| ShareKey { si: h.header.version_index(), share });
            if !vkey.is_some_and(|v| self.owns_upload(from, &v, upload)) {
                return Err(NodeError::NoSuchUpload);
            }
            match all.get(&upload) {
                Some(p) if p.key == key => all.remove(&upload),
                _ => None,
            }
        };
        let pending = pending.ok_or(NodeError::NoSuchUpload)?;
        let signed = SignedSlotHeader::decode(&pending.header).map_err(NodeError::BadSlot)?;
        let vkey = ShareKey { si: signed.header.version_index(), share };
        let _locks = self.key_locks(&[key, vkey]);
        if let Err(e) = self.check_swap(&key, pending.replaces) {
            // Lost the race: nothing is stored or billed for this version.
            let _ = self.abort(from, vkey, upload);
            return Err(e);
        }
        let share_header = Bytes::from(signed.header.share_header.encode());
        if let Err(e) = self.commit_locked(from, vkey, upload, &share_header, bill) {
            // Refused for want of payment (say), the upload stays: so does its version.
            if self.upload_exists(upload) {
                self.slot_pending.lock().unwrap_or_else(|p| p.into_inner()).insert(upload, pending);
            }
            return Err(e);
        }
        self.set_current(&key, &pending.header, pending.replaces)?;
        Ok(Response::Ok)
    }

    /// Records `header` as the current version; the replaced version's share stays readable for
    /// [`REPLACED_GRACE_SECS`] (readers that started on it finish), then the lease sweep deletes it.
    fn set_current(&self, key: &ShareKey, header: &[u8], replaces: u64) -> Result<(), NodeError> {
        let old = match self.store.slot(key)? {
            Some(bytes) => Some(SignedSlotHeader::decode(&bytes).map_err(NodeError::BadSlot)?),
            None => None,
        };
        self.store.set_slot(key, header)?;
        let Some(old) = old.filter(|o| o.header.sequence == replaces && replaces > 0) else { return Ok(()) };
        let old = ShareKey { si: old.header.version_index(), share: key.share };
        let until = blackbox_util::now_secs() + REPLACED_GRACE_SECS;
        if self.store.lease(&old)?.is_some_and(|e| e > until) {
            self.store.set_lease(&old, until)?;
        }
        Ok(())
    }

    /// The current version of every share of a slot held here, grouped by version (highest
    /// sequence first; at most [`MAX_SLOT_GROUPS`] versions).
    pub(super) fn slot_read(&self, si: Si) -> Reply {
        let mut groups: Vec<(u64, SlotGroup)> = Vec::new();
        for (share, header) in self.reported_slots(&si, self.store.slots(&si)?) {
            match groups.iter_mut().find(|(_, g)| g.header == header) {
                Some((_, g)) => g.shares.push(share),
                None => {
                    let seq = SignedSlotHeader::decode(&header).map_err(NodeError::BadSlot)?.header.sequence;
                    groups.push((seq, SlotGroup { shares: vec![share], header: header.into() }));
                }
            }
        }
        groups.sort_by_key(|g| std::cmp::Reverse(g.0));
        groups.truncate(MAX_SLOT_GROUPS);
        Ok(Response::Slot(groups.into_iter().map(|(_, g)| g).collect()))
    }
}
