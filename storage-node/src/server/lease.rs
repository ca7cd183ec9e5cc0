//! Leases: how long shares are kept, renewals (billed for the time bought) and the sweep that
//! deletes shares whose lease ran out.

use tracing::info;

use blackbox_net::wire::Si;
use blackbox_net::{PeerId, Response};
use blackbox_payments::Usage;
use blackbox_util::now_secs;

use super::{hex_prefix, Reply, StorageServer};
use crate::error::NodeError;
use crate::store::{ShareKey, ShareStore, StoreError};

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
        Self { default_secs: u64::from(blackbox_core::DEFAULT_LEASE_SECS), max_secs: 366 * 86_400 }
    }
}

impl LeasePolicy {
    /// The lease granted for a request of `asked` seconds.
    pub(super) fn grant(&self, asked: u32) -> u64 {
        if asked == 0 {
            self.default_secs.min(self.max_secs)
        } else {
            u64::from(asked).min(self.max_secs)
        }
    }
}

impl<S: ShareStore> StorageServer<S> {
    /// Sets how long shares are leased for.
    pub fn with_leases(mut self, policy: LeasePolicy) -> Self {
        self.leases = policy;
        self
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

    /// Extends the lease of every share of a file held here, billed for the time granted.
    pub(super) fn renew(&self, from: &PeerId, si: Si, lease: u32) -> Reply {
        let shares = self.store.list_shares(&si)?;
        if shares.is_empty() {
            return Err(NodeError::NoSharesOfFile);
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
                self.uncharge(from, rent);
                return Err(e.into());
            }
        }
        Ok(Response::Renewed { shares: shares.len() as u32, expires })
    }
}
