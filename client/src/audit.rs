//! Audits: challenge every share of a file with proofs of retrievability, knowing only its verify
//! cap, and renew the shares' leases.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use rand::RngCore;

use blackbox_core::{ShareHeader, VerifyCap};
use blackbox_net::{ErrorCode, PeerId, Request, Response, Transport};
use blackbox_proofs::{Challenge, Proof, MAX_COUNT};

use crate::reputation::Outcome;
use crate::{Client, ClientError, NodeRef};

/// How hard to audit.
#[derive(Debug, Clone, Copy)]
pub struct AuditOptions {
    /// Pieces (1 KiB chunks) asked of each share, over one or more challenges of at most
    /// `MAX_COUNT` each.
    pub count: u32,
    /// How long a node has to answer each challenge.
    pub deadline: Duration,
}

impl Default for AuditOptions {
    /// One day's worth of the default schedule: 24 audits × 32 pieces.
    fn default() -> Self {
        Self {
            count: u32::from(blackbox_proofs::DEFAULT_COUNT) * blackbox_proofs::DEFAULT_AUDITS_PER_DAY,
            deadline: Duration::from_secs(10),
        }
    }
}

/// What one node did with one share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every asked piece proved in time.
    Passed,
    /// The node was known to hold the share and no longer has it.
    Missing,
    /// The answer did not verify (wrong bytes, another share's data, malformed).
    BadProof(String),
    /// No answer before the deadline.
    Late,
    /// The node could not be reached or failed internally.
    Unreachable(String),
}

/// The audit of one share on one node.
#[derive(Debug, Clone)]
pub struct ShareAudit {
    /// Share number.
    pub share: u8,
    /// Node asked.
    pub peer: PeerId,
    /// Outcome.
    pub verdict: Verdict,
    /// Time of the slowest answer.
    pub millis: u64,
}

/// Every share audited for one file.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// Shares made for the file.
    pub n: u8,
    /// Shares needed to rebuild it.
    pub k: u8,
    /// One entry per (share, node) asked.
    pub results: Vec<ShareAudit>,
}

impl AuditReport {
    /// Shares proved by at least one node.
    pub fn healthy_shares(&self) -> BTreeSet<u8> {
        self.results.iter().filter(|r| r.verdict == Verdict::Passed).map(|r| r.share).collect()
    }

    /// Shares no node proved.
    pub fn missing_shares(&self) -> Vec<u8> {
        let healthy = self.healthy_shares();
        (0..self.n).filter(|s| !healthy.contains(s)).collect()
    }

    /// Nodes that failed for some share.
    pub fn failed_nodes(&self) -> Vec<PeerId> {
        let mut seen = HashSet::new();
        self.results.iter().filter(|r| r.verdict != Verdict::Passed && seen.insert(r.peer)).map(|r| r.peer).collect()
    }

    /// `(share, node)` pairs that passed.
    pub fn healthy_placements(&self) -> Vec<(u8, PeerId)> {
        self.results.iter().filter(|r| r.verdict == Verdict::Passed).map(|r| (r.share, r.peer)).collect()
    }
}

impl<T: Transport> Client<T> {
    /// Challenges every share of the file: those the nodes list now, and those `expected` says
    /// were placed (a node that lost one is reported as `Missing`). Records outcomes for the
    /// reputation store. Fails only if no node can provide a header matching the cap.
    pub async fn audit(
        &self,
        cap: &VerifyCap,
        expected: &[(u8, PeerId)],
        opts: &AuditOptions,
    ) -> Result<(AuditReport, ShareHeader), ClientError> {
        let si = cap.storage_index;
        let holders = self.locate(&si).await;
        let header = self.fetch_header(cap, &holders).await?;
        let pairs: Vec<(u8, NodeRef)> = holders.found.clone();
        let mut results = Vec::new();
        for &(share, peer) in expected {
            if pairs.iter().any(|(s, n)| *s == share && n.peer == peer) {
                continue;
            }
            let verdict = if let Some((_, why)) = holders.unreachable.iter().find(|(n, _)| n.peer == peer) {
                Verdict::Unreachable(why.clone())
            } else if self.nodes.iter().any(|n| n.peer == peer) {
                // It answered the listing without this share: it lost it.
                Verdict::Missing
            } else {
                Verdict::Unreachable("node not found on the network".into())
            };
            self.note(peer, outcome_of(&verdict));
            results.push(ShareAudit { share, peer, verdict, millis: 0 });
        }
        let audits = pairs.iter().map(|(share, node)| self.audit_share(&header, cap, *share, node, opts));
        for r in futures::future::join_all(audits).await {
            self.note(r.peer, outcome_of(&r.verdict));
            results.push(r);
        }
        results.sort_by_key(|r| (r.share, r.peer.to_bytes()));
        Ok((AuditReport { n: cap.n, k: cap.k, results }, header))
    }

    /// Challenges one share on one node until `opts.count` pieces are proved or one answer fails.
    async fn audit_share(
        &self,
        header: &ShareHeader,
        cap: &VerifyCap,
        share: u8,
        node: &NodeRef,
        opts: &AuditOptions,
    ) -> ShareAudit {
        let mut left = opts.count.max(1);
        let mut slowest = 0u64;
        let verdict = loop {
            let count = left.min(u32::from(MAX_COUNT)) as u16;
            let mut nonce = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            let challenge = Challenge { storage_index: cap.storage_index, share, nonce, count };
            let req = Request::Challenge { si: cap.storage_index, share, nonce, count };
            let began = Instant::now();
            let answer = tokio::time::timeout(opts.deadline, self.call(node, req)).await;
            slowest = slowest.max(began.elapsed().as_millis() as u64);
            let v = match answer {
                Err(_) => Verdict::Late,
                Ok(Ok(Response::Proof(bytes))) => {
                    match Proof::decode(&bytes).and_then(|p| blackbox_proofs::verify(&challenge, header, &p)) {
                        Ok(()) => Verdict::Passed,
                        Err(e) => Verdict::BadProof(e.to_string()),
                    }
                }
                Ok(Ok(_)) => Verdict::BadProof("unexpected response".into()),
                Ok(Err(ClientError::Node { code: ErrorCode::NotFound, .. })) => Verdict::Missing,
                Ok(Err(ClientError::Node { code: ErrorCode::Internal, message, .. })) => {
                    // The node could not read its own share: as good as lost.
                    Verdict::BadProof(format!("node failed to prove: {message}"))
                }
                Ok(Err(e)) => Verdict::Unreachable(e.to_string()),
            };
            left = left.saturating_sub(u32::from(count));
            if v != Verdict::Passed || left == 0 {
                break v;
            }
        };
        ShareAudit { share, peer: node.peer, verdict, millis: slowest }
    }

    /// Extends the leases of every share of the file on every node holding some, to `lease_secs`
    /// from now; returns `(node, shares renewed, new expiry)` for each node that renewed.
    pub async fn renew(&self, cap: &VerifyCap, lease_secs: u32) -> Result<Vec<(PeerId, u32, u64)>, ClientError> {
        let si = cap.storage_index;
        let holders = self.locate(&si).await;
        let mut nodes: Vec<NodeRef> = Vec::new();
        for (_, n) in &holders.found {
            if !nodes.iter().any(|m| m.peer == n.peer) {
                nodes.push(n.clone());
            }
        }
        if nodes.is_empty() {
            return Err(self.not_enough(cap.k as usize, 0, &holders));
        }
        // Renewal buys a new lease period: billed like the first one, per share held.
        let header = self.fetch_header(cap, &holders).await?;
        let layout = header.layout();
        let holders = &holders;
        let per_share = crate::upload::storage_rent(&layout, lease_secs);
        let asks = nodes.iter().map(|n| async move {
            let held = holders.found.iter().filter(|(_, m)| m.peer == n.peer).count();
            let rent = (0..held).fold(blackbox_payments::Usage::default(), |u, _| u.plus(per_share));
            (n.peer, self.call_billed(n, Request::Renew { si, lease_secs }, rent).await)
        });
        let mut out = Vec::new();
        for (peer, r) in futures::future::join_all(asks).await {
            match r {
                Ok(Response::Renewed { shares, expires }) => out.push((peer, shares, expires)),
                Ok(_) | Err(_) => self.note(peer, Outcome::Failed),
            }
        }
        Ok(out)
    }
}

fn outcome_of(v: &Verdict) -> Outcome {
    match v {
        Verdict::Passed => Outcome::Good,
        Verdict::BadProof(_) => Outcome::BadData,
        Verdict::Missing | Verdict::Late | Verdict::Unreachable(_) => Outcome::Failed,
    }
}
