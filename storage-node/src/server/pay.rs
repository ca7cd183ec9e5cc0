//! The glue between requests and billing: the channel a `Paid` envelope proves, charges at that
//! channel's prices recorded on the request's bill (its receipt), channel status.

use std::cell::Cell;
use std::sync::Arc;

use bitcoin::OutPoint;

use blackbox_net::Response;
use blackbox_payments::Usage;

use super::{Reply, StorageServer};
use crate::billing::{Billing, BillingError};
use crate::error::NodeError;
use crate::store::ShareStore;

/// What one request is paid from and what it was charged.
#[derive(Debug, Default)]
pub(super) struct Bill {
    /// The channel whose payer signed the request's envelope.
    pub(super) channel: Option<OutPoint>,
    /// Satoshis charged so far for the request.
    pub(super) charged: Cell<u64>,
}

/// One charge, to take back if the work then fails.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Charge {
    delta: Usage,
    cost: u64,
}

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

    /// Bills `delta` to the request's channel (nothing without billing).
    pub(super) fn charge(&self, bill: &Bill, delta: Usage, what: &'static str) -> Result<Charge, NodeError> {
        let Some(b) = &self.billing else { return Ok(Charge::default()) };
        let channel = bill.channel.ok_or(BillingError::NoChannel { what })?;
        let cost = b.charge(&channel, delta, what)?;
        bill.charged.set(bill.charged.get() + cost);
        Ok(Charge { delta, cost })
    }

    /// Whether the request's channel covers `delta`, billing nothing yet.
    pub(super) fn covers(&self, bill: &Bill, delta: Usage, what: &'static str) -> Result<(), NodeError> {
        let Some(b) = &self.billing else { return Ok(()) };
        let channel = bill.channel.ok_or(BillingError::NoChannel { what })?;
        b.covers(&channel, delta, what)?;
        Ok(())
    }

    /// Takes back a charge for work that then failed.
    pub(super) fn uncharge(&self, bill: &Bill, charge: Charge) {
        if let (Some(b), Some(channel)) = (&self.billing, &bill.channel) {
            b.refund(channel, charge.delta, charge.cost);
            bill.charged.set(bill.charged.get().saturating_sub(charge.cost));
        }
    }

    pub(super) fn billing_or_free(&self) -> Result<&Billing, NodeError> {
        self.billing.as_deref().ok_or(NodeError::NoPayments)
    }

    /// Serves `inner` paid from the channel whose payer signed `update`; the answer is a receipt
    /// of what was charged (0 when `inner` failed) and what the channel owes now.
    pub(super) fn paid(&self, from: &blackbox_net::PeerId, update: &[u8], inner: blackbox_net::Request) -> Reply {
        let billing = self.billing_or_free()?;
        let channel = billing.payer(update)?;
        let bill = Bill { channel: Some(channel), charged: Cell::new(0) };
        let answer = self.dispatch(from, inner, &bill).unwrap_or_else(|e| e.to_response());
        #[cfg(feature = "faults")]
        self.die_after_charge(bill.charged.get());
        Ok(Response::Receipt { charged: bill.charged.get(), owed: billing.owed(&channel), inner: Box::new(answer) })
    }

    pub(super) fn channel_status(&self, bill: &Bill, txid: [u8; 32], vout: u32) -> Reply {
        use bitcoin::hashes::Hash;
        let funding = OutPoint { txid: bitcoin::Txid::from_byte_array(txid), vout };
        Ok(self.billing_or_free()?.status(bill.channel.as_ref(), funding)?)
    }
}
