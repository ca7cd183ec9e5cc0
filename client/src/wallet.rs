//! The wallet report behind `blackbox wallet`: the wallet's address and balance, and every
//! payment channel with what was paid on it and where it stands on chain.

use bitcoin::{OutPoint, Txid};

use blackbox_chain::{BitcoindRpc, Chain};
use blackbox_payments::wallet::receive_script;

use crate::pay::{load_channels, load_or_create_wallet_key, refund_expired, PayError};
use crate::{ClientConfig, ClientError};

/// Where a channel stands on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelState {
    /// Funding unspent, before the timeout.
    Open,
    /// Funding unspent past the timeout: the refund can be broadcast.
    Refundable,
    /// The node spent the funding output (closed with a commitment).
    ClosedByNode,
    /// The client's refund was broadcast.
    Refunded { txid: String, confirmations: u32 },
    /// The chain could not say.
    Unknown(String),
}

/// One channel of the report.
#[derive(Debug, Clone)]
pub struct ChannelLine {
    /// The node paid.
    pub peer: String,
    /// Satoshis locked.
    pub capacity: u64,
    /// Satoshis signed over.
    pub paid: u64,
    /// Satoshis that can still be paid.
    pub left: u64,
    /// Satoshis the node's receipts say it charged.
    pub owed: u64,
    /// Job fuel the node charged on this channel.
    pub fuel: u64,
    /// Block height of the refund path.
    pub timeout: u32,
    /// On chain.
    pub state: ChannelState,
}

/// The wallet and its channels.
#[derive(Debug, Clone)]
pub struct WalletReport {
    /// The wallet's receive address.
    pub address: String,
    /// Spendable satoshis and how many coins hold them.
    pub balance: u64,
    /// Coins.
    pub coins: usize,
    /// Current chain height.
    pub height: u32,
    /// Refunds broadcast by this call: (node, txid).
    pub refunds: Vec<(String, Txid)>,
    /// Every channel.
    pub channels: Vec<ChannelLine>,
}

impl WalletReport {
    /// Satoshis paid over all channels.
    pub fn paid(&self) -> u64 {
        self.channels.iter().map(|c| c.paid).sum()
    }
}

/// Reads the wallet and its channels (blocking: it asks the chain); with `refund`, first
/// broadcasts the refund of every channel past its timeout that the node never closed.
pub fn wallet_report(cfg: &ClientConfig, refund: bool) -> Result<WalletReport, ClientError> {
    let pc = cfg.payments.as_ref().ok_or(ClientError::NoPayments)?;
    let key = load_or_create_wallet_key(&cfg.data_dir)?;
    let chain = BitcoindRpc::new(pc.chain.clone()).map_err(PayError::Chain)?;
    let dir = cfg.data_dir.join("channels");
    let refunds = if refund { refund_expired(&chain, &key, &dir)? } else { Vec::new() };
    let script = receive_script(&key);
    let address = bitcoin::Address::from_script(&script, chain.network()).map(|a| a.to_string()).unwrap_or_default();
    let coins = chain.unspent(&script).map_err(PayError::Chain)?;
    let height = chain.height().map_err(PayError::Chain)?;
    let mut channels = Vec::new();
    for (_, r) in load_channels(&dir) {
        let p = r.channel_params()?;
        let state = match &r.refunded {
            Some(t) => {
                let out = t.parse::<Txid>().ok().map(|txid| OutPoint { txid, vout: 0 });
                let confirmations = out.and_then(|o| chain.utxo(&o).ok().flatten()).map_or(0, |u| u.confirmations);
                ChannelState::Refunded { txid: t.clone(), confirmations }
            }
            None => match chain.utxo(&p.funding) {
                Ok(Some(_)) if height >= p.timeout => ChannelState::Refundable,
                Ok(Some(_)) => ChannelState::Open,
                Ok(None) => ChannelState::ClosedByNode,
                Err(e) => ChannelState::Unknown(e.to_string()),
            },
        };
        let left = p.max_payable().saturating_sub(r.paid);
        channels.push(ChannelLine {
            peer: r.peer.clone(),
            capacity: p.capacity,
            paid: r.paid,
            left,
            owed: r.owed,
            fuel: r.fuel,
            timeout: p.timeout,
            state,
        });
    }
    let balance = coins.iter().map(|c| c.txout.value.to_sat()).sum();
    Ok(WalletReport { address, balance, coins: coins.len(), height, refunds, channels })
}
