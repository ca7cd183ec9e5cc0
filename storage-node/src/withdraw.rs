//! `blackbox node withdraw`: spends the coins that channel closes paid to the node's payment key
//! to the operator's address (all of them, or an amount with change back to the key), built and
//! checked with the consensus library before it is broadcast.

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Amount, Network, Transaction, TxOut, Txid};
use thiserror::Error;

use blackbox_chain::{BitcoindRpc, Chain, ChainError};
use blackbox_payments::wallet::{receive_script, spend, sweep};

use crate::keys::{load_payment_secret, KeyError};
use crate::NodeConfig;

/// Why a withdrawal cannot be made.
#[derive(Debug, Error)]
pub enum WithdrawError {
    /// The node takes no payments.
    #[error("this node has no [payments] section: there is nothing to withdraw")]
    NoPayments,
    /// No address given and none configured.
    #[error("no address: give one, or set payout_address in the node config")]
    NoAddress,
    /// The address does not parse or is for another network.
    #[error("invalid address `{0}`: {1}")]
    Address(String, String),
    /// The payment key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The chain refused or failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The coins do not cover it.
    #[error("cannot build the withdrawal: {0}")]
    Build(blackbox_payments::PaymentError),
}

/// A withdrawal made.
#[derive(Debug, Clone)]
pub struct Withdrawal {
    /// The transaction broadcast.
    pub txid: Txid,
    /// Satoshis sent to the address.
    pub amount_sat: u64,
    /// Fee paid.
    pub fee_sat: u64,
    /// The settled balance before.
    pub balance_sat: u64,
}

/// Parses `text` as an address of the chain's `network` (`regtest`, `bitcoin`…).
pub fn parse_address(text: &str, network: &str) -> Result<Address, WithdrawError> {
    let bad = |why: String| WithdrawError::Address(text.to_string(), why);
    let net: Network = network.parse().map_err(|_| bad(format!("unknown network {network}")))?;
    let unchecked: Address<NetworkUnchecked> = text.parse().map_err(|e| bad(format!("{e}")))?;
    unchecked.require_network(net).map_err(|_| bad(format!("not an address of the {network} network")))
}

/// The node's settled balance: confirmed coins paying its payment key.
pub fn balance(cfg: &NodeConfig) -> Result<u64, WithdrawError> {
    let pc = cfg.payments.as_ref().ok_or(WithdrawError::NoPayments)?;
    let chain = BitcoindRpc::new(pc.chain.clone())?;
    let key = load_payment_secret(&cfg.data_dir)?;
    Ok(chain.unspent(&receive_script(&key))?.iter().map(|u| u.txout.value.to_sat()).sum())
}

/// Sends `amount` satoshis (all: `None`) of the settled balance to `to` (or `payout_address`).
pub fn withdraw(cfg: &NodeConfig, to: Option<&str>, amount: Option<u64>) -> Result<Withdrawal, WithdrawError> {
    let pc = cfg.payments.as_ref().ok_or(WithdrawError::NoPayments)?;
    let to = to.map(str::to_string).or_else(|| Some(cfg.payout_address.clone()).filter(|a| !a.is_empty()));
    let address = parse_address(&to.ok_or(WithdrawError::NoAddress)?, &pc.chain.network)?;
    let chain = BitcoindRpc::new(pc.chain.clone())?;
    let key = load_payment_secret(&cfg.data_dir)?;
    let coins: Vec<_> = chain.unspent(&receive_script(&key))?.into_iter().map(|u| (u.outpoint, u.txout)).collect();
    let balance_sat = coins.iter().map(|(_, o)| o.value.to_sat()).sum();
    let tx: Transaction = match amount {
        None => sweep(&coins, &key, address.script_pubkey()),
        Some(sat) => {
            spend(&coins, &key, vec![TxOut { value: Amount::from_sat(sat), script_pubkey: address.script_pubkey() }])
        }
    }
    .map_err(WithdrawError::Build)?;
    let out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    let spent: u64 = tx
        .input
        .iter()
        .filter_map(|i| coins.iter().find(|(op, _)| *op == i.previous_output))
        .map(|(_, o)| o.value.to_sat())
        .sum();
    let amount_sat = tx.output.first().map_or(0, |o| o.value.to_sat());
    let txid = chain.broadcast(&tx)?;
    Ok(Withdrawal { txid, amount_sat, fee_sat: spent - out, balance_sat })
}
