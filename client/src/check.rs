//! Check (where are the shares) and verify (download and hash-check every share, no decryption).

use std::collections::BTreeMap;

use blackbox_core::VerifyCap;
use blackbox_net::{PeerId, Transport};
use blackbox_net::{Request, Response};

use crate::reputation::Outcome;
use crate::{servers_of_happiness, Client, ClientError};

/// Where a file's shares are, without reading them.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Nodes holding each share number.
    pub holders: BTreeMap<u8, Vec<PeerId>>,
    /// Nodes asked.
    pub asked: usize,
    /// Nodes that answered.
    pub answered: usize,
    /// Nodes that did not answer, with the reason.
    pub unreachable: Vec<(PeerId, String)>,
    /// Shares needed to recover.
    pub needed: usize,
    /// Servers-of-happiness of the current placement.
    pub happiness: usize,
}

impl CheckReport {
    /// Distinct shares found.
    pub fn distinct(&self) -> usize {
        self.holders.len()
    }

    /// Whether enough distinct shares exist to rebuild the file.
    pub fn recoverable(&self) -> bool {
        self.distinct() >= self.needed
    }
}

/// The state of one stored share after full verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareHealth {
    /// Every block matched its hash.
    Good,
    /// The node returned data that failed verification.
    Corrupt(String),
    /// The node could not deliver the share.
    Unreadable(String),
}

/// Result of verifying every stored share.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// One entry per (share, node) found.
    pub shares: Vec<(u8, PeerId, ShareHealth)>,
    /// Shares needed to recover.
    pub needed: usize,
}

impl VerifyReport {
    /// Distinct shares that verified completely.
    pub fn good_distinct(&self) -> usize {
        let mut s: Vec<u8> =
            self.shares.iter().filter(|(_, _, h)| *h == ShareHealth::Good).map(|(s, _, _)| *s).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    }

    /// Whether enough good shares exist to rebuild the file.
    pub fn recoverable(&self) -> bool {
        self.good_distinct() >= self.needed
    }
}

impl<T: Transport> Client<T> {
    /// Asks every node which shares it holds.
    pub async fn check(&self, cap: &VerifyCap) -> CheckReport {
        let h = self.locate(&cap.storage_index).await;
        let mut holders: BTreeMap<u8, Vec<PeerId>> = BTreeMap::new();
        for (s, n) in &h.found {
            holders.entry(*s).or_default().push(n.peer);
        }
        let pairs: Vec<(u8, PeerId)> = h.found.iter().map(|(s, n)| (*s, n.peer)).collect();
        CheckReport {
            holders,
            asked: h.asked,
            answered: h.answered,
            unreachable: h.unreachable.iter().map(|(n, why)| (n.peer, why.clone())).collect(),
            needed: cap.k as usize,
            happiness: servers_of_happiness(&pairs),
        }
    }

    /// Every share's node and lease expiry (Unix seconds), as each node holding shares says.
    pub async fn leases(&self, cap: &VerifyCap) -> Vec<(u8, PeerId, u64)> {
        let si = cap.storage_index;
        let asks = self.nodes.iter().map(|n| async move {
            match tokio::time::timeout(self.query_timeout, self.call(n, Request::Leases { si })).await {
                Ok(Ok(Response::Leases(list))) => list.into_iter().map(|(s, e)| (s, n.peer, e)).collect(),
                _ => Vec::new(),
            }
        });
        let mut all: Vec<(u8, PeerId, u64)> = futures::future::join_all(asks).await.into_iter().flatten().collect();
        all.sort();
        all
    }

    /// Reads every share from every holder and checks each block against the cap; never decrypts.
    pub async fn verify(&self, cap: &VerifyCap) -> Result<VerifyReport, ClientError> {
        let h = self.locate(&cap.storage_index).await;
        let needed = cap.k as usize;
        if h.found.is_empty() {
            return Err(self.not_enough(needed, 0, &h));
        }
        let header = self.fetch_header(cap, &h).await?;
        let layout = header.layout();
        let last = layout.num_segments() - 1;
        let si = cap.storage_index;
        let checks = h.found.iter().map(|(share, node)| {
            let header = &header;
            let layout = &layout;
            async move {
                let health = match self.fetch_verifier(&si, header, *share, node).await {
                    Err(e @ ClientError::BadData { .. }) => ShareHealth::Corrupt(e.to_string()),
                    Err(e) => ShareHealth::Unreadable(e.to_string()),
                    Ok(v) => {
                        let (mut rx, _) = self.spawn_reader(layout, si, (*share, node.clone()), (0, last), 0);
                        let mut health = ShareHealth::Good;
                        for index in 0..=last {
                            match rx.recv().await {
                                Some(Ok((i, b))) if i == index && v.check(index, &b) => {}
                                Some(Ok(_)) => {
                                    health = ShareHealth::Corrupt(format!("block {index} does not match its hash"));
                                    break;
                                }
                                Some(Err(e)) => {
                                    health = ShareHealth::Unreadable(format!("block {index}: {e}"));
                                    break;
                                }
                                None => {
                                    health = ShareHealth::Unreadable(format!("block {index} missing"));
                                    break;
                                }
                            }
                        }
                        health
                    }
                };
                let outcome = match &health {
                    ShareHealth::Good => Outcome::Good,
                    ShareHealth::Corrupt(_) => Outcome::BadData,
                    ShareHealth::Unreadable(_) => Outcome::Failed,
                };
                self.note(node.peer, outcome);
                (*share, node.peer, health)
            }
        });
        let shares = futures::future::join_all(checks).await;
        Ok(VerifyReport { shares, needed })
    }
}
