//! Mutable slots at the client: read the highest version that has k verified shares; publish a
//! new version as a compare-and-swap on what each node holds, leader share first.
//!
//! Every header a node reports is checked against the slot's verifying key; a node can hide a
//! version (readers out-vote it with the others) but cannot invent one. The version's content is
//! an ordinary encrypted, erasure-coded file under the version's own storage index.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use blackbox_core::{
    file_root, EncodingParams, FileEncoder, FileKey, SignedSlotHeader, SlotHeader, SlotReadCap, SlotVerifyCap,
    SlotWriteCap, StorageIndex, VerifyCap,
};
use blackbox_net::wire::UploadId;
use blackbox_net::{PeerId, Request, Response, Transport};

use crate::reputation::Outcome;
use crate::upload::{permuted, storage_rent, write_share};
use crate::{servers_of_happiness, Client, ClientError, NodeRef, UploadOptions};

/// Times a read starts over when the version it read was replaced meanwhile.
const READ_ATTEMPTS: u32 = 5;
/// Largest slot content (a directory's root node fits many times over).
pub const MAX_SLOT_CONTENT: usize = 4 << 20;

/// One version of a slot as the nodes reported it.
#[derive(Debug, Clone)]
pub struct SlotVersion {
    /// The verified signed header.
    pub header: SignedSlotHeader,
    /// Its encoding, as stored at the nodes.
    pub encoded: Bytes,
    /// Which node holds which share of it.
    pub holders: Vec<(u8, NodeRef)>,
}

impl SlotVersion {
    /// The version's sequence number.
    pub fn sequence(&self) -> u64 {
        self.header.header.sequence
    }

    /// The verify cap of the version's content (an immutable file under its own storage index).
    pub fn content_cap(&self) -> VerifyCap {
        let h = &self.header.header;
        let sh = &h.share_header;
        VerifyCap {
            storage_index: h.version_index(),
            root: file_root(&sh.encode()),
            k: sh.params.k() as u8,
            n: sh.params.n() as u8,
            size: sh.size,
        }
    }

    fn distinct_holders(&self) -> usize {
        let mut s: Vec<u8> = self.holders.iter().map(|(s, _)| *s).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    }
}

/// What the nodes hold of a slot.
#[derive(Debug, Clone, Default)]
pub struct SlotState {
    /// Highest sequence with a valid signature seen anywhere (a new version must exceed it).
    pub max_seen: u64,
    /// The sequence each node holds of each share.
    pub at: HashMap<(PeerId, u8), u64>,
    /// Valid versions, highest sequence first.
    pub versions: Vec<SlotVersion>,
    /// Nodes that answered.
    pub answered: usize,
}

/// A slot as read: the content of one version, its sequence, and what the nodes held.
#[derive(Debug, Clone)]
pub struct SlotRead {
    /// The version's content.
    pub content: Vec<u8>,
    /// The version's sequence (below `state.max_seen` while a newer one is still being written).
    pub sequence: u64,
    /// What the nodes held.
    pub state: SlotState,
}

impl SlotState {
    /// The highest version with at least k shares on the nodes.
    pub fn readable(&self) -> Option<&SlotVersion> {
        self.versions.iter().find(|v| v.distinct_holders() >= v.header.header.share_header.params.k())
    }
}

impl<T: Transport> Client<T> {
    /// Asks every node for its versions of the slot and keeps those whose signature verifies.
    pub async fn slot_state(&self, cap: &SlotVerifyCap) -> SlotState {
        let si = cap.storage_index();
        let asks = self.nodes.iter().map(|n| async move {
            let r = tokio::time::timeout(self.query_timeout, self.call(n, Request::SlotRead { si })).await;
            (n.clone(), r)
        });
        let mut state = SlotState::default();
        for (node, r) in futures::future::join_all(asks).await {
            let groups = match r {
                Ok(Ok(Response::Slot(groups))) => groups,
                Ok(Ok(_)) => continue,
                Ok(Err(_)) | Err(_) => continue,
            };
            state.answered += 1;
            for g in groups {
                let header = match SignedSlotHeader::decode(&g.header).and_then(|h| h.verify(cap).map(|()| h)) {
                    Ok(h) => h,
                    Err(e) => {
                        warn!(peer = %node.peer, error = %e, "node reported a slot version that does not verify");
                        self.note(node.peer, Outcome::BadData);
                        continue;
                    }
                };
                let seq = header.header.sequence;
                state.max_seen = state.max_seen.max(seq);
                for s in &g.shares {
                    state.at.insert((node.peer, *s), seq);
                }
                let holders = g.shares.iter().map(|s| (*s, node.clone()));
                match state.versions.iter_mut().find(|v| v.encoded == g.header) {
                    Some(v) => v.holders.extend(holders),
                    None => state.versions.push(SlotVersion { header, encoded: g.header, holders: holders.collect() }),
                }
            }
        }
        // Highest first; two different versions with one sequence (writers raced): the one
        // more nodes hold, then the smaller header hash, so every reader picks the same one.
        state.versions.sort_by_key(|v| {
            (
                std::cmp::Reverse(v.sequence()),
                std::cmp::Reverse(v.distinct_holders()),
                *blake3::hash(&v.encoded).as_bytes(),
            )
        });
        state
    }

    /// The content of the highest readable version of the slot, with the state it was read from.
    /// A version replaced while it was being read (its shares deleted) is read again as the newer one.
    pub async fn read_slot(&self, cap: &SlotReadCap) -> Result<SlotRead, ClientError> {
        let mut state = self.slot_state(&cap.verify_cap()).await;
        for attempt in 0..READ_ATTEMPTS {
            let Some(v) = state.readable() else { break };
            let last = match self.read_version(cap, v).await {
                Ok(content) => return Ok(SlotRead { content, sequence: v.sequence(), state }),
                Err(e) => {
                    warn!(sequence = v.sequence(), error = %e, "slot version unreadable");
                    Some(e)
                }
            };
            let Some(e) = last else { break };
            let now = self.slot_state(&cap.verify_cap()).await;
            if now.max_seen == state.max_seen && attempt > 0 {
                // Nothing newer: try the older versions too before giving up.
                for v in now.versions.iter().skip(1) {
                    if let Ok(content) = self.read_version(cap, v).await {
                        return Ok(SlotRead { content, sequence: v.sequence(), state: now });
                    }
                }
                return Err(e);
            }
            state = now;
        }
        Err(ClientError::SlotUnreadable { highest: state.max_seen, found: state.answered })
    }

    /// Downloads and verifies one version's content.
    pub async fn read_version(&self, cap: &SlotReadCap, v: &SlotVersion) -> Result<Vec<u8>, ClientError> {
        let h = &v.header.header;
        let size = h.share_header.size;
        if size > MAX_SLOT_CONTENT as u64 {
            return Err(ClientError::SlotTooLarge(size as usize));
        }
        let key = cap.content_key(h.sequence);
        let si = h.version_index();
        let mut out = Vec::with_capacity(size as usize);
        let sink = |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        };
        let range = (0, size, crate::download::SMALL_READS_PREPAY);
        self.download_from(si, &h.share_header, &key, v.holders.clone(), range, sink).await?;
        Ok(out)
    }

    /// Publishes `content` as the next version after what `state` saw: the leader share (0) is
    /// committed first, so of two racing writers the second meets a typed conflict before it
    /// touched anything else; then every other share. Returns the new sequence number.
    pub async fn write_slot(
        &self,
        cap: &SlotWriteCap,
        state: &SlotState,
        content: &[u8],
        opts: &UploadOptions,
    ) -> Result<u64, ClientError> {
        if content.len() > MAX_SLOT_CONTENT {
            return Err(ClientError::SlotTooLarge(content.len()));
        }
        if self.nodes.is_empty() {
            return Err(ClientError::NoNodes);
        }
        let read = cap.read_cap();
        let si = read.verify_cap().storage_index();
        let seq = state.max_seen + 1;
        let (header, blocks) = encode_version(read.content_key(seq), opts.params, content)?;
        let signed = cap.sign(SlotHeader { storage_index: si, sequence: seq, share_header: header });
        let vsi = signed.header.version_index();
        let version = Version { si, vsi, vk: read.verifying_key, seq, encoded: Bytes::from(signed.encode()), blocks };
        let rent = storage_rent(&signed.header.share_header.layout(), opts.lease_secs);
        let targets = self.slot_targets(&si, state, opts.params.n());
        let mut placed: Vec<(u8, NodeRef)> = Vec::new();
        let mut rest = targets.into_iter();
        if let Some((share, node)) = rest.next() {
            let replaces = state.at.get(&(node.peer, share)).copied().unwrap_or(0);
            match self.put_version_share(&version, (share, &node), replaces, opts.lease_secs, rent, true).await {
                Ok(()) => placed.push((share, node)),
                Err(e) if e.is_conflict() => {
                    // A real conflict shows as a newer version; a leader that claims one nobody
                    // can see is stale or lying, and the write goes on without it.
                    if self.slot_state(&read.verify_cap()).await.max_seen > state.max_seen {
                        return Err(e);
                    }
                    warn!(peer = %node.peer, "node refused a version as a conflict but shows no newer one");
                    self.note(node.peer, Outcome::BadData);
                }
                Err(e) => debug!(share, peer = %node.peer, error = %e, "leader share failed"),
            }
        }
        let writes = rest.map(|(share, node)| {
            let replaces = state.at.get(&(node.peer, share)).copied().unwrap_or(0);
            let version = &version;
            async move {
                let r = self.put_version_share(version, (share, &node), replaces, opts.lease_secs, rent, false).await;
                (share, node, r)
            }
        });
        let mut last_error = String::from("no node accepted a share");
        let mut raced = false;
        for (share, node, r) in futures::future::join_all(writes).await {
            match r {
                Ok(()) => placed.push((share, node)),
                Err(e) => {
                    raced |= e.is_conflict();
                    if !e.is_conflict() {
                        self.note(node.peer, Outcome::Failed);
                    }
                    last_error = e.to_string();
                }
            }
        }
        if raced {
            // Some node held another version than we read: ours stands only if every reader
            // now picks it (highest sequence, then most holders, then smallest header hash).
            let now = self.slot_state(&read.verify_cap()).await;
            if now.readable().is_none_or(|v| v.encoded != version.encoded) {
                return Err(ClientError::Conflict { what: format!("slot {}", read.verify_cap()) });
            }
        }
        let pairs: Vec<(u8, PeerId)> = placed.iter().map(|(s, n)| (*s, n.peer)).collect();
        let happiness = servers_of_happiness(&pairs);
        if happiness < opts.happy {
            return Err(ClientError::NotHappy { achieved: happiness, happy: opts.happy, detail: last_error });
        }
        Ok(seq)
    }

    /// Where each share of a new version goes: the node that holds that share now (so its old
    /// version is replaced there), else the least loaded node in the slot's permuted order.
    fn slot_targets(&self, si: &StorageIndex, state: &SlotState, n: usize) -> Vec<(u8, NodeRef)> {
        let order = permuted(&self.nodes, si);
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        let mut out = Vec::with_capacity(n);
        let mut free = Vec::new();
        for share in 0..n as u8 {
            let holder = order.iter().find(|node| state.at.contains_key(&(node.peer, share)));
            match holder {
                Some(node) if load.get(&node.peer).copied().unwrap_or(0) == 0 || order.len() < n => {
                    *load.entry(node.peer).or_default() += 1;
                    out.push((share, node.clone()));
                }
                _ => free.push(share),
            }
        }
        for share in free {
            if let Some(node) = order.iter().min_by_key(|node| load.get(&node.peer).copied().unwrap_or(0)) {
                *load.entry(node.peer).or_default() += 1;
                out.push((share, node.clone()));
            }
        }
        out.sort_by_key(|(s, _)| *s);
        out
    }

    /// Sends one share of a version (see [`Client::send_version_share`]). Past the leader, a node
    /// that holds an older version than the one read (another writer's, which ours supersedes)
    /// is swapped against what it holds now; a newer one there is a conflict.
    pub(crate) async fn put_version_share(
        &self,
        v: &Version,
        (share, node): (u8, &NodeRef),
        mut replaces: u64,
        lease_secs: u32,
        rent: blackbox_payments::Usage,
        leader: bool,
    ) -> Result<(), ClientError> {
        let mut attempt = 0;
        loop {
            let r = self.send_version_share(v, share, node, replaces, lease_secs, rent).await;
            let current = match &r {
                Err(e) if e.is_conflict() && !leader => self.current_at(v, share, node).await,
                // A commit whose answer was lost, retried: done if the node holds our version.
                Err(ClientError::Node { code: blackbox_net::ErrorCode::NotFound, .. }) => {
                    let current = self.current_at(v, share, node).await;
                    if current.as_ref().is_some_and(|(_, h)| *h == v.encoded) {
                        return Ok(());
                    }
                    return r;
                }
                _ => return r,
            };
            match current {
                Some((seq, _)) if seq < v.seq && attempt < 3 => {
                    replaces = seq;
                    attempt += 1;
                }
                _ => return r,
            }
        }
    }

    /// The sequence and header a node holds now for one share of the version's slot.
    async fn current_at(&self, v: &Version, share: u8, node: &NodeRef) -> Option<(u64, Bytes)> {
        let Ok(Response::Slot(groups)) = self.call(node, Request::SlotRead { si: v.si }).await else { return None };
        let g = groups.into_iter().find(|g| g.shares.contains(&share))?;
        let seq = SignedSlotHeader::decode(&g.header).ok()?.header.sequence;
        Some((seq, g.header))
    }

    /// Sends one share of a version: allocate (signature and compare-and-swap checked by the
    /// node), stream its blocks, commit (paying the rent).
    async fn send_version_share(
        &self,
        v: &Version,
        share: u8,
        node: &NodeRef,
        replaces: u64,
        lease_secs: u32,
        rent: blackbox_payments::Usage,
    ) -> Result<(), ClientError> {
        let req = Request::SlotAllocate {
            si: v.si,
            share,
            verifying_key: v.vk,
            header: v.encoded.clone(),
            replaces,
            lease_secs,
        };
        let upload = match self.call(node, req).await? {
            Response::Allocated { already_have: true, .. } => return Ok(()),
            Response::Allocated { upload, .. } => upload,
            other => return Err(ClientError::unexpected(node, &other)),
        };
        let blocks = v.blocks.get(share as usize).cloned().unwrap_or_default();
        let (tx, rx) = mpsc::channel::<(u64, Bytes)>(blocks.len().max(1));
        for (i, b) in blocks.into_iter().enumerate() {
            let _ = tx.try_send((i as u64, b));
        }
        drop(tx);
        write_share(self.transport.clone(), node.clone(), v.vsi, share, upload, rx).await?;
        self.commit_slot_share(node, v.si, share, upload, rent).await
    }

    /// Makes an uploaded share the current version of its slot share at `node`, paying `rent`.
    pub(crate) async fn commit_slot_share(
        &self,
        node: &NodeRef,
        si: StorageIndex,
        share: u8,
        upload: UploadId,
        rent: blackbox_payments::Usage,
    ) -> Result<(), ClientError> {
        match self.call_billed(node, Request::SlotCommit { si, share, upload }, rent).await? {
            Response::Ok => Ok(()),
            other => Err(ClientError::unexpected(node, &other)),
        }
    }

    /// Places each of `todo` (shares of the version `t`) on a node: one that holds no good share
    /// of it first, the least loaded next; the node checks the version's signature as for a write.
    pub(crate) async fn allocate_slot(
        &self,
        t: &SlotTarget,
        order: &[NodeRef],
        todo: &[u8],
        good: &[(u8, NodeRef)],
        lease_secs: u32,
        bad: &mut HashSet<PeerId>,
    ) -> (Vec<(u8, NodeRef, Option<UploadId>)>, Vec<ClientError>) {
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        for (_, n) in good {
            *load.entry(n.peer).or_default() += 1;
        }
        let (mut targets, mut errors) = (Vec::new(), Vec::new());
        for &share in todo {
            let Some(node) = order
                .iter()
                .filter(|n| !bad.contains(&n.peer))
                .min_by_key(|n| load.get(&n.peer).copied().unwrap_or(0))
                .cloned()
            else {
                break;
            };
            *load.entry(node.peer).or_default() += 1;
            let replaces = t.at.get(&(node.peer, share)).copied().unwrap_or(0);
            let req = Request::SlotAllocate {
                si: t.si,
                share,
                verifying_key: t.vk,
                header: t.encoded.clone(),
                replaces,
                lease_secs,
            };
            match self.call(&node, req).await {
                Ok(Response::Allocated { already_have, upload }) => {
                    targets.push((share, node, (!already_have).then_some(upload)))
                }
                Ok(other) => errors.push(ClientError::unexpected(&node, &other)),
                Err(e) => {
                    bad.insert(node.peer);
                    errors.push(e);
                }
            }
        }
        (targets, errors)
    }

    /// Audits the slot's current version and rebuilds the shares no node proved, placing them as
    /// that version (only the verify cap is needed: the signed header travels with the shares).
    pub async fn repair_slot(
        &self,
        cap: &SlotVerifyCap,
        opts: &crate::AuditOptions,
        lease_secs: u32,
    ) -> Result<crate::RepairReport, ClientError> {
        let state = self.slot_state(cap).await;
        self.repair_slot_from(cap, &state, opts, lease_secs).await
    }

    /// As [`Client::repair_slot`], from a state the caller has just read.
    pub async fn repair_slot_from(
        &self,
        cap: &SlotVerifyCap,
        state: &SlotState,
        opts: &crate::AuditOptions,
        lease_secs: u32,
    ) -> Result<crate::RepairReport, ClientError> {
        let v =
            state.readable().ok_or(ClientError::SlotUnreadable { highest: state.max_seen, found: state.answered })?;
        let expected: Vec<(u8, PeerId)> = v.holders.iter().map(|(s, n)| (*s, n.peer)).collect();
        let target = SlotTarget {
            si: cap.storage_index(),
            vk: cap.verifying_key,
            encoded: v.encoded.clone(),
            at: state.at.clone(),
        };
        self.repair_into(&v.content_cap(), &expected, opts, lease_secs, Some(&target)).await
    }
}

/// A slot version being placed: where, under which key, with which signed header, and what
/// each node holds now (the compare-and-swap value).
pub(crate) struct SlotTarget {
    pub si: StorageIndex,
    pub vk: [u8; 32],
    pub encoded: Bytes,
    pub at: HashMap<(PeerId, u8), u64>,
}

/// A version ready to send: its signed header and every share's blocks.
pub(crate) struct Version {
    pub si: StorageIndex,
    pub vsi: StorageIndex,
    pub vk: [u8; 32],
    pub seq: u64,
    pub encoded: Bytes,
    /// `blocks[share][segment]`.
    pub blocks: Vec<Vec<Bytes>>,
}

/// Encodes a version's content in memory: its share header and each share's blocks.
fn encode_version(
    key: FileKey,
    params: EncodingParams,
    content: &[u8],
) -> Result<(blackbox_core::ShareHeader, Vec<Vec<Bytes>>), ClientError> {
    let mut enc = FileEncoder::new(key, params, content.len() as u64);
    let layout = *enc.layout();
    let mut blocks: Vec<Vec<Bytes>> = vec![Vec::new(); params.n()];
    let mut at = 0usize;
    while !enc.is_done() {
        let len = layout.segment_len(enc.next_segment());
        for (share, b) in enc.encode_next(&content[at..at + len])?.into_iter().enumerate() {
            blocks[share].push(b);
        }
        at += len;
    }
    let (header, _) = enc.finish()?;
    Ok((header, blocks))
}

/// A pause before retrying a lost compare-and-swap: grows with `attempt`, randomised so racing
/// writers spread out.
pub fn conflict_backoff(attempt: u32) -> Duration {
    let base = 20u64 << attempt.min(6);
    Duration::from_millis(rand::thread_rng().gen_range(base / 2..=base))
}
