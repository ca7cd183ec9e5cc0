//! Closing channels: the newest commitment, co-signed and broadcast before the payer's refund
//! becomes valid, and broadcast again until it confirms.

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Txid};
use tracing::{debug, info, warn};

use super::{lock, Billing};

impl Billing {
    /// Broadcasts the newest commitment of every open channel whose timeout is within `margin`
    /// blocks of `height` (all open channels with `margin` = `u32::MAX`), and again every close
    /// that has not confirmed yet; returns the closes made now.
    pub fn close_due(&self, height: u32, margin: u32) -> Vec<(OutPoint, Txid)> {
        let all: Vec<_> = lock(&self.channels).values().cloned().collect();
        let mut closed = Vec::new();
        for ch in all {
            let mut b = lock(&ch.books);
            let a = &b.account;
            let funding = a.channel.params.funding;
            match a.closed {
                Some(txid) if txid != Txid::all_zeros() => {
                    self.rebroadcast(&b.account);
                    continue;
                }
                Some(_) => continue,
                None if height.saturating_add(margin) < a.channel.params.timeout => continue,
                None => {}
            }
            if a.channel.paid < blackbox_payments::script::DUST_LIMIT {
                // A commitment cannot pay dust: closing would give the fee what we earned. The
                // payer takes the funds back with its refund after the timeout.
                info!(%funding, paid = a.channel.paid, "channel earned less than the dust limit; left to time out");
                b.account.closed = Some(Txid::all_zeros());
                let _ = self.persist(&mut b);
                continue;
            }
            let tx = match a.channel.closing_tx(&self.cfg.key) {
                Ok(Some(tx)) => tx,
                Ok(None) => continue,
                Err(e) => {
                    warn!(%funding, error = %e, "cannot build the closing transaction");
                    continue;
                }
            };
            match self.cfg.chain.broadcast(&tx) {
                Ok(txid) => {
                    info!(%funding, %txid, paid = a.channel.paid, "channel closed");
                    b.account.closed = Some(txid);
                    let _ = self.persist(&mut b);
                    closed.push((funding, txid));
                }
                Err(e) => warn!(%funding, error = %e, "closing transaction refused"),
            }
        }
        closed
    }

    /// Broadcasts a close again while its funding output is still unspent on chain (a close
    /// dropped from a mempool must not leave the payer to take everything back at the timeout).
    fn rebroadcast(&self, a: &super::Account) {
        let funding = a.channel.params.funding;
        if !matches!(self.cfg.chain.utxo(&funding), Ok(Some(_))) {
            return;
        }
        if let Ok(Some(tx)) = a.channel.closing_tx(&self.cfg.key) {
            if let Err(e) = self.cfg.chain.broadcast(&tx) {
                debug!(%funding, error = %e, "close not rebroadcast");
            }
        }
    }
}
