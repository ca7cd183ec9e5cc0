//! Repair: rebuild the shares an audit found missing from `k` good ones and place them on other
//! nodes, with only the verify cap (Reed-Solomon works on ciphertext; no key is needed).

use std::collections::HashSet;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use blackbox_core::{SegmentRebuilder, ShareHeader, StorageIndex, VerifyCap};
use blackbox_net::{PeerId, Transport};

use crate::audit::{AuditOptions, AuditReport, Verdict};
use crate::download::Fetcher;
use crate::reputation::Outcome;
use crate::slot::SlotTarget;
use crate::upload::write_share;
use crate::{Client, ClientError, NodeRef};

/// Blocks queued per rebuilt share before the rebuilder waits for its node.
const QUEUE_PER_SHARE: usize = 16;

/// What a repair found and did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// The audit that decided what to rebuild.
    pub audit: AuditReport,
    /// Shares rebuilt and stored, and where.
    pub rebuilt: Vec<(u8, PeerId)>,
    /// Shares that could not be placed or stored, and why.
    pub failed: Vec<(u8, String)>,
}

impl RepairReport {
    /// Distinct healthy shares after the repair.
    pub fn healthy_after(&self) -> usize {
        let mut s = self.audit.healthy_shares();
        s.extend(self.rebuilt.iter().map(|(share, _)| *share));
        s.len()
    }
}

/// A node receiving one rebuilt share: the queue of its blocks and the task sending them.
struct Worker {
    share: u8,
    node: NodeRef,
    upload: blackbox_net::wire::UploadId,
    tx: Option<mpsc::Sender<(u64, Bytes)>>,
    task: tokio::task::JoinHandle<Result<(), ClientError>>,
}

impl<T: Transport> Client<T> {
    /// Audits the file, then rebuilds every share that no node proved and stores each on a node
    /// that holds no healthy share of the file if there is one (ranked as for uploads).
    pub async fn repair(
        &self,
        cap: &VerifyCap,
        expected: &[(u8, PeerId)],
        opts: &AuditOptions,
        lease_secs: u32,
    ) -> Result<RepairReport, ClientError> {
        self.repair_into(cap, expected, opts, lease_secs, None).await
    }

    /// [`Client::repair`] of a file, or (with `slot`) of a slot version's content, whose
    /// rebuilt shares are placed as that version of the slot.
    pub(crate) async fn repair_into(
        &self,
        cap: &VerifyCap,
        expected: &[(u8, PeerId)],
        opts: &AuditOptions,
        lease_secs: u32,
        slot: Option<&SlotTarget>,
    ) -> Result<RepairReport, ClientError> {
        let (audit, header) = self.audit(cap, expected, opts).await?;
        let k = cap.k as usize;
        let healthy = audit.healthy_shares();
        if healthy.len() < k {
            return Err(ClientError::NotEnoughShares {
                found: healthy.len(),
                needed: k,
                asked: self.nodes.len(),
                answered: audit.results.len(),
            });
        }
        let missing = audit.missing_shares();
        if missing.is_empty() {
            return Ok(RepairReport { audit, rebuilt: Vec::new(), failed: Vec::new() });
        }
        let si = cap.storage_index;
        let find = |peer: &PeerId| self.nodes.iter().find(|n| n.peer == *peer).cloned();
        let good: Vec<(u8, NodeRef)> =
            audit.healthy_placements().iter().filter_map(|(s, p)| find(p).map(|n| (*s, n))).collect();
        // Never place on a node that just failed to prove a share; a node that simply lost its
        // data (Missing) holds nothing of the file and may take a share again.
        let mut bad: HashSet<PeerId> = audit
            .results
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::BadProof(_) | Verdict::Late | Verdict::Unreachable(_)))
            .map(|r| r.peer)
            .collect();
        let (order, _) = self.placement_order(&si)?;
        let layout = header.layout();
        let (targets, refusals) = match slot {
            None => {
                self.allocate(&order, &si, &layout.params, layout.size, lease_secs, &missing, &good, &mut bad).await
            }
            Some(t) => self.allocate_slot(t, &order, &missing, &good, lease_secs, &mut bad).await,
        };
        let mut failed: Vec<(u8, String)> = Vec::new();
        for share in &missing {
            if !targets.iter().any(|(s, _, _)| s == share) {
                let why = refusals.last().map_or("no node accepted it".to_string(), ToString::to_string);
                failed.push((*share, why));
            }
        }
        let mut rebuilt: Vec<(u8, PeerId)> = Vec::new();
        let mut workers = Vec::new();
        for (share, node, upload) in targets {
            let Some(upload) = upload else {
                rebuilt.push((share, node.peer));
                continue;
            };
            let (tx, rx) = mpsc::channel::<(u64, Bytes)>(QUEUE_PER_SHARE);
            let task = tokio::spawn(write_share(self.transport.clone(), node.clone(), si, share, upload, rx));
            workers.push(Worker { share, node, upload, tx: Some(tx), task });
        }
        self.rebuild_into(si, &header, good, &mut workers).await?;
        self.commit_rebuilt((si, slot), &header, lease_secs, workers, &mut rebuilt, &mut failed).await;
        rebuilt.sort_by_key(|(s, _)| *s);
        Ok(RepairReport { audit, rebuilt, failed })
    }

    /// Fetches every segment from the `good` shares and streams the rebuilt blocks of each
    /// worker's share to it.
    async fn rebuild_into(
        &self,
        si: StorageIndex,
        header: &ShareHeader,
        good: Vec<(u8, NodeRef)>,
        workers: &mut [Worker],
    ) -> Result<(), ClientError> {
        let want: Vec<usize> = workers.iter().map(|w| w.share as usize).collect();
        if want.is_empty() {
            return Ok(());
        }
        let layout = header.layout();
        let last = layout.num_segments() - 1;
        let mut fetcher = Fetcher::new(self, si, header, good, last);
        let mut rebuilder = SegmentRebuilder::new();
        for index in 0..=last {
            let blocks = fetcher.segment(index).await?;
            let refs: Vec<(usize, &[u8])> = blocks.iter().map(|(s, b)| (*s as usize, b.as_ref())).collect();
            let fresh = rebuilder.rebuild(&layout, index, &refs, &want)?;
            for (w, block) in workers.iter_mut().zip(fresh) {
                if let Some(sender) = &w.tx {
                    if sender.send((index, block)).await.is_err() {
                        w.tx = None; // that node failed; its worker reports why
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for every worker and commits its share (paying the rent); sorts the outcomes into
    /// `rebuilt` and `failed` and notes them for reputation.
    async fn commit_rebuilt(
        &self,
        (si, slot): (StorageIndex, Option<&SlotTarget>),
        header: &ShareHeader,
        lease_secs: u32,
        workers: Vec<Worker>,
        rebuilt: &mut Vec<(u8, PeerId)>,
        failed: &mut Vec<(u8, String)>,
    ) {
        let header_bytes = Bytes::from(header.encode());
        let rent = crate::upload::storage_rent(&header.layout(), lease_secs);
        for Worker { share, node, upload, tx, task } in workers {
            drop(tx);
            let sent = task.await.map_err(ClientError::crashed("share sender")).and_then(|r| r);
            let committed = match sent {
                Ok(()) => match slot {
                    None => self.commit_share(&node, si, (share, upload), header_bytes.clone(), rent).await,
                    Some(t) => self.commit_slot_share(&node, t.si, share, upload, rent).await,
                },
                Err(e) => Err(e),
            };
            match committed {
                Ok(()) => {
                    info!(share, peer = %node.peer, "share rebuilt and stored");
                    self.note(node.peer, Outcome::Good);
                    rebuilt.push((share, node.peer));
                }
                Err(e) => {
                    warn!(share, peer = %node.peer, error = %e, "storing a rebuilt share failed");
                    self.note(node.peer, Outcome::Failed);
                    failed.push((share, e.to_string()));
                }
            }
        }
    }
}
