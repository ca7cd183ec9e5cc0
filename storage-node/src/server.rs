//! Request logic of a storage node, independent of the transport.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use blackbox_core::{hashtree, EncodingParams, FileLayout, Hash, ShareHeader};
use blackbox_net::wire::{Si, MAX_BLOCKS, MAX_LEAVES, MAX_MESSAGE};
use blackbox_net::{ErrorCode, NodeStatus, PeerId, Request, RequestHandler, Response};
use blackbox_payments::Usage;
use blackbox_proofs::{BlockTree, Challenge};

use crate::daemon::now_secs;
use crate::store::{ShareKey, ShareMeta, ShareStore, StoreError};

/// An upload in progress: who owns it, its expected layout and the leaf hashes received so far.
struct Upload {
    owner: PeerId,
    layout: FileLayout,
    leaves: Vec<Option<Hash>>,
    reserved: u64,
    touched: Instant,
    /// Lease length asked for at allocation (already clamped).
    lease_secs: u64,
}

/// TEST ONLY misbehaviour, to prove that clients and auditors catch it.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Corrupt every block whose index is a multiple of this in reads and proofs (1 = every
    /// block, 100 = 1% of blocks; 0 = off), as a failing disk would.
    pub corrupt_every: u64,
    /// Answer challenges with the data of another share the node holds.
    pub proof_from_other_share: bool,
    /// Wait this long before answering a challenge.
    pub proof_delay: Duration,
}

/// How long shares are leased for.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    /// Lease when the client asks for none (`lease_secs` = 0).
    pub default_secs: u64,
    /// Longest lease granted; longer requests are shortened to this.
    pub max_secs: u64,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self { default_secs: 31 * 86_400, max_secs: 366 * 86_400 }
    }
}

impl LeasePolicy {
    fn grant(&self, asked: u32) -> u64 {
        if asked == 0 {
            self.default_secs.min(self.max_secs)
        } else {
            u64::from(asked).min(self.max_secs)
        }
    }
}

struct State {
    uploads: HashMap<ShareKey, Upload>,
    /// Bytes of committed shares.
    committed: u64,
    shares: u64,
}

impl State {
    fn reserved(&self) -> u64 {
        self.uploads.values().map(|u| u.reserved).sum()
    }
}

/// The storage node's logic: allocation within quota, per-block verification, atomic commit.
pub struct StorageServer<S> {
    store: S,
    quota: u64,
    upload_timeout: Duration,
    state: Mutex<State>,
    /// The node's current signed offer, as served to clients.
    offer: Mutex<Option<Bytes>>,
    leases: LeasePolicy,
    faults: Mutex<Faults>,
    /// Payment channels and billing; `None`: the node serves for free.
    billing: Option<std::sync::Arc<crate::billing::Billing>>,
}

type Reply = Result<Response, Response>;

/// Most blocks of all uploads in progress together: bounds the memory (33 bytes a block) that
/// allocations can make a node hold, whatever the quota. 2^21 blocks is 2 TiB of 3-of-10 file data.
const MAX_PENDING_BLOCKS: usize = 1 << 21;

fn internal(e: StoreError) -> Response {
    warn!(error = %e, "store failure");
    Response::error(ErrorCode::Internal, format!("storage failure: {e}"))
}

impl<S: ShareStore> StorageServer<S> {
    /// Wraps `store`; drops uploads a crash left unfinished and counts committed bytes.
    pub fn new(store: S, quota: u64, upload_timeout: Duration) -> Result<Self, StoreError> {
        let unfinished = store.unfinished_uploads()?;
        for key in &unfinished {
            store.abort_upload(key)?;
        }
        if !unfinished.is_empty() {
            info!(count = unfinished.len(), "discarded unfinished uploads left by a previous run");
        }
        let (shares, committed) = store.totals()?;
        let state = State { uploads: HashMap::new(), committed, shares };
        Ok(Self {
            store,
            quota,
            upload_timeout,
            state: Mutex::new(state),
            offer: Mutex::new(None),
            leases: LeasePolicy::default(),
            faults: Mutex::new(Faults::default()),
            billing: None,
        })
    }

    /// Bills storage, egress and CPU through payment channels.
    pub fn with_billing(mut self, billing: std::sync::Arc<crate::billing::Billing>) -> Self {
        self.billing = Some(billing);
        self
    }

    /// The billing, if the node takes payments.
    pub fn billing(&self) -> Option<&std::sync::Arc<crate::billing::Billing>> {
        self.billing.as_ref()
    }

    /// Bills `delta` to `from`'s channel (nothing without billing).
    fn charge(&self, from: &PeerId, delta: Usage, what: &str) -> Result<(), Response> {
        match &self.billing {
            Some(b) => b.charge(from, delta, what),
            None => Ok(()),
        }
    }

    /// Sets how long shares are leased for.
    pub fn with_leases(mut self, policy: LeasePolicy) -> Self {
        self.leases = policy;
        self
    }

    /// TEST ONLY: makes the node misbehave as `faults` says.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    fn faults(&self) -> Faults {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Deletes every share whose lease expired before `now` and releases its space; returns how
    /// many shares and bytes were collected.
    pub fn collect_expired(&self, now: u64) -> Result<(u64, u64), StoreError> {
        let (mut count, mut bytes) = (0, 0);
        for key in self.store.expired(now)? {
            if let Some(len) = self.store.delete_share(&key)? {
                let mut st = self.lock();
                st.committed = st.committed.saturating_sub(len);
                st.shares = st.shares.saturating_sub(1);
                count += 1;
                bytes += len;
                info!(si = %hex_prefix(&key.si), share = key.share, bytes = len, "lease expired: share deleted");
            }
        }
        Ok((count, bytes))
    }

    /// Replaces the signed offer the node serves.
    pub fn set_offer(&self, offer: Bytes) {
        *self.offer.lock().unwrap_or_else(|p| p.into_inner()) = Some(offer);
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters for `Status`.
    pub fn status(&self) -> NodeStatus {
        let st = self.lock();
        NodeStatus {
            shares: st.shares,
            pending: st.uploads.len() as u64,
            used: st.committed + st.reserved(),
            quota: self.quota,
        }
    }

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
    fn allocate(&self, from: &PeerId, key: ShareKey, (k, n, seg): (u8, u8, u32), size: u64, lease: u32) -> Reply {
        let params = EncodingParams::new(k as usize, n as usize, seg)
            .map_err(|e| Response::error(ErrorCode::Invalid, e.to_string()))?;
        if key.share as usize >= params.n() {
            return Err(Response::error(ErrorCode::Invalid, "share number not below n"));
        }
        if self.store.meta(&key).map_err(internal)?.is_some() {
            return Ok(Response::Allocated { already_have: true });
        }
        self.expire_idle_uploads();
        let layout = FileLayout::new(params, size);
        let need = layout.share_len();
        let blocks = usize::try_from(layout.num_segments())
            .map_err(|_| Response::error(ErrorCode::Invalid, "file too large"))?;
        {
            let mut st = self.lock();
            let (previous, previous_blocks) = st.uploads.get(&key).map_or((0, 0), |u| (u.reserved, u.leaves.len()));
            let in_flight = st.uploads.values().map(|u| u.leaves.len()).sum::<usize>() - previous_blocks;
            if in_flight.saturating_add(blocks) > MAX_PENDING_BLOCKS {
                return Err(Response::error(
                    ErrorCode::QuotaExceeded,
                    format!("node busy: {in_flight} blocks of uploads in progress, limit {MAX_PENDING_BLOCKS}"),
                ));
            }
            let used = st.committed + st.reserved() - previous;
            if used.saturating_add(need) > self.quota {
                return Err(Response::error(
                    ErrorCode::QuotaExceeded,
                    format!("node full: {used} of {} bytes used, share needs {need}", self.quota),
                ));
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
            return Err(internal(e));
        }
        Ok(Response::Allocated { already_have: false })
    }

    fn write_blocks(&self, from: &PeerId, key: ShareKey, start: u64, blocks: &[Bytes]) -> Reply {
        // Hash before taking the lock; check, write and record under it, so an upload replaced
        // in between can never receive bytes meant for the old one.
        let leaves: Vec<Hash> = blocks.iter().map(|b| hashtree::leaf(b)).collect();
        let mut st = self.lock();
        let up = st.uploads.get_mut(&key).ok_or_else(|| Response::error(ErrorCode::NotFound, "no such upload"))?;
        if up.owner != *from {
            return Err(Response::error(ErrorCode::Invalid, "upload belongs to another client"));
        }
        let end = start.checked_add(blocks.len() as u64).filter(|&e| e <= up.layout.num_segments());
        if end.is_none() || blocks.is_empty() {
            return Err(Response::error(ErrorCode::Invalid, "block range outside the share"));
        }
        for (i, block) in blocks.iter().enumerate() {
            let index = start + i as u64;
            let want = up.layout.block_len(index);
            if block.len() != want {
                return Err(Response::error(ErrorCode::Invalid, format!("block {index} must be {want} bytes")));
            }
        }
        for (i, (block, leaf)) in blocks.iter().zip(leaves).enumerate() {
            let index = start + i as u64;
            self.store.write_at(&key, up.layout.block_offset(index), block).map_err(internal)?;
            up.leaves[index as usize] = Some(leaf);
        }
        up.touched = Instant::now();
        Ok(Response::Ok)
    }

    fn commit(&self, from: &PeerId, key: ShareKey, header: &Bytes) -> Reply {
        let upload = {
            let mut st = self.lock();
            match st.uploads.get(&key) {
                Some(up) if up.owner == *from => {}
                Some(_) => return Err(Response::error(ErrorCode::Invalid, "upload belongs to another client")),
                None => return Err(Response::error(ErrorCode::NotFound, "no such upload")),
            }
            st.uploads.remove(&key).ok_or_else(|| Response::error(ErrorCode::NotFound, "no such upload"))?
        };
        // Storage rent for the whole lease, billed before the share becomes visible.
        let rent = Usage::default().with_storage(upload.reserved, upload.lease_secs);
        if let Err(e) = self.charge(from, rent, "storing this share") {
            self.lock().uploads.insert(key, upload);
            return Err(e);
        }
        let result = self.verify_and_store(key, &upload, header);
        if result.is_err() {
            if let Some(b) = &self.billing {
                b.uncharge(from, rent);
            }
        }
        if result.is_err() {
            if let Err(e) = self.store.abort_upload(&key) {
                warn!(error = %e, "failed to drop rejected upload");
            }
        } else {
            let mut st = self.lock();
            st.committed += upload.reserved;
            st.shares += 1;
        }
        result
    }

    fn verify_and_store(&self, key: ShareKey, up: &Upload, header: &Bytes) -> Reply {
        let leaves: Vec<Hash> = up
            .leaves
            .iter()
            .enumerate()
            .map(|(i, l)| l.ok_or_else(|| Response::error(ErrorCode::Invalid, format!("block {i} missing"))))
            .collect::<Result<_, _>>()?;
        let parsed = ShareHeader::decode(header).map_err(|e| Response::error(ErrorCode::Invalid, e.to_string()))?;
        if parsed.layout() != up.layout {
            return Err(Response::error(ErrorCode::Invalid, "header does not match the allocation"));
        }
        if parsed.share_roots[key.share as usize] != hashtree::share_root(&leaves) {
            return Err(Response::error(ErrorCode::Invalid, "blocks do not match the share root in the header"));
        }
        let meta = ShareMeta { header: header.to_vec(), num_blocks: leaves.len() as u64, share_len: up.reserved };
        let expires = now_secs().saturating_add(up.lease_secs);
        self.store.commit(&key, &meta, &leaves, expires).map_err(internal)?;
        Ok(Response::Ok)
    }

    fn abort(&self, from: &PeerId, key: ShareKey) -> Reply {
        let mut st = self.lock();
        match st.uploads.get(&key) {
            Some(up) if up.owner == *from => {
                st.uploads.remove(&key);
                drop(st);
                self.store.abort_upload(&key).map_err(internal)?;
                Ok(Response::Ok)
            }
            _ => Err(Response::error(ErrorCode::NotFound, "no such upload")),
        }
    }

    fn committed_meta(&self, key: &ShareKey) -> Result<ShareMeta, Response> {
        self.store.meta(key).map_err(internal)?.ok_or_else(|| Response::error(ErrorCode::NotFound, "no such share"))
    }

    fn read_blocks(&self, from: &PeerId, key: ShareKey, start: u64, count: u32) -> Reply {
        let meta = self.committed_meta(&key)?;
        if start >= meta.num_blocks || count == 0 {
            return Err(Response::error(ErrorCode::Invalid, "block range outside the share"));
        }
        let layout = ShareHeader::decode(&meta.header)
            .map_err(|_| internal(StoreError::Corrupt("stored share header")))?
            .layout();
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
        if let Some(b) = &self.billing {
            b.covers(from, egress, "serving these blocks")?;
        }
        let bytes = self
            .store
            .read_at(&key, offset, len)
            .map_err(internal)?
            .ok_or_else(|| Response::error(ErrorCode::Internal, "share data is missing on disk"))?;
        // Billed once the bytes are in hand, so a failed read costs the payer nothing.
        self.charge(from, egress, "serving these blocks")?;
        let mut blocks = Vec::with_capacity((stop - start) as usize);
        let mut at = 0;
        let every = self.faults().corrupt_every;
        for index in start..stop {
            let bl = layout.block_len(index);
            let block = bytes.slice(at..at + bl);
            blocks.push(if every > 0 && index % every == 0 { corrupt(&block) } else { block });
            at += bl;
        }
        Ok(Response::Blocks(blocks))
    }

    /// Proves the pieces a challenge selects, from the blocks as they are on disk now.
    fn challenge(&self, challenge: &Challenge) -> Reply {
        let faults = self.faults();
        if !faults.proof_delay.is_zero() {
            std::thread::sleep(faults.proof_delay);
        }
        let mut key = ShareKey { si: challenge.storage_index, share: challenge.share };
        self.committed_meta(&key)?;
        if faults.proof_from_other_share {
            if let Some(other) = self.other_share(&key)? {
                key = other;
            }
        }
        let meta = self.committed_meta(&key)?;
        let layout = ShareHeader::decode(&meta.header)
            .map_err(|_| internal(StoreError::Corrupt("stored share header")))?
            .layout();
        let leaves = self.store.leaves(&key, 0, u32::MAX).map_err(internal)?;
        if leaves.len() as u64 != meta.num_blocks || meta.num_blocks != layout.num_segments() {
            return Err(internal(StoreError::Corrupt("stored leaf hashes")));
        }
        let tree = BlockTree::new(leaves);
        let proof = blackbox_proofs::prove(challenge, &layout, &tree, |index| {
            let len = layout.block_len(index);
            let block = self
                .store
                .read_at(&key, layout.block_offset(index), len)?
                .ok_or(StoreError::Io(format!("block {index} is missing on disk")))?;
            let every = faults.corrupt_every;
            Ok(if every > 0 && index % every == 0 { corrupt(&block) } else { block }.to_vec())
        })
        .map_err(internal)?
        .map_err(|e| Response::error(ErrorCode::Invalid, e.to_string()))?;
        Ok(Response::Proof(proof.encode().into()))
    }

    /// Another committed share than `key` (test fault only): scans the shares of `key`'s file, then
    /// any share the store lists as expiring.
    fn other_share(&self, key: &ShareKey) -> Result<Option<ShareKey>, Response> {
        let same_file = self.store.list_shares(&key.si).map_err(internal)?;
        if let Some(&share) = same_file.iter().find(|&&s| s != key.share) {
            return Ok(Some(ShareKey { si: key.si, share }));
        }
        let all = self.store.expired(u64::MAX).map_err(internal)?;
        Ok(all.into_iter().find(|k| k != key))
    }

    fn renew(&self, from: &PeerId, si: Si, lease: u32) -> Reply {
        let shares = self.store.list_shares(&si).map_err(internal)?;
        if shares.is_empty() {
            return Err(Response::error(ErrorCode::NotFound, "no shares of this file here"));
        }
        let granted = self.leases.grant(lease);
        let mut rent = Usage::default();
        for share in &shares {
            let meta = self.committed_meta(&ShareKey { si, share: *share })?;
            rent = rent.with_storage(meta.share_len, granted);
        }
        self.charge(from, rent, "renewing these leases")?;
        let expires = now_secs().saturating_add(granted);
        for share in &shares {
            if let Err(e) = self.store.set_lease(&ShareKey { si, share: *share }, expires) {
                if let Some(b) = &self.billing {
                    b.uncharge(from, rent);
                }
                return Err(internal(e));
            }
        }
        Ok(Response::Renewed { shares: shares.len() as u32, expires })
    }

    fn dispatch(&self, from: &PeerId, req: Request) -> Reply {
        let key = |si: Si, share: u8| ShareKey { si, share };
        match req {
            Request::Status => Ok(Response::Status(self.status())),
            Request::Allocate { si, share, k, n, segment_size, size, lease_secs } => {
                self.allocate(from, key(si, share), (k, n, segment_size), size, lease_secs)
            }
            Request::WriteBlocks { si, share, start, blocks } => {
                self.write_blocks(from, key(si, share), start, &blocks)
            }
            Request::Commit { si, share, header } => self.commit(from, key(si, share), &header),
            Request::Abort { si, share } => self.abort(from, key(si, share)),
            Request::ListShares { si } => Ok(Response::Shares(self.store.list_shares(&si).map_err(internal)?)),
            Request::ReadHeader { si, share } => {
                Ok(Response::Header(self.committed_meta(&key(si, share))?.header.into()))
            }
            Request::ReadLeaves { si, share, start, count } => {
                let k = key(si, share);
                self.committed_meta(&k)?;
                Ok(Response::Leaves(self.store.leaves(&k, start, count.min(MAX_LEAVES)).map_err(internal)?))
            }
            Request::ReadBlocks { si, share, start, count } => self.read_blocks(from, key(si, share), start, count),
            Request::GetOffer => match self.offer.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                Some(offer) => Ok(Response::Offer(offer)),
                None => Err(Response::error(ErrorCode::NotFound, "this node publishes no offer")),
            },
            Request::Challenge { si, share, nonce, count } => {
                let c = Challenge { storage_index: si, share, nonce, count };
                c.check().map_err(|e| Response::error(ErrorCode::Malformed, e.to_string()))?;
                self.challenge(&c)
            }
            Request::Renew { si, lease_secs } => self.renew(from, si, lease_secs),
            Request::OpenChannel { params } => self.billing_or_free()?.open_channel(from, &params),
            Request::Paid { update, inner } => {
                if let Some(b) = &self.billing {
                    b.pay(from, &update)?;
                }
                self.dispatch(from, *inner)
            }
            Request::ChannelStatus { txid, vout } => {
                use bitcoin::hashes::Hash;
                let funding = bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array(txid), vout };
                self.billing_or_free()?.status(funding)
            }
            Request::LeaseCpu { cores, secs } => {
                let core_secs = u64::from(cores) * u64::from(secs);
                self.charge(from, Usage::default().with_cpu(core_secs), "this CPU lease")?;
                info!(cores, secs, "CPU lease granted");
                Ok(Response::Ok)
            }
        }
    }
}

/// A block as a failing disk would return it: every 64th byte flipped.
impl<S: ShareStore> StorageServer<S> {
    fn billing_or_free(&self) -> Result<&crate::billing::Billing, Response> {
        self.billing.as_deref().ok_or_else(|| Response::error(ErrorCode::Invalid, "this node takes no payments"))
    }
}

fn corrupt(block: &Bytes) -> Bytes {
    let mut v = block.to_vec();
    for b in v.iter_mut().step_by(64) {
        *b ^= 0x20;
    }
    Bytes::from(v)
}

fn hex_prefix(si: &[u8; 32]) -> String {
    si[..6].iter().map(|b| format!("{b:02x}")).collect()
}

impl<S: ShareStore> RequestHandler for StorageServer<S> {
    fn handle(&self, from: &PeerId, req: Request) -> Response {
        self.dispatch(from, req).unwrap_or_else(|e| e)
    }

    /// Block writes only hash and copy into the page cache (durability comes at commit, on a
    /// blocking thread); status and offer are in memory. Everything else may read or fsync the disk.
    fn runs_inline(&self, req: &Request) -> bool {
        matches!(req, Request::WriteBlocks { .. } | Request::Status | Request::GetOffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use blackbox_core::FileEncoder;

    fn server(quota: u64) -> StorageServer<MemoryStore> {
        StorageServer::new(MemoryStore::new(), quota, Duration::from_secs(600)).unwrap()
    }

    fn err_code(r: Response) -> ErrorCode {
        match r {
            Response::Error { code, .. } => code,
            other => panic!("expected error, got {other:?}"),
        }
    }

    #[test]
    fn upload_verify_commit_read() {
        let s = server(1 << 30);
        let me = PeerId::random();
        let params = EncodingParams::new(2, 3, 4096).unwrap();
        let data = vec![3u8; 10_000];
        let mut enc = FileEncoder::new([1; 32], params, data.len() as u64);
        let mut share1 = Vec::new();
        for chunk in data.chunks(4096) {
            share1.push(enc.encode_next(chunk).unwrap().swap_remove(1).to_vec());
        }
        let (header, _) = enc.finish().unwrap();
        let si = [9; 32];
        let alloc = Request::Allocate { si, share: 1, k: 2, n: 3, segment_size: 4096, size: 10_000, lease_secs: 0 };
        assert_eq!(s.handle(&me, alloc.clone()), Response::Allocated { already_have: false });
        // Before commit nothing is visible.
        assert_eq!(s.handle(&me, Request::ListShares { si }), Response::Shares(vec![]));
        let header_bytes = Bytes::from(header.encode());
        // Commit with missing blocks is refused.
        let commit = Request::Commit { si, share: 1, header: header_bytes.clone() };
        assert_eq!(err_code(s.handle(&me, commit.clone())), ErrorCode::Invalid);
        assert_eq!(s.handle(&me, alloc.clone()), Response::Allocated { already_have: false });
        // A wrong-size block and a foreign writer are refused.
        let bad = Request::WriteBlocks { si, share: 1, start: 0, blocks: vec![Bytes::from_static(b"xx")] };
        assert_eq!(err_code(s.handle(&me, bad)), ErrorCode::Invalid);
        let foreign = Request::WriteBlocks { si, share: 1, start: 0, blocks: vec![share1[0].clone().into()] };
        assert_eq!(err_code(s.handle(&PeerId::random(), foreign)), ErrorCode::Invalid);
        for (i, b) in share1.iter().enumerate() {
            let w = Request::WriteBlocks { si, share: 1, start: i as u64, blocks: vec![b.clone().into()] };
            assert_eq!(s.handle(&me, w), Response::Ok);
        }
        assert_eq!(s.handle(&me, commit), Response::Ok);
        assert_eq!(s.handle(&me, Request::ListShares { si }), Response::Shares(vec![1]));
        assert_eq!(s.handle(&me, alloc), Response::Allocated { already_have: true });
        match s.handle(&me, Request::ReadBlocks { si, share: 1, start: 1, count: 10 }) {
            Response::Blocks(b) => assert_eq!(b, share1[1..].iter().cloned().map(Bytes::from).collect::<Vec<_>>()),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.status().shares, 1);
    }

    /// Uploads share `share` of a 3-of-4 file of `size` bytes with a `lease`; returns its header.
    fn put_share(s: &StorageServer<MemoryStore>, si: Si, share: u8, size: usize, lease: u32) -> ShareHeader {
        let me = PeerId::random();
        let params = EncodingParams::new(3, 4, 4096).unwrap();
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut enc = FileEncoder::new([si[0]; 32], params, size as u64);
        let mut blocks = Vec::new();
        for chunk in data.chunks(4096) {
            blocks.push(enc.encode_next(chunk).unwrap().swap_remove(share as usize));
        }
        let (header, _) = enc.finish().unwrap();
        let alloc =
            Request::Allocate { si, share, k: 3, n: 4, segment_size: 4096, size: size as u64, lease_secs: lease };
        assert_eq!(s.handle(&me, alloc), Response::Allocated { already_have: false });
        for (i, b) in blocks.into_iter().enumerate() {
            let w = Request::WriteBlocks { si, share, start: i as u64, blocks: vec![b] };
            assert_eq!(s.handle(&me, w), Response::Ok);
        }
        assert_eq!(s.handle(&me, Request::Commit { si, share, header: header.encode().into() }), Response::Ok);
        header
    }

    fn challenge(s: &StorageServer<MemoryStore>, header: &ShareHeader, si: Si, share: u8) -> Result<(), String> {
        let c = Challenge { storage_index: si, share, nonce: [7; 32], count: 64 };
        match s.handle(&PeerId::random(), Request::Challenge { si, share, nonce: c.nonce, count: c.count }) {
            Response::Proof(bytes) => {
                let proof = blackbox_proofs::Proof::decode(&bytes).map_err(|e| e.to_string())?;
                blackbox_proofs::verify(&c, header, &proof).map_err(|e| e.to_string())
            }
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn challenges_are_answered_from_the_stored_blocks() {
        let s = server(1 << 30);
        let (a, b) = ([1; 32], [2; 32]);
        let ha = put_share(&s, a, 0, 100_000, 0);
        let hb = put_share(&s, b, 1, 50_000, 0);
        challenge(&s, &ha, a, 0).unwrap();
        challenge(&s, &hb, b, 1).unwrap();
        // Not held, or a bad count: errors, not proofs.
        assert_eq!(
            err_code(s.handle(&PeerId::random(), Request::Challenge { si: a, share: 3, nonce: [0; 32], count: 1 })),
            ErrorCode::NotFound
        );
        assert_eq!(
            err_code(s.handle(&PeerId::random(), Request::Challenge { si: a, share: 0, nonce: [0; 32], count: 0 })),
            ErrorCode::Malformed
        );
        // A disk that lost some blocks, or a node answering from another share, fails.
        s.set_faults(Faults { corrupt_every: 5, ..Faults::default() });
        assert!(challenge(&s, &ha, a, 0).is_err());
        s.set_faults(Faults { proof_from_other_share: true, ..Faults::default() });
        assert!(challenge(&s, &ha, a, 0).is_err());
        s.set_faults(Faults::default());
        challenge(&s, &ha, a, 0).unwrap();
    }

    #[test]
    fn expired_leases_are_collected_and_renewed_ones_survive() {
        let s = server(1 << 30).with_leases(LeasePolicy { default_secs: 100, max_secs: 1000 });
        let (a, b) = ([1; 32], [2; 32]);
        put_share(&s, a, 0, 20_000, 50);
        put_share(&s, b, 0, 20_000, 0);
        let now = now_secs();
        let used = s.status().used;
        assert_eq!(
            s.store().lease(&ShareKey { si: a, share: 0 }).unwrap().map(|e| e.saturating_sub(now) <= 50),
            Some(true)
        );
        // Longer than the maximum is shortened to it.
        match s.handle(&PeerId::random(), Request::Renew { si: b, lease_secs: 5000 }) {
            Response::Renewed { shares: 1, expires } => assert!(expires <= now_secs() + 1000 && expires >= now + 999),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err_code(s.handle(&PeerId::random(), Request::Renew { si: [3; 32], lease_secs: 10 })),
            ErrorCode::NotFound
        );
        assert_eq!(s.collect_expired(now).unwrap(), (0, 0));
        let (count, bytes) = s.collect_expired(now + 500).unwrap();
        assert_eq!(count, 1);
        assert_eq!(s.status().used, used - bytes);
        assert_eq!(s.status().shares, 1);
        assert_eq!(s.handle(&PeerId::random(), Request::ListShares { si: a }), Response::Shares(vec![]));
        assert_eq!(s.handle(&PeerId::random(), Request::ListShares { si: b }), Response::Shares(vec![0]));
    }

    #[test]
    fn wrong_blocks_fail_commit_and_quota_is_enforced() {
        let s = server(10_000);
        let me = PeerId::random();
        let si = [2; 32];
        let alloc = Request::Allocate { si, share: 0, k: 1, n: 2, segment_size: 4096, size: 4096, lease_secs: 0 };
        assert_eq!(s.handle(&me, alloc), Response::Allocated { already_have: false });
        let len = FileLayout::new(EncodingParams::new(1, 2, 4096).unwrap(), 4096).block_len(0);
        let w = Request::WriteBlocks { si, share: 0, start: 0, blocks: vec![vec![0u8; len].into()] };
        assert_eq!(s.handle(&me, w), Response::Ok);
        let header =
            ShareHeader { params: EncodingParams::new(1, 2, 4096).unwrap(), size: 4096, share_roots: vec![[0; 32]; 2] };
        let commit = Request::Commit { si, share: 0, header: header.encode().into() };
        assert_eq!(err_code(s.handle(&me, commit)), ErrorCode::Invalid);
        assert_eq!(s.status().used, 0, "rejected upload releases its reservation");
        let big = Request::Allocate { si, share: 1, k: 1, n: 2, segment_size: 4096, size: 1 << 20, lease_secs: 0 };
        assert_eq!(err_code(s.handle(&me, big)), ErrorCode::QuotaExceeded);
        // However large the quota, uploads in progress cannot make the node hold unbounded state.
        let roomy = server(u64::MAX);
        let huge = Request::Allocate { si, share: 0, k: 1, n: 1, segment_size: 4096, size: 4096 << 22, lease_secs: 0 };
        match roomy.handle(&me, huge) {
            Response::Error { code: ErrorCode::QuotaExceeded, message } => assert!(message.contains("busy")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
