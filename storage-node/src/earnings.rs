//! What a node billed and received on each payment channel, and what is settled on chain: the
//! report behind `blackbox node earnings` (and the dashboard to come).

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Txid};
use thiserror::Error;

use blackbox_chain::{BitcoindRpc, Chain, ChainError};
use blackbox_core::Prices;
use blackbox_payments::Usage;

use crate::billing::{load_accounts, LoadError};
use crate::NodeConfig;

/// Where a channel's close stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseState {
    /// Not closed yet.
    Open,
    /// Earned less than the dust limit: left to time out, never closed.
    BelowDust,
    /// The close pays us and is confirmed.
    Confirmed { txid: Txid, confirmations: u32, settled_sat: u64 },
    /// Broadcast, not yet in a block.
    Mempool(Txid),
    /// Our output is spent already, or the chain does not know it.
    SpentOrUnknown(Txid),
    /// The chain could not be asked (or none is configured).
    Unchecked { txid: Txid, why: String },
}

/// One channel of the report.
#[derive(Debug, Clone)]
pub struct ChannelEarnings {
    /// Its funding output.
    pub funding: OutPoint,
    /// Satoshis locked in it.
    pub capacity: u64,
    /// Block height at which the payer may take the funds back: the node closes before.
    pub timeout: u32,
    /// Everything billed on it.
    pub usage: Usage,
    /// Satoshis owed for that usage at the node's prices.
    pub earned: u64,
    /// Satoshis the payer signed over in commitments.
    pub received: u64,
    /// The close on chain.
    pub close: CloseState,
}

/// The node's earnings, per channel and in total.
#[derive(Debug, Clone)]
pub struct Earnings {
    /// The node's prices now (each channel keeps those it was opened at).
    pub prices: Prices,
    /// Every channel, by funding output.
    pub channels: Vec<ChannelEarnings>,
}

impl Earnings {
    /// Satoshis earned in all.
    pub fn earned(&self) -> u64 {
        self.channels.iter().map(|c| c.earned).sum()
    }

    /// Satoshis received in commitments in all.
    pub fn received(&self) -> u64 {
        self.channels.iter().map(|c| c.received).sum()
    }

    /// Satoshis settled on chain (confirmed closes) in all.
    pub fn settled(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| if let CloseState::Confirmed { settled_sat, .. } = c.close { settled_sat } else { 0 })
            .sum()
    }
}

/// The report cannot be made.
#[derive(Debug, Error)]
pub enum EarningsError {
    /// The channel records cannot be read.
    #[error(transparent)]
    Records(#[from] LoadError),
    /// The configured chain cannot be used.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// Reads the node's channel records and asks the chain how each close stands (blocking).
pub fn earnings(cfg: &NodeConfig) -> Result<Earnings, EarningsError> {
    let prices = cfg.offer.prices();
    let accounts = load_accounts(&cfg.data_dir.join("channels"), prices)?;
    let chain = cfg.payments.as_ref().map(|p| BitcoindRpc::new(p.chain.clone())).transpose()?;
    let channels = accounts
        .iter()
        .map(|a| {
            let provider = blackbox_payments::script::p2wpkh(&a.channel.params.provider);
            let close = match a.closed {
                None => CloseState::Open,
                Some(txid) if txid == Txid::all_zeros() => CloseState::BelowDust,
                Some(txid) => close_state(chain.as_ref(), txid, &provider),
            };
            ChannelEarnings {
                funding: a.channel.params.funding,
                capacity: a.channel.params.capacity,
                timeout: a.channel.params.timeout,
                usage: a.usage,
                earned: a.owed,
                received: a.channel.paid,
                close,
            }
        })
        .collect();
    Ok(Earnings { prices, channels })
}

fn close_state(chain: Option<&BitcoindRpc>, txid: Txid, provider: &bitcoin::ScriptBuf) -> CloseState {
    let Some(chain) = chain else { return CloseState::Unchecked { txid, why: "no chain configured".into() } };
    // The provider's output is the commitment's first.
    match chain.utxo(&OutPoint { txid, vout: 0 }) {
        Ok(Some(u)) if u.confirmations > 0 && u.txout.script_pubkey == *provider => {
            CloseState::Confirmed { txid, confirmations: u.confirmations, settled_sat: u.txout.value.to_sat() }
        }
        Ok(Some(_)) => CloseState::Mempool(txid),
        Ok(None) => CloseState::SpentOrUnknown(txid),
        Err(e) => CloseState::Unchecked { txid, why: e.to_string() },
    }
}
