//! TEST ONLY misbehaviour, compiled with the `faults` feature, to prove that clients and auditors
//! catch it: corrupt blocks as a failing disk would, proofs from another share, late answers, a
//! slow link.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::StorageServer;
use crate::error::NodeError;
use crate::store::{ShareKey, ShareStore};

/// With the stale-slots fault: the first record seen of each slot share.
pub(super) type FirstSlots = std::collections::HashMap<([u8; 32], u8), Vec<u8>>;

/// What a test node does wrong on purpose.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Corrupt every block whose index is a multiple of this in reads and proofs (1 = every
    /// block, 100 = 1% of blocks; 0 = off), as a failing disk would.
    pub corrupt_every: u64,
    /// Answer challenges with the data of another share the node holds.
    pub proof_from_other_share: bool,
    /// Wait this long before answering a challenge.
    pub proof_delay: Duration,
    /// Die (abort, as `kill -9` would) after this many charged requests, between recording the
    /// charge and sending its receipt; 0 = never.
    pub abort_after_charges: u64,
    /// Keep reporting the first version seen of each slot share (hide newer ones), as a stale or
    /// rolled-back node would.
    pub stale_slots: bool,
    /// Move block data (reads and writes) at most this many bytes per second, as a node on a slow
    /// link would; 0 = no limit.
    pub data_rate: u64,
}

impl Faults {
    /// Whether any fault is switched on.
    pub fn any(&self) -> bool {
        self.corrupt_every > 0
            || self.proof_from_other_share
            || !self.proof_delay.is_zero()
            || self.abort_after_charges > 0
            || self.stale_slots
            || self.data_rate > 0
    }
}

/// A block as a failing disk would return it: every 64th byte flipped.
fn corrupt(block: &Bytes) -> Bytes {
    let mut v = block.to_vec();
    for b in v.iter_mut().step_by(64) {
        *b ^= 0x20;
    }
    Bytes::from(v)
}

impl<S: ShareStore> StorageServer<S> {
    /// Makes the node misbehave as `faults` says.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    fn faults(&self) -> Faults {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A block as this node serves it: corrupted where the faults say so.
    pub(super) fn served(&self, index: u64, block: Bytes) -> Bytes {
        let every = self.faults().corrupt_every;
        if every > 0 && index.is_multiple_of(every) {
            corrupt(&block)
        } else {
            block
        }
    }

    /// The share a proof is made from: another one when the faults say so.
    pub(super) fn proof_source(&self, asked: ShareKey) -> Result<ShareKey, NodeError> {
        if !self.faults().proof_from_other_share {
            return Ok(asked);
        }
        let same_file = self.store.list_shares(&asked.si)?;
        if let Some(&share) = same_file.iter().find(|&&s| s != asked.share) {
            return Ok(ShareKey { si: asked.si, share });
        }
        let all = self.store.expired(u64::MAX)?;
        Ok(all.into_iter().find(|k| *k != asked).unwrap_or(asked))
    }

    /// Dies once enough charged requests were recorded, before their receipt is sent.
    pub(super) fn die_after_charge(&self, charged: u64) {
        let limit = self.faults().abort_after_charges;
        if limit == 0 || charged == 0 {
            return;
        }
        if self.charged_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= limit {
            tracing::warn!("TEST FAULT: dying between a charge and its receipt");
            std::process::abort();
        }
    }

    /// The slot records this node reports: the first ever seen of each share when stale.
    pub(super) fn reported_slots(&self, si: &[u8; 32], now: Vec<(u8, Vec<u8>)>) -> Vec<(u8, Vec<u8>)> {
        if !self.faults().stale_slots {
            return now;
        }
        let mut first = self.first_slots.lock().unwrap_or_else(|p| p.into_inner());
        now.into_iter()
            .map(|(share, header)| {
                let h = first.entry((*si, share)).or_insert(header).clone();
                (share, h)
            })
            .collect()
    }

    /// Holds a block read or write of `bytes` as long as a link of the fault's data rate would
    /// take to carry it, requests queueing behind each other.
    pub(super) fn pace(&self, bytes: usize) {
        let rate = self.faults().data_rate;
        if rate == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let until = {
            let mut next = self.paced_until.lock().unwrap_or_else(|p| p.into_inner());
            *next = (*next).max(Instant::now()) + cost;
            *next
        };
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }

    pub(super) fn delay_proof(&self) {
        let delay = self.faults().proof_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
}
