//! The glue between requests and billing: charges at the offer's prices, channel status, and
//! CPU leases.

use std::sync::Arc;

use tracing::info;

use blackbox_net::{PeerId, Response};
use blackbox_payments::Usage;

use super::{Reply, StorageServer};
use crate::billing::Billing;
use crate::error::NodeError;
use crate::store::ShareStore;

impl<S: ShareStore> StorageServer<S> {
    /// Bills storage, egress and CPU through payment channels.
    pub fn with_billing(mut self, billing: Arc<Billing>) -> Self {
        self.billing = Some(billing);
        self
    }

    /// The billing, if the node takes payments.
    pub fn billing(&self) -> Option<&Arc<Billing>> {
        self.billing.as_ref()
    }

    /// Bills `delta` to `from`'s channel (nothing without billing).
    pub(super) fn charge(&self, from: &PeerId, delta: Usage, what: &'static str) -> Result<(), NodeError> {
        match &self.billing {
            Some(b) => Ok(b.charge(from, delta, what)?),
            None => Ok(()),
        }
    }

    /// Whether `from`'s channel covers `delta`, billing nothing yet.
    pub(super) fn covers(&self, from: &PeerId, delta: Usage, what: &'static str) -> Result<(), NodeError> {
        match &self.billing {
            Some(b) => Ok(b.covers(from, delta, what)?),
            None => Ok(()),
        }
    }

    /// Takes back a charge for work that then failed.
    pub(super) fn uncharge(&self, from: &PeerId, delta: Usage) {
        if let Some(b) = &self.billing {
            b.uncharge(from, delta);
        }
    }

    pub(super) fn billing_or_free(&self) -> Result<&Billing, NodeError> {
        self.billing.as_deref().ok_or(NodeError::NoPayments)
    }

    pub(super) fn channel_status(&self, txid: [u8; 32], vout: u32) -> Reply {
        use bitcoin::hashes::Hash;
        let funding = bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array(txid), vout };
        Ok(self.billing_or_free()?.status(funding)?)
    }

    pub(super) fn lease_cpu(&self, from: &PeerId, cores: u32, secs: u32) -> Reply {
        let core_secs = u64::from(cores) * u64::from(secs);
        self.charge(from, Usage::default().with_cpu(core_secs), "this CPU lease")?;
        info!(cores, secs, "CPU lease granted");
        Ok(Response::Ok)
    }
}
