//! Upload: encode a file once, stream each share's blocks to its node, commit, fail over.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use rand::RngCore;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use blackbox_core::{
    storage_index, EncodingParams, FileEncoder, FileKey, FileLayout, ReadCap, ShareHeader, StorageIndex,
};
use blackbox_net::wire::UploadId;
use blackbox_net::wire::{MAX_BLOCKS, MAX_MESSAGE};
use blackbox_net::{PeerId, Request, Response, Transport};

use crate::reputation::Outcome;
use crate::straggle::{Senders, Straggle};
use crate::{call, is_quota_error, servers_of_happiness, Client, ClientError, NodeRef};

/// Write requests in flight per share.
const WRITES_IN_FLIGHT: usize = 8;
/// Encoded segments buffered between the encoder thread and the senders.
const SEGMENTS_BUFFERED: usize = 4;
/// Passes over the file: the first places every share, later ones replace shares whose node failed.
const MAX_PASSES: usize = 3;

/// How to encode and place a file.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// k, n and segment size.
    pub params: EncodingParams,
    /// Distinct nodes that must end up holding shares.
    pub happy: usize,
    /// File key; random when `None`.
    pub key: Option<FileKey>,
    /// Lease asked of each node, in seconds (0: the node's default).
    pub lease_secs: u32,
}

/// The outcome of a successful upload.
#[derive(Debug, Clone)]
pub struct UploadReport {
    /// The read capability of the stored file.
    pub cap: ReadCap,
    /// Which node holds which share.
    pub placements: Vec<(u8, PeerId)>,
    /// Servers-of-happiness achieved.
    pub happiness: usize,
    /// With ranking: every candidate in placement order, with its score (for `put --explain`).
    pub ranking: Vec<crate::rank::Ranked>,
}

/// A node's place in the permutation keyed on the storage index (Tahoe style).
fn permutation_key(si: &StorageIndex, node: &NodeRef) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(si);
    h.update(&node.peer.to_bytes());
    *h.finalize().as_bytes()
}

/// Orders nodes by a permutation keyed on the storage index, so different files spread differently.
pub(crate) fn permuted(nodes: &[NodeRef], si: &StorageIndex) -> Vec<NodeRef> {
    let mut keyed: Vec<([u8; 32], NodeRef)> = nodes.iter().map(|n| (permutation_key(si, n), n.clone())).collect();
    keyed.sort_by_key(|a| a.0);
    keyed.into_iter().map(|(_, n)| n).collect()
}

/// Reads and encodes the whole input on a blocking thread, sending each segment's blocks to
/// `seg_tx`; checks the input is exactly `size` bytes.
fn encode<R: Read, F: Fn() -> std::io::Result<R>>(
    open: Arc<F>,
    key: FileKey,
    params: EncodingParams,
    size: u64,
    progress: Option<Arc<AtomicU64>>,
    seg_tx: mpsc::Sender<Vec<Bytes>>,
) -> Result<(ShareHeader, ReadCap), ClientError> {
    let mut input = open()?;
    let mut enc = FileEncoder::new(key, params, size);
    let layout = *enc.layout();
    let mut buf = vec![0u8; params.segment_size() as usize];
    while !enc.is_done() {
        let len = layout.segment_len(enc.next_segment());
        input.read_exact(&mut buf[..len]).map_err(ClientError::InputShort)?;
        let blocks = enc.encode_next(&buf[..len])?;
        if let Some(p) = &progress {
            p.fetch_add(len as u64, Ordering::Relaxed);
        }
        if seg_tx.blocking_send(blocks).is_err() {
            return Err(ClientError::Cancelled);
        }
    }
    let mut extra = [0u8; 1];
    if input.read(&mut extra)? != 0 {
        return Err(ClientError::InputLong);
    }
    Ok(enc.finish()?)
}

/// A fresh random file key.
fn random_key() -> FileKey {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

struct Pass {
    cap: ReadCap,
    failed: Vec<(u8, NodeRef, ClientError)>,
    ok: Vec<(u8, NodeRef)>,
    /// Shares whose node could not keep up, given up without a retry (happiness allowed it).
    left_out: Vec<(u8, NodeRef)>,
}

impl<T: Transport> Client<T> {
    /// Uploads `size` bytes read from `open()`; `open` is called again if shares must be re-sent.
    ///
    /// `progress` counts plaintext bytes encoded in the first pass.
    pub async fn upload<R, F>(
        &self,
        open: F,
        size: u64,
        opts: &UploadOptions,
        progress: Arc<AtomicU64>,
    ) -> Result<UploadReport, ClientError>
    where
        F: Fn() -> std::io::Result<R> + Send + Sync + 'static,
        R: Read + Send + 'static,
    {
        let params = opts.params;
        if opts.happy < params.k() || opts.happy > params.n() {
            return Err(ClientError::BadHappy { k: params.k(), n: params.n(), happy: opts.happy });
        }
        if self.nodes.is_empty() {
            return Err(ClientError::NoNodes);
        }
        let key = opts.key.unwrap_or_else(random_key);
        let si = storage_index(&key);
        let (order, ranking) = self.placement_order(&si)?;
        let open = Arc::new(open);
        let mut bad: HashSet<PeerId> = HashSet::new();
        let mut placed: Vec<(u8, NodeRef)> = Vec::new();
        // Shares nodes said they hold already: believed only once their header matches the cap.
        let mut claimed: Vec<(u8, NodeRef)> = Vec::new();
        let mut todo: Vec<u8> = (0..params.n() as u8).collect();
        let mut result: Option<ReadCap> = None;
        let mut last_error = String::from("no node accepted a share");
        let mut left_out = 0;

        for pass in 0..MAX_PASSES {
            if todo.is_empty() {
                break;
            }
            let (targets, refusals) =
                self.allocate(&order, &si, &params, size, opts.lease_secs, &todo, &placed, &mut bad).await;
            if let Some(e) = refusals.last() {
                last_error = e.to_string();
            }
            let (have, need_data): (Vec<_>, Vec<_>) = targets.into_iter().partition(|(_, _, id)| id.is_none());
            claimed.extend(have.iter().map(|(s, n, _)| (*s, n.clone())));
            placed.extend(have.into_iter().map(|(s, n, _)| (s, n)));
            let need_data: Vec<(u8, NodeRef, UploadId)> =
                need_data.into_iter().filter_map(|(s, n, id)| Some((s, n, id?))).collect();
            let pairs: Vec<(u8, NodeRef)> = need_data.iter().map(|(s, n, _)| (*s, n.clone())).collect();
            let reachable = servers_of_happiness(&with_targets(&placed, &pairs));
            if reachable < opts.happy {
                return Err(ClientError::NotHappy { achieved: reachable, happy: opts.happy, detail: last_error });
            }
            if need_data.is_empty() && result.is_some() {
                break;
            }
            let counter = if pass == 0 { Some(progress.clone()) } else { None };
            // The first pass may leave a share out rather than wait for a straggling node.
            let straggle = (pass == 0).then(|| Straggle { placed: to_pairs(&placed), happy: opts.happy });
            let p = self
                .stream_pass(open.clone(), key, si, params, size, opts.lease_secs, need_data, counter, straggle)
                .await?;
            left_out += p.left_out.len();
            todo = self.note_pass(&p, &mut bad, &mut last_error);
            placed.extend(p.ok);
            result = Some(p.cap);
            // Stop re-trying once happy and every share has been given a chance on a fresh node.
            if servers_of_happiness(&to_pairs(&placed)) + left_out >= params.n().min(order.len()) {
                break;
            }
        }
        let happiness = servers_of_happiness(&to_pairs(&placed));
        if happiness < opts.happy {
            return Err(ClientError::NotHappy { achieved: happiness, happy: opts.happy, detail: last_error });
        }
        let cap = match result {
            Some(cap) => cap,
            // Every share was already stored (same key uploaded before): re-derive the cap.
            None => self.stream_pass(open, key, si, params, size, opts.lease_secs, Vec::new(), None, None).await?.cap,
        };
        let false_claims = self.false_claims(&si, &cap, &claimed).await;
        placed.retain(|(s, n)| !false_claims.iter().any(|(fs, fp)| fs == s && *fp == n.peer));
        let happiness = servers_of_happiness(&to_pairs(&placed));
        if happiness < opts.happy {
            let detail = format!("{} node(s) claimed shares they do not hold", false_claims.len());
            return Err(ClientError::NotHappy { achieved: happiness, happy: opts.happy, detail });
        }
        info!(happiness, shares = placed.len(), "upload complete");
        Ok(UploadReport { cap, placements: placed.iter().map(|(s, n)| (*s, n.peer)).collect(), happiness, ranking })
    }

    /// Stores `size` bytes read from `open()` and returns the cap text: at most
    /// [`blackbox_core::MAX_LITERAL_LEN`] bytes live in the cap itself (a literal), more are
    /// uploaded with [`Client::upload`].
    pub async fn store_content<R, F>(&self, open: F, size: u64, opts: &UploadOptions) -> Result<String, ClientError>
    where
        F: Fn() -> std::io::Result<R> + Send + Sync + 'static,
        R: Read + Send + 'static,
    {
        if size as usize <= blackbox_core::MAX_LITERAL_LEN {
            let mut data = vec![0u8; size as usize];
            open()?.read_exact(&mut data).map_err(ClientError::InputShort)?;
            return Ok(blackbox_core::LiteralCap { data }.to_string());
        }
        Ok(self.upload(open, size, opts, Arc::default()).await?.cap.to_string())
    }

    /// The claims of "already stored" among `claimed` that the node's stored header does not back
    /// (another file's share under this storage index, or none): noted as bad data.
    async fn false_claims(&self, si: &StorageIndex, cap: &ReadCap, claimed: &[(u8, NodeRef)]) -> Vec<(u8, PeerId)> {
        let asks = claimed.iter().map(|(share, node)| async move {
            let r = self.call(node, Request::ReadHeader { si: *si, share: *share }).await;
            let backed = matches!(&r, Ok(Response::Header(h)) if blackbox_core::file_root(h) == cap.root);
            (*share, node.peer, backed)
        });
        let mut out = Vec::new();
        for (share, peer, backed) in futures::future::join_all(asks).await {
            if !backed {
                warn!(share, %peer, "node claimed a share it does not hold");
                self.note(peer, Outcome::BadData);
                out.push((share, peer));
            }
        }
        out
    }

    /// Notes a pass's outcomes for reputation, bars the nodes that failed, and returns the shares
    /// to place again.
    fn note_pass(&self, p: &Pass, bad: &mut HashSet<PeerId>, last_error: &mut String) -> Vec<u8> {
        for (share, node, err) in &p.failed {
            warn!(share, peer = %node.peer, error = %err, "share upload failed; will place it elsewhere");
            self.note(node.peer, Outcome::Failed);
            bad.insert(node.peer);
            *last_error = err.to_string();
        }
        for (_, node) in &p.ok {
            self.note(node.peer, Outcome::Good);
        }
        p.failed.iter().map(|(s, _, _)| *s).collect()
    }

    /// Nodes in the order shares of `si` should go to them: by ranking when the client has one
    /// (with the ranked entries, for `--explain`), else by a permutation keyed on `si`.
    pub(crate) fn placement_order(
        &self,
        si: &StorageIndex,
    ) -> Result<(Vec<NodeRef>, Vec<crate::rank::Ranked>), ClientError> {
        match &self.ranking {
            Some(r) => {
                let ranked =
                    crate::rank::rank(r.candidates.clone(), &r.weights, r.max_price, |n| permutation_key(si, n));
                let ranked: Vec<crate::rank::Ranked> =
                    crate::rank::placement_order(&ranked).into_iter().map(|i| ranked[i].clone()).collect();
                if ranked.is_empty() {
                    return Err(ClientError::NoCandidates);
                }
                Ok((ranked.iter().map(|r| r.candidate.node.clone()).collect(), ranked))
            }
            None => Ok((permuted(&self.nodes, si), Vec::new())),
        }
    }

    /// Allocates each share in `todo` on a node: fresh nodes first, then the least loaded.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn allocate(
        &self,
        order: &[NodeRef],
        si: &StorageIndex,
        params: &EncodingParams,
        size: u64,
        lease_secs: u32,
        todo: &[u8],
        placed: &[(u8, NodeRef)],
        bad: &mut HashSet<PeerId>,
    ) -> (Vec<(u8, NodeRef, Option<UploadId>)>, Vec<ClientError>) {
        let mut targets: Vec<(u8, NodeRef, Option<UploadId>)> = Vec::new();
        let mut errors = Vec::new();
        let mut pending: Vec<u8> = todo.to_vec();
        while !pending.is_empty() {
            let mut load: std::collections::HashMap<PeerId, usize> = std::collections::HashMap::new();
            for (_, n) in placed {
                *load.entry(n.peer).or_default() += 1;
            }
            for (_, n, _) in &targets {
                *load.entry(n.peer).or_default() += 1;
            }
            let mut round: Vec<(u8, NodeRef)> = Vec::new();
            for &share in &pending {
                let candidate = order
                    .iter()
                    .filter(|n| !bad.contains(&n.peer))
                    .min_by_key(|n| load.get(&n.peer).copied().unwrap_or(0));
                let Some(node) = candidate else { break };
                *load.entry(node.peer).or_default() += 1;
                round.push((share, node.clone()));
            }
            if round.is_empty() {
                break;
            }
            let asks = round.iter().map(|(share, node)| {
                let req = Request::Allocate {
                    si: *si,
                    share: *share,
                    k: params.k() as u8,
                    n: params.n() as u8,
                    segment_size: params.segment_size(),
                    size,
                    lease_secs,
                };
                async move { (*share, node.clone(), self.call(node, req).await) }
            });
            pending.clear();
            for (share, node, r) in futures::future::join_all(asks).await {
                match r {
                    Ok(Response::Allocated { already_have, upload }) => {
                        targets.push((share, node, (!already_have).then_some(upload)))
                    }
                    Ok(other) => {
                        self.note(node.peer, Outcome::Failed);
                        bad.insert(node.peer);
                        errors.push(ClientError::unexpected(&node, &other));
                        pending.push(share);
                    }
                    Err(e) => {
                        debug!(share, peer = %node.peer, error = %e, "allocation refused");
                        // Refusing space it reported free is worse than an ordinary failure.
                        let need = FileLayout::new(*params, size).share_len();
                        let claimed_room = self.ranking.as_ref().is_some_and(|r| {
                            r.candidates.iter().any(|c| c.node.peer == node.peer && c.free_bytes >= need)
                        });
                        let lied = is_quota_error(&e) && claimed_room;
                        let outcome = if lied { Outcome::BrokenOffer } else { Outcome::Failed };
                        self.note(node.peer, outcome);
                        bad.insert(node.peer);
                        errors.push(e);
                        pending.push(share);
                    }
                }
            }
        }
        (targets, errors)
    }

    /// Encodes the whole file once and sends the blocks of `targets`' shares, then commits them.
    #[allow(clippy::too_many_arguments)]
    async fn stream_pass<R, F>(
        &self,
        open: Arc<F>,
        key: FileKey,
        si: StorageIndex,
        params: EncodingParams,
        size: u64,
        lease_secs: u32,
        targets: Vec<(u8, NodeRef, UploadId)>,
        progress: Option<Arc<AtomicU64>>,
        straggle: Option<Straggle>,
    ) -> Result<Pass, ClientError>
    where
        F: Fn() -> std::io::Result<R> + Send + Sync + 'static,
        R: Read + Send + 'static,
    {
        let (seg_tx, mut seg_rx) = mpsc::channel::<Vec<Bytes>>(SEGMENTS_BUFFERED);
        let encoder = tokio::task::spawn_blocking(move || encode(open, key, params, size, progress, seg_tx));

        let mut senders = Senders::start(&self.transport, si, targets, straggle);
        let mut index = 0u64;
        while let Some(blocks) = seg_rx.recv().await {
            senders.send_segment(index, &blocks).await;
            index += 1;
        }
        let (header, cap) = encoder.await.map_err(ClientError::crashed("encoder"))??;
        let (sent, mut failed, left_out) = senders.finish().await;
        for (share, node) in &left_out {
            warn!(share, peer = %node.peer, "node too slow: share left out of this upload (repair adds it later)");
            self.note(node.peer, Outcome::Failed);
        }
        let header_bytes = Bytes::from(header.encode());
        let rent = storage_rent(&header.layout(), lease_secs);
        let commits = sent.into_iter().map(|(share, node, id)| {
            let header = header_bytes.clone();
            async move {
                let r = self.commit_share(&node, si, (share, id), header, rent).await;
                (share, node, r)
            }
        });
        let mut ok = Vec::new();
        for (share, node, r) in futures::future::join_all(commits).await {
            match r {
                Ok(()) => ok.push((share, node)),
                Err(e) => failed.push((share, node, e)),
            }
        }
        Ok(Pass { cap, failed, ok, left_out })
    }

    /// Commits a share whose blocks were all sent, paying `rent` for its lease.
    pub(crate) async fn commit_share(
        &self,
        node: &NodeRef,
        si: StorageIndex,
        (share, upload): (u8, UploadId),
        header: Bytes,
        rent: blackbox_payments::Usage,
    ) -> Result<(), ClientError> {
        match self.call_billed(node, Request::Commit { si, share, upload, header }, rent).await? {
            Response::Ok => Ok(()),
            other => Err(ClientError::unexpected(node, &other)),
        }
    }
}

/// Sends one share's blocks, batching consecutive queued blocks into one request up to the message
/// limit, with a few requests in flight; stops at the first failure.
pub(crate) async fn write_share<T: Transport>(
    transport: T,
    node: NodeRef,
    si: StorageIndex,
    share: u8,
    upload: UploadId,
    rx: mpsc::Receiver<(u64, Bytes)>,
) -> Result<(), ClientError> {
    write_share_counted(transport, node, (si, share, upload), rx, Arc::default()).await
}

/// [`write_share`], counting the blocks the node acknowledged in `acked`.
pub(crate) async fn write_share_counted<T: Transport>(
    transport: T,
    node: NodeRef,
    (si, share, upload): (StorageIndex, u8, UploadId),
    rx: mpsc::Receiver<(u64, Bytes)>,
    acked: Arc<AtomicU64>,
) -> Result<(), ClientError> {
    let batches = futures::stream::unfold((rx, None), |(mut rx, held)| async move {
        let (start, first) = match held {
            Some(b) => b,
            None => rx.recv().await?,
        };
        let mut size = first.len() + 64;
        let mut blocks = vec![first];
        let mut held = None;
        while blocks.len() < MAX_BLOCKS as usize {
            let Ok((index, block)) = rx.try_recv() else { break };
            if index != start + blocks.len() as u64 || size + block.len() + 4 > MAX_MESSAGE {
                held = Some((index, block));
                break;
            }
            size += block.len() + 4;
            blocks.push(block);
        }
        Some(((start, blocks), (rx, held)))
    });
    let writes =
        batches
            .map(|(start, blocks)| {
                let (transport, node) = (&transport, &node);
                let count = blocks.len() as u64;
                async move {
                    (count, call(transport, node, Request::WriteBlocks { si, share, upload, start, blocks }).await)
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT);
    let mut writes = std::pin::pin!(writes);
    while let Some((count, r)) = writes.next().await {
        match r? {
            Response::Ok => {
                acked.fetch_add(count, Ordering::Relaxed);
            }
            other => return Err(ClientError::unexpected(&node, &other)),
        }
    }
    Ok(())
}

/// What storing one share of `layout` costs in byte-seconds for a lease of `lease_secs` (0: the
/// nodes' default of 31 days).
pub(crate) fn storage_rent(layout: &FileLayout, lease_secs: u32) -> blackbox_payments::Usage {
    let lease = if lease_secs == 0 { u64::from(blackbox_core::DEFAULT_LEASE_SECS) } else { u64::from(lease_secs) };
    blackbox_payments::Usage::default().with_storage(layout.share_len(), lease)
}

fn to_pairs(placed: &[(u8, NodeRef)]) -> Vec<(u8, PeerId)> {
    placed.iter().map(|(s, n)| (*s, n.peer)).collect()
}

fn with_targets(placed: &[(u8, NodeRef)], targets: &[(u8, NodeRef)]) -> Vec<(u8, PeerId)> {
    placed.iter().chain(targets).map(|(s, n)| (*s, n.peer)).collect()
}
