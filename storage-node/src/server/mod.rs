//! Request logic of a storage node, independent of the transport: one file per operation family
//! (`upload`, `read`, `audit`, `lease`, `pay`), with dispatch and the shared state here.

mod audit;
#[cfg(feature = "faults")]
mod faults;
mod lease;
mod pay;
mod read;
mod upload;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use blackbox_net::wire::Si;
use blackbox_net::{NodeStatus, PeerId, Request, RequestHandler, Response};

use crate::error::NodeError;
use crate::store::{ShareKey, ShareMeta, ShareStore, StoreError};

#[cfg(feature = "faults")]
pub use faults::Faults;
pub use lease::LeasePolicy;
use upload::Upload;

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
    #[cfg(feature = "faults")]
    faults: Mutex<Faults>,
    /// Payment channels and billing; `None`: the node serves for free.
    billing: Option<std::sync::Arc<crate::billing::Billing>>,
}

/// The outcome of one request.
type Reply = Result<Response, NodeError>;

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
            #[cfg(feature = "faults")]
            faults: Mutex::new(Faults::default()),
            billing: None,
        })
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

    fn committed_meta(&self, key: &ShareKey) -> Result<ShareMeta, NodeError> {
        self.store.meta(key)?.ok_or(NodeError::NoSuchShare)
    }

    fn offer(&self) -> Reply {
        let offer = self.offer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        offer.map(Response::Offer).ok_or(NodeError::NoOffer)
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
            Request::ListShares { si } => Ok(Response::Shares(self.store.list_shares(&si)?)),
            Request::ReadHeader { si, share } => {
                Ok(Response::Header(self.committed_meta(&key(si, share))?.header.into()))
            }
            Request::ReadLeaves { si, share, start, count } => self.read_leaves(key(si, share), start, count),
            Request::ReadBlocks { si, share, start, count } => self.read_blocks(from, key(si, share), start, count),
            Request::GetOffer => self.offer(),
            Request::Challenge { si, share, nonce, count } => self.challenge(si, share, nonce, count),
            Request::Renew { si, lease_secs } => self.renew(from, si, lease_secs),
            Request::OpenChannel { params } => Ok(self.billing_or_free()?.open_channel(from, &params)?),
            Request::Paid { update, inner } => {
                if let Some(b) = &self.billing {
                    b.pay(from, &update)?;
                }
                self.dispatch(from, *inner)
            }
            Request::ChannelStatus { txid, vout } => self.channel_status(txid, vout),
            Request::LeaseCpu { cores, secs } => self.lease_cpu(from, cores, secs),
        }
    }
}

impl<S: ShareStore> RequestHandler for StorageServer<S> {
    fn handle(&self, from: &PeerId, req: Request) -> Response {
        self.dispatch(from, req).unwrap_or_else(|e| e.to_response())
    }

    /// Block writes only hash and copy into the page cache (durability comes at commit, on a
    /// blocking thread); status and offer are in memory. Everything else may read or fsync the disk.
    fn runs_inline(&self, req: &Request) -> bool {
        matches!(req, Request::WriteBlocks { .. } | Request::Status | Request::GetOffer)
    }
}

fn hex_prefix(si: &[u8; 32]) -> String {
    si[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
