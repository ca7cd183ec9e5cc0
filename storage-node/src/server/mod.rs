//! Request logic of a storage node, independent of the transport: one file per operation family
//! (`upload`, `read`, `audit`, `lease`, `pay`), with dispatch and the shared state here.

mod audit;
#[cfg(feature = "faults")]
mod faults;
mod job;
mod lease;
mod pay;
mod read;
mod slot;
mod upload;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use blackbox_net::wire::{Si, UploadId};
use blackbox_net::{NodeStatus, PeerId, Request, RequestHandler, Response};

use crate::error::NodeError;
use crate::store::{ShareKey, ShareMeta, ShareStore, StoreError};

#[cfg(feature = "faults")]
pub use faults::Faults;
pub use lease::LeasePolicy;
use pay::Bill;
use upload::Upload;
pub use upload::UploadLimits;

struct State {
    uploads: HashMap<UploadId, Upload>,
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
    limits: UploadLimits,
    /// Challenges answered per peer in the current minute.
    challenges: Mutex<audit::PeerBudget>,
    /// Channel opens asked per peer in the current minute.
    opens: Mutex<audit::PeerBudget>,
    /// Proofs being made now.
    proofs_running: std::sync::atomic::AtomicUsize,
    /// Slot versions being uploaded.
    slot_pending: Mutex<slot::PendingSlots>,
    /// Striped locks per share key: commit, renew and the lease sweep of one share never
    /// interleave (bounded memory, whatever the number of shares).
    key_locks: Vec<Mutex<()>>,
    #[cfg(feature = "faults")]
    faults: Mutex<Faults>,
    /// With the stale-slots fault: the first slot record seen of each share.
    #[cfg(feature = "faults")]
    first_slots: Mutex<faults::FirstSlots>,
    #[cfg(feature = "faults")]
    charged_requests: std::sync::atomic::AtomicU64,
    /// With the slow-link fault: when the link is free again.
    #[cfg(feature = "faults")]
    paced_until: Mutex<std::time::Instant>,
    /// Payment channels and billing; `None`: the node serves for free.
    billing: Option<std::sync::Arc<crate::billing::Billing>>,
    /// Buyers' jobs; `None`: the node runs none.
    jobs: Option<std::sync::Arc<crate::jobs::Jobs>>,
    /// Bytes served this month, and the most the offer sells.
    egress: crate::egress::MonthlyEgress,
    egress_limit: u64,
    /// Audit challenges answered with a proof, and those the node could not prove.
    audits: [std::sync::atomic::AtomicU64; 2],
    started: std::time::Instant,
}

/// Activity counters of a running node, for its dashboard and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Activity {
    /// Challenges answered with a proof.
    pub audits_answered: u64,
    /// Challenges of shares it should hold that it could not prove (missing or damaged data).
    pub audits_failed: u64,
    /// Seconds since the server started.
    pub uptime_secs: u64,
}

/// The outcome of one request.
type Reply = Result<Response, NodeError>;

impl<S: ShareStore> StorageServer<S> {
    /// Wraps `store`; drops uploads a crash left unfinished and counts committed bytes.
    pub fn new(store: S, quota: u64, upload_timeout: Duration) -> Result<Self, StoreError> {
        let unfinished = store.unfinished_uploads()?;
        for id in &unfinished {
            store.abort_upload(*id)?;
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
            limits: UploadLimits::default(),
            challenges: Mutex::default(),
            opens: Mutex::default(),
            proofs_running: Default::default(),
            slot_pending: Mutex::default(),
            key_locks: (0..KEY_LOCKS).map(|_| Mutex::new(())).collect(),
            #[cfg(feature = "faults")]
            faults: Mutex::new(Faults::default()),
            #[cfg(feature = "faults")]
            first_slots: Mutex::new(HashMap::new()),
            #[cfg(feature = "faults")]
            charged_requests: Default::default(),
            #[cfg(feature = "faults")]
            paced_until: Mutex::new(std::time::Instant::now()),
            billing: None,
            jobs: None,
            egress: crate::egress::MonthlyEgress::open(None),
            egress_limit: u64::MAX,
            audits: Default::default(),
            started: std::time::Instant::now(),
        })
    }

    /// Replaces the signed offer the node serves.
    pub fn set_offer(&self, offer: Bytes) {
        *self.offer.lock().unwrap_or_else(|p| p.into_inner()) = Some(offer);
    }

    /// Counts egress in `counter` and serves at most `limit` bytes a month (the offer's bandwidth).
    pub fn with_egress(mut self, counter: crate::egress::MonthlyEgress, limit: u64) -> Self {
        self.egress = counter;
        self.egress_limit = limit;
        self
    }

    /// The month's egress count.
    pub fn egress(&self) -> &crate::egress::MonthlyEgress {
        &self.egress
    }

    /// Refuses to serve `bytes` more when they would pass the month's bandwidth.
    fn egress_allows(&self, bytes: u64) -> Result<(), NodeError> {
        if self.egress.used().saturating_add(bytes) > self.egress_limit {
            return Err(NodeError::EgressSpent { limit: self.egress_limit });
        }
        Ok(())
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stripe(&self, key: &ShareKey) -> usize {
        let h = blake3::hash(&[&key.si[..], &[key.share]].concat());
        u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) as usize % self.key_locks.len()
    }

    /// The lock of one share key (striped by a hash of the key).
    fn key_lock(&self, key: &ShareKey) -> MutexGuard<'_, ()> {
        self.key_locks[self.stripe(key)].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The locks of several share keys, each stripe once, in ascending order (so that lockers
    /// never deadlock).
    fn key_locks(&self, keys: &[ShareKey]) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = keys.iter().map(|k| self.stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes.into_iter().map(|i| self.key_locks[i].lock().unwrap_or_else(|p| p.into_inner())).collect()
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

    /// What the node has done since it started.
    pub fn activity(&self) -> Activity {
        let n = |i: usize| self.audits[i].load(std::sync::atomic::Ordering::Relaxed);
        Activity { audits_answered: n(0), audits_failed: n(1), uptime_secs: self.started.elapsed().as_secs() }
    }

    /// The signed offer served now, if any.
    pub fn current_offer(&self) -> Option<Bytes> {
        self.offer.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn committed_meta(&self, key: &ShareKey) -> Result<ShareMeta, NodeError> {
        self.store.meta(key)?.ok_or(NodeError::NoSuchShare)
    }

    fn offer(&self) -> Reply {
        let offer = self.offer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        offer.map(Response::Offer).ok_or(NodeError::NoOffer)
    }

    fn dispatch(&self, from: &PeerId, req: Request, bill: &Bill) -> Reply {
        let key = |si: Si, share: u8| ShareKey { si, share };
        match req {
            Request::Status => Ok(Response::Status(self.status())),
            Request::Allocate { si, share, k, n, segment_size, size, lease_secs } => {
                self.allocate(from, key(si, share), (k, n, segment_size), size, lease_secs)
            }
            Request::WriteBlocks { si, share, upload, start, blocks } => {
                self.pace(blocks.iter().map(|b| b.len()).sum());
                self.write_blocks(from, key(si, share), upload, start, &blocks)
            }
            Request::Commit { si, share, upload, header } => self.commit(from, key(si, share), upload, &header, bill),
            Request::Abort { si, share, upload } => self.abort(from, key(si, share), upload),
            Request::ListShares { si } => Ok(Response::Shares(self.store.list_shares(&si)?)),
            Request::ReadHeader { si, share } => {
                Ok(Response::Header(self.committed_meta(&key(si, share))?.header.into()))
            }
            Request::ReadLeaves { si, share, start, count } => self.read_leaves(key(si, share), start, count),
            Request::ReadBlocks { si, share, start, count } => {
                let r = self.read_blocks(key(si, share), start, count, bill);
                if let Ok(Response::Blocks(blocks)) = &r {
                    self.pace(blocks.iter().map(|b| b.len()).sum());
                }
                r
            }
            Request::GetOffer => self.offer(),
            Request::Challenge { si, share, nonce, count } => {
                let r = self.challenge(from, si, share, nonce, count, bill);
                let slot = match &r {
                    Ok(_) => Some(0),
                    Err(NodeError::NoSuchShare | NodeError::Proof(_) | NodeError::Store(_)) => Some(1),
                    Err(_) => None,
                };
                if let Some(i) = slot {
                    self.audits[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                r
            }
            Request::Renew { si, lease_secs } => self.renew(si, lease_secs, bill),
            Request::OpenChannel { params, offer } => {
                let now = blackbox_util::now_secs();
                if !self.opens.lock().unwrap_or_else(|p| p.into_inner()).take(from, now, audit::OPENS_PER_MINUTE) {
                    return Err(NodeError::TooManyOpens { limit: audit::OPENS_PER_MINUTE });
                }
                Ok(self.billing_or_free()?.open_channel(&params, &offer, now)?)
            }
            Request::Paid { .. } if bill.channel.is_some() => Err(NodeError::NestedPayment),
            Request::Paid { update, inner } => self.paid(from, &update, *inner),
            Request::ChannelStatus { txid, vout } => self.channel_status(bill, txid, vout),
            Request::JobStart(spec) => self.job_start(from, spec, bill),
            Request::JobPoll { job, stdout_from, stderr_from, accept_fuel, accept_core_secs } => {
                self.job_poll(from, job, (stdout_from, stderr_from), (accept_fuel, accept_core_secs), bill)
            }
            Request::JobOutput { job, name, offset } => self.job_output(from, job, &name, offset, bill),
            Request::JobCancel { job } => self.job_cancel(from, job),
            Request::Leases { si } => self.leases_of(si),
            Request::SlotAllocate { si, share, verifying_key, header, replaces, lease_secs } => {
                self.slot_allocate(from, (si, share), verifying_key, &header, replaces, lease_secs)
            }
            Request::SlotCommit { si, share, upload } => self.slot_commit(from, (si, share), upload, bill),
            Request::SlotRead { si } => self.slot_read(si),
        }
    }
}

/// Stripes of the per-share-key locks.
const KEY_LOCKS: usize = 256;

impl<S: ShareStore> RequestHandler for StorageServer<S> {
    fn handle(&self, from: &PeerId, req: Request) -> Response {
        self.dispatch(from, req, &Bill::default()).unwrap_or_else(|e| e.to_response())
    }

    /// Status and offer are in memory; everything else touches the disk (block writes too), so
    /// it runs on a blocking thread, never on the network event loop.
    fn runs_inline(&self, req: &Request) -> bool {
        matches!(req, Request::Status | Request::GetOffer)
    }
}

fn hex_prefix(si: &[u8; 32]) -> String {
    si[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
