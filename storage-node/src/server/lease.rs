//! Leases: how long shares are kept, renewals (billed for the time bought) and the sweep that
//! deletes shares whose lease ran out.

use tracing::info;

use blackbox_net::wire::Si;
use blackbox_net::Response;
use blackbox_payments::Usage;
use blackbox_util::now_secs;

use super::pay::Bill;
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
    /// many shares and bytes were collected. Each lease is checked again under its share's lock,
    /// so a renewal racing the sweep always wins.
    pub fn collect_expired(&self, now: u64) -> Result<(u64, u64), StoreError> {
        let (mut count, mut bytes) = (0, 0);
        for key in self.store.expired(now)? {
            let _share = self.key_lock(&key);
            if self.store.lease(&key)?.is_none_or(|e| e >= now) {
                continue;
            }
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

    /// The lease expiry of every share of `si` held here.
    pub(super) fn leases_of(&self, si: Si) -> Reply {
        let mut list = Vec::new();
        for share in self.store.list_shares(&si)? {
            if let Some(expires) = self.store.lease(&ShareKey { si, share })? {
                list.push((share, expires));
            }
        }
        Ok(Response::Leases(list))
    }

    /// Extends the lease of every share of a file held here to `lease` seconds from now; leases
    /// only grow (a shorter one leaves a share as it is), and only the extension is billed.
    pub(super) fn renew(&self, si: Si, lease: u32, bill: &Bill) -> Reply {
        let shares = self.store.list_shares(&si)?;
        if shares.is_empty() {
            return Err(NodeError::NoSharesOfFile);
        }
        let target = now_secs().saturating_add(self.leases.grant(lease));
        let keys: Vec<ShareKey> = shares.iter().map(|&share| ShareKey { si, share }).collect();
        let _locks = self.key_locks(&keys);
        let now = now_secs();
        let mut rent = Usage::default();
        let mut grow = Vec::new();
        let mut latest = 0;
        for key in &keys {
            let (meta, old) = (self.committed_meta(key)?, self.store.lease(key)?.unwrap_or(0));
            latest = latest.max(old.max(target));
            if target > old {
                // A lease that ran out (not swept yet) is bought again from now, not from its end.
                rent = rent.with_storage(meta.share_len, target - old.max(now));
                grow.push(*key);
            }
        }
        if grow.is_empty() {
            return Err(NodeError::LeaseLonger { expires: latest });
        }
        let charge = self.charge(bill, rent, "renewing these leases")?;
        for key in &grow {
            if let Err(e) = self.store.set_lease(key, target) {
                self.uncharge(bill, charge);
                return Err(e.into());
            }
        }
        Ok(Response::Renewed { shares: shares.len() as u32, expires: latest })
    }
}
