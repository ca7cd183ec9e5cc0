//! Download: find shares, verify header and leaves, stream verified blocks from k shares, decode.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use blackbox_core::{file_root, FileKey, FileLayout, ReadCap, SegmentDecoder, ShareHeader, ShareVerifier, VerifyCap};
use blackbox_net::wire::{MAX_LEAVES, MAX_MESSAGE};
use blackbox_net::{Request, Response, Transport};

use crate::reputation::Outcome;
use crate::straggle::lower_median;
use crate::{Client, ClientError, NodeRef};

/// Read requests in flight per share.
const READS_IN_FLIGHT: usize = 4;
/// Reads paid ahead with each new channel signature (fewer signatures; unread ones stay credit).
const PREPAY_REQUESTS: u64 = 16;
/// Egress paid ahead at least by reads of small files that come in runs (directory nodes), so
/// that they do not cost one channel signature (and one fsync'd record) each.
pub(crate) const SMALL_READS_PREPAY: u64 = 4 << 20;
/// Blocks buffered per share ahead of the decoder.
const BLOCKS_BUFFERED: usize = 8;
/// A source is a straggler only after the download waited this long for it in all...
const MIN_WAIT: Duration = Duration::from_millis(500);
/// ...for at least this share of the time so far (counting only waits while the other sources
/// had blocks buffered, so that nodes equally slow are never blamed)...
const WAIT_SHARE: f64 = 0.25;
/// ...and its node delivers at most a quarter of the median pace of the others.
const PACE_RATIO: f64 = 4.0;

/// Where the shares of a file are, from asking every node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holders {
    /// `(share, node)` in order of the nodes' answer times.
    pub found: Vec<(u8, NodeRef)>,
    pub asked: usize,
    pub answered: usize,
    pub unreachable: Vec<(NodeRef, String)>,
}

impl Holders {
    pub fn distinct(&self) -> usize {
        self.found.iter().map(|(s, _)| *s).collect::<HashSet<_>>().len()
    }
}

/// Where a download writes its verified plaintext, in order.
pub(crate) trait Sink {
    /// Takes the next bytes.
    fn put(&mut self, bytes: &[u8]) -> impl std::future::Future<Output = std::io::Result<()>>;
}

impl<F: FnMut(&[u8]) -> std::io::Result<()>> Sink for F {
    fn put(&mut self, bytes: &[u8]) -> impl std::future::Future<Output = std::io::Result<()>> {
        std::future::ready(self(bytes))
    }
}

/// A sink that hands each piece to a bounded channel (waits while the reader is slow).
struct ChannelSink(mpsc::Sender<Result<Bytes, ClientError>>);

impl Sink for ChannelSink {
    fn put(&mut self, bytes: &[u8]) -> impl std::future::Future<Output = std::io::Result<()>> {
        let (tx, b) = (self.0.clone(), Bytes::copy_from_slice(bytes));
        async move { tx.send(Ok(b)).await.map_err(|_| std::io::Error::other("reader went away")) }
    }
}

/// Streams verified blocks of a file from `k` shares at a time, segment by segment, replacing a
/// share whose node fails or returns a bad block by the next candidate.
pub(crate) struct Fetcher<'a, T> {
    client: &'a Client<T>,
    si: [u8; 32],
    header: &'a ShareHeader,
    k: usize,
    last: u64,
    /// Data shares first (no decoding needed), each in order of answer time.
    candidates: Vec<(u8, NodeRef)>,
    next_candidate: usize,
    used_shares: HashSet<u8>,
    /// Shares put back once after a failure that may pass.
    retried: HashSet<u8>,
    sources: Vec<Source>,
    /// Egress prepaid at least with each new channel signature (0: exactly what this file needs).
    pub prepay_floor: u64,
    started: Instant,
}

impl<'a, T: Transport> Fetcher<'a, T> {
    /// A fetcher over `candidates` for segments up to `last`.
    pub(crate) fn new(
        client: &'a Client<T>,
        si: [u8; 32],
        header: &'a ShareHeader,
        mut candidates: Vec<(u8, NodeRef)>,
        last: u64,
    ) -> Self {
        let k = header.params.k();
        candidates.sort_by_key(|(s, _)| (*s as usize) >= k);
        Self {
            client,
            si,
            header,
            k,
            last,
            candidates,
            next_candidate: 0,
            used_shares: HashSet::new(),
            retried: HashSet::new(),
            sources: Vec::new(),
            prepay_floor: 0,
            started: Instant::now(),
        }
    }

    /// `k` verified blocks of segment `index` (segments must be asked in increasing order).
    pub(crate) async fn segment(&mut self, index: u64) -> Result<BTreeMap<u8, Bytes>, ClientError> {
        let (client, k) = (self.client, self.k);
        let layout = self.header.layout();
        let mut blocks: BTreeMap<u8, Bytes> = BTreeMap::new();
        loop {
            // Top up to k sources, starting them at this segment.
            while self.sources.len() < k && self.next_candidate < self.candidates.len() {
                let (share, node) = self.candidates[self.next_candidate].clone();
                self.next_candidate += 1;
                if self.used_shares.contains(&share) {
                    continue;
                }
                match client.fetch_verifier(&self.si, self.header, share, &node).await {
                    Ok(verifier) => {
                        self.used_shares.insert(share);
                        let (rx, pace) = client.spawn_reader(
                            &layout,
                            self.si,
                            (share, node.clone()),
                            (index, self.last),
                            self.prepay_floor,
                        );
                        self.sources.push(Source { share, node, verifier, rx, waited: Duration::ZERO, pace });
                    }
                    Err(e) => {
                        debug!(share, peer = %node.peer, error = %e, "share unusable");
                        let bad = matches!(e, ClientError::BadData { .. });
                        client.note(node.peer, if bad { Outcome::BadData } else { Outcome::Failed });
                        if !bad {
                            self.retry_later(share, node);
                        }
                    }
                }
            }
            if self.sources.len() < k {
                return Err(ClientError::SegmentLost {
                    index,
                    good: self.sources.len(),
                    tried: self.used_shares.len(),
                    needed: k,
                });
            }
            // Collect this segment's block from every source that has not delivered it yet.
            let mut failed = Vec::new();
            for i in 0..self.sources.len() {
                if blocks.contains_key(&self.sources[i].share) {
                    continue;
                }
                let blamed = self.sources[i].rx.is_empty() && others_buffered(&self.sources, i);
                let waiting = Instant::now();
                let src = &mut self.sources[i];
                let got = src.rx.recv().await;
                if blamed {
                    src.waited += waiting.elapsed();
                }
                match got {
                    Some(Ok((got, block))) if got == index && src.verifier.check(index, &block) => {
                        blocks.insert(src.share, block);
                    }
                    Some(Ok(_)) => {
                        warn!(share = src.share, peer = %src.node.peer, segment = index, "bad block; switching share");
                        client.note(src.node.peer, Outcome::BadData);
                        failed.push(i);
                    }
                    Some(Err(e @ ClientError::Node { code: blackbox_net::ErrorCode::PaymentRequired, .. })) => {
                        // Every node bills the same way: switching would not help.
                        return Err(e);
                    }
                    Some(Err(e)) => {
                        warn!(share = src.share, peer = %src.node.peer, error = %e, "read failed; switching share");
                        client.note(src.node.peer, Outcome::Failed);
                        let (share, node) = (src.share, src.node.clone());
                        failed.push(i);
                        self.used_shares.remove(&share);
                        self.retry_later(share, node);
                    }
                    None => failed.push(i),
                }
            }
            for i in failed.into_iter().rev() {
                self.sources.remove(i);
            }
            if blocks.len() >= k {
                self.replace_straggler();
                return Ok(blocks);
            }
        }
    }

    /// Puts a share whose node failed for a reason that may pass (a dropped connection, a
    /// timeout) at the end of the candidates, once.
    fn retry_later(&mut self, share: u8, node: NodeRef) {
        if self.retried.insert(share) {
            self.candidates.push((share, node));
        }
    }

    /// Drops the source the download waited for far longer than the others, when a spare share
    /// is left: the next segment reads that share's place from the spare (a slow node then costs a
    /// little decoding, not its pace); its other shares move to the back of the candidates.
    fn replace_straggler(&mut self) {
        if self.next_candidate >= self.candidates.len() || self.sources.len() < 2 {
            return;
        }
        let Some(worst) = self.sources.iter().map(|s| s.waited).max() else { return };
        if worst < MIN_WAIT || worst.as_secs_f64() < self.started.elapsed().as_secs_f64() * WAIT_SHARE {
            return;
        }
        let Some(i) = self.sources.iter().position(|s| s.waited == worst) else { return };
        // Slow only if its node delivers at a fraction of the others' pace.
        let others = self.sources.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s.pace.rate().0);
        let (rate, measured) = self.sources[i].pace.rate();
        let Some(median) = lower_median(others) else { return };
        if !measured || rate * PACE_RATIO > median {
            return;
        }
        let slow = self.sources.remove(i);
        warn!(share = slow.share, peer = %slow.node.peer, "node too slow; reading another share in its place");
        self.client.note(slow.node.peer, Outcome::Failed);
        let rest = &mut self.candidates[self.next_candidate..];
        rest.sort_by_key(|(_, n)| n.peer == slow.node.peer);
    }
}

/// Whether the median of the other sources has at least half its buffer full.
fn others_buffered(sources: &[Source], i: usize) -> bool {
    let held = sources.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s.rx.len());
    lower_median(held).is_some_and(|m| m >= BLOCKS_BUFFERED / 2)
}

/// A share reader's blocks (index and bytes) in order, or the error that stopped it.
pub(crate) type BlockReceiver = mpsc::Receiver<Result<(u64, Bytes), ClientError>>;

/// A share being read: its node and verified leaves.
struct Source {
    share: u8,
    node: NodeRef,
    verifier: ShareVerifier,
    rx: BlockReceiver,
    /// How long the download waited for this source's blocks.
    waited: Duration,
    /// How fast its node delivers.
    pace: Arc<ReadPace>,
}

impl<T: Transport> Client<T> {
    /// Asks every node which shares of `si` it holds.
    pub(crate) async fn locate(&self, si: &[u8; 32]) -> Holders {
        let asks = self.nodes.iter().map(|n| async move {
            let r = tokio::time::timeout(self.query_timeout, self.call(n, Request::ListShares { si: *si })).await;
            (n.clone(), r, Instant::now())
        });
        let mut answers = futures::future::join_all(asks).await;
        answers.sort_by_key(|(_, _, at)| *at);
        let mut h = Holders { asked: self.nodes.len(), ..Default::default() };
        for (node, r, _) in answers {
            match r {
                Ok(Ok(Response::Shares(list))) => {
                    h.answered += 1;
                    h.found.extend(list.into_iter().map(|s| (s, node.clone())));
                }
                Ok(Ok(_)) => h.unreachable.push((node, "unexpected response".into())),
                Ok(Err(e)) => h.unreachable.push((node, e.to_string())),
                Err(_) => h.unreachable.push((node, "timed out".into())),
            }
        }
        h
    }

    /// The holders of a file's shares (at least k distinct nodes) and its verified header.
    pub(crate) async fn locate_file(&self, cap: &ReadCap) -> Result<(ShareHeader, Vec<(u8, NodeRef)>), ClientError> {
        let vcap = cap.verify_cap();
        let holders = self.locate(&vcap.storage_index).await;
        if holders.distinct() < cap.k as usize {
            return Err(self.not_enough(cap.k as usize, holders.distinct(), &holders));
        }
        let header = self.fetch_header(&vcap, &holders).await?;
        Ok((header, holders.found))
    }

    /// Fetches a header from some holder and checks it against the cap's root and parameters.
    pub(crate) async fn fetch_header(&self, cap: &VerifyCap, holders: &Holders) -> Result<ShareHeader, ClientError> {
        let mut tried = HashSet::new();
        for (share, node) in &holders.found {
            if !tried.insert(node.peer) {
                continue;
            }
            let bytes = match self.call(node, Request::ReadHeader { si: cap.storage_index, share: *share }).await {
                Ok(Response::Header(b)) => b,
                Ok(_) | Err(_) => continue,
            };
            if file_root(&bytes) != cap.root {
                warn!(peer = %node.peer, "node returned a header that does not match the cap");
                self.note(node.peer, Outcome::BadData);
                continue;
            }
            match ShareHeader::decode(&bytes) {
                Ok(h) if cap.matches(&h.params) && h.size == cap.size => return Ok(h),
                _ => {
                    warn!(peer = %node.peer, "header matches the root but not the cap's parameters")
                }
            }
        }
        Err(self.not_enough(cap.k as usize, 0, holders))
    }

    pub(crate) fn not_enough(&self, needed: usize, found: usize, h: &Holders) -> ClientError {
        ClientError::NotEnoughShares { found, needed, asked: h.asked, answered: h.answered }
    }

    /// Reads and verifies every leaf hash of one share.
    pub(crate) async fn fetch_verifier(
        &self,
        si: &[u8; 32],
        header: &ShareHeader,
        share: u8,
        node: &NodeRef,
    ) -> Result<ShareVerifier, ClientError> {
        let total = header.layout().num_segments();
        let mut leaves = Vec::with_capacity(total as usize);
        while (leaves.len() as u64) < total {
            let req = Request::ReadLeaves { si: *si, share, start: leaves.len() as u64, count: MAX_LEAVES };
            match self.call(node, req).await? {
                Response::Leaves(l) if !l.is_empty() => leaves.extend(l),
                _ => break,
            }
        }
        ShareVerifier::new(header, share as usize, leaves).ok_or_else(|| ClientError::BadData {
            peer: node.peer,
            share,
            what: "leaf hashes do not match the share root".into(),
        })
    }

    /// Downloads bytes `offset..offset+len` of the file (the whole file for `None`), writing them in
    /// order to `out`. Only the segments covering the range are fetched.
    pub async fn download<W>(&self, cap: &ReadCap, range: Option<(u64, u64)>, out: W) -> Result<u64, ClientError>
    where
        W: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let (offset, len) = range.unwrap_or((0, cap.size));
        if offset.checked_add(len).is_none_or(|end| end > cap.size) {
            return Err(ClientError::RangeOutside { offset, len, size: cap.size });
        }
        let (header, holders) = self.locate_file(cap).await?;
        let si = cap.verify_cap().storage_index;
        self.download_from(si, &header, &cap.key, holders, (offset, len, 0), out).await
    }

    /// Streams bytes `offset..offset+len` of the file into `tx` as they are verified (a bounded
    /// channel: memory stays bounded whatever the size).
    pub(crate) async fn chunks_into(
        &self,
        cap: &ReadCap,
        (offset, len): (u64, u64),
        tx: &mpsc::Sender<Result<Bytes, ClientError>>,
    ) -> Result<u64, ClientError> {
        if offset.checked_add(len).is_none_or(|end| end > cap.size) {
            return Err(ClientError::RangeOutside { offset, len, size: cap.size });
        }
        let (header, holders) = self.locate_file(cap).await?;
        let sink = ChannelSink(tx.clone());
        let si = cap.verify_cap().storage_index;
        self.download_from(si, &header, &cap.key, holders, (offset, len, 0), sink).await
    }

    /// Downloads a small file that is one of many read together (a directory node): as
    /// [`Client::download`], prepaying [`SMALL_READS_PREPAY`] of reads when it pays.
    pub(crate) async fn download_small(&self, cap: &ReadCap, out: &mut Vec<u8>) -> Result<u64, ClientError> {
        let (header, holders) = self.locate_file(cap).await?;
        let sink = |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        };
        let range = (0, cap.size, SMALL_READS_PREPAY);
        self.download_from(cap.verify_cap().storage_index, &header, &cap.key, holders, range, sink).await
    }

    /// Downloads bytes `offset..offset+len` of the file whose (already verified) header is
    /// `header`, from the shares `holders` report under `si`, decrypting with `key`; reads prepay
    /// at least `prepay_floor` bytes of egress when they sign a channel update.
    pub(crate) async fn download_from<W>(
        &self,
        si: [u8; 32],
        header: &ShareHeader,
        key: &FileKey,
        holders: Vec<(u8, NodeRef)>,
        (offset, len, prepay_floor): (u64, u64, u64),
        mut out: W,
    ) -> Result<u64, ClientError>
    where
        W: Sink,
    {
        let layout = header.layout();
        if len == 0 {
            return Ok(0);
        }
        let seg = layout.params.segment_size() as u64;
        let (first, last) = (offset / seg, (offset + len - 1) / seg);

        let mut fetcher = Fetcher::new(self, si, header, holders, last);
        fetcher.prepay_floor = prepay_floor;
        let mut decoder = SegmentDecoder::new();
        let mut written = 0u64;
        for index in first..=last {
            let blocks = fetcher.segment(index).await?;
            let refs: Vec<(usize, &[u8])> = blocks.iter().map(|(s, b)| (*s as usize, b.as_ref())).collect();
            let plain = decoder.decode(key, &layout, index, &refs)?;
            let seg_start = index * seg;
            let from = offset.saturating_sub(seg_start) as usize;
            let to = ((offset + len - seg_start) as usize).min(plain.len());
            out.put(&plain[from..to]).await?;
            written += (to - from) as u64;
        }
        Ok(written)
    }

    /// Starts a task streaming blocks `from..=to` of one share, in order, a few requests ahead.
    pub(crate) fn spawn_reader(
        &self,
        layout: &FileLayout,
        si: [u8; 32],
        (share, node): (u8, NodeRef),
        (from, to): (u64, u64),
        prepay_floor: u64,
    ) -> (BlockReceiver, Arc<ReadPace>) {
        let (tx, rx) = mpsc::channel(BLOCKS_BUFFERED);
        let pace = Arc::new(ReadPace::default());
        let counted = pace.clone();
        let per_request = ((MAX_MESSAGE / 2) / layout.block_len(0)).max(1) as u64;
        let transport = self.transport.clone();
        let payments = self.payments.clone();
        let layout = *layout;
        tokio::spawn(async move {
            let starts = (from..=to).step_by(per_request as usize);
            let mut reads = futures::stream::iter(starts)
                .map(|start| {
                    let count = per_request.min(to + 1 - start);
                    // Prepay the reads that follow (up to 16 more requests of this stream).
                    let ahead_end = (start + count + PREPAY_REQUESTS * per_request).min(to + 1);
                    let ahead: u64 = (start + count..ahead_end).map(|i| layout.block_len(i) as u64).sum();
                    let ahead = ahead.max(prepay_floor);
                    read_range(&transport, payments.as_deref(), &layout, &node, si, share, start, count, ahead)
                        .map(move |r| (start, r))
                })
                .buffered(READS_IN_FLIGHT);
            loop {
                let waiting = Instant::now();
                let Some((start, r)) = reads.next().await else { break };
                counted.waited_ns.fetch_add(waiting.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if let Ok(blocks) = &r {
                    counted.bytes.fetch_add(blocks.iter().map(|b| b.len() as u64).sum(), Ordering::Relaxed);
                }
                let blocks = match r {
                    Ok(blocks) => blocks,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for (i, b) in blocks.into_iter().enumerate() {
                    if tx.send(Ok((start + i as u64, b))).await.is_err() {
                        return;
                    }
                }
            }
        });
        (rx, pace)
    }
}

/// How fast a share reader gets blocks from its node: bytes, over the time it waited for the
/// node (not the time it waited for room in its buffer), so an equally fast node that merely
/// started later is not mistaken for a slow one.
#[derive(Debug, Default)]
pub(crate) struct ReadPace {
    bytes: AtomicU64,
    waited_ns: AtomicU64,
}

impl ReadPace {
    /// Bytes per second so far, and whether it is measured over at least 200 ms of waiting (a
    /// reader that hardly ever waited is fast, whatever the number).
    fn rate(&self) -> (f64, bool) {
        let ns = self.waited_ns.load(Ordering::Relaxed);
        (self.bytes.load(Ordering::Relaxed) as f64 * 1e9 / ns.max(1_000_000) as f64, ns >= 200_000_000)
    }
}

/// Reads blocks `start..start+count` of a share, asking again for the rest if a node answers with
/// fewer blocks than asked (nodes cap replies at the message size).
#[allow(clippy::too_many_arguments)]
async fn read_range<T: Transport>(
    transport: &T,
    payments: Option<&crate::pay::Payments>,
    layout: &FileLayout,
    node: &NodeRef,
    si: [u8; 32],
    share: u8,
    start: u64,
    count: u64,
    ahead: u64,
) -> Result<Vec<Bytes>, ClientError> {
    let mut blocks = Vec::with_capacity(count as usize);
    while (blocks.len() as u64) < count {
        let at = start + blocks.len() as u64;
        let left = (count - blocks.len() as u64) as u32;
        // Egress is billed per byte served; the reader asks only for what fits one reply.
        let bytes: u64 = (at..at + u64::from(left)).map(|i| layout.block_len(i) as u64).sum();
        let delta = blackbox_payments::Usage::default().with_egress(bytes);
        let req = Request::ReadBlocks { si, share, start: at, count: left };
        let ahead = blackbox_payments::Usage::default().with_egress(ahead);
        match crate::call_billed(transport, payments, node, req, delta, ahead).await? {
            Response::Blocks(b) if !b.is_empty() && b.len() as u64 <= left as u64 => blocks.extend(b),
            other => return Err(ClientError::unexpected(node, &other)),
        }
    }
    Ok(blocks)
}
