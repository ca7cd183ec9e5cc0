//! Access to a bitcoin chain: the [`Chain`] trait, [`BitcoindRpc`] (JSON-RPC to Bitcoin Core, or
//! to the devnet chain, which speaks the same subset) and [`DevChain`], an embedded regtest-like
//! chain for local networks and tests that validates every transaction with the consensus library.

mod dev;
mod http;
mod rpc;
mod server;

use std::time::{Duration, Instant};

use bitcoin::{OutPoint, Script, Transaction, TxOut, Txid};

pub use dev::{burn_script, DevChain, COINBASE_MATURITY, SUBSIDY};
pub use rpc::{BitcoindRpc, RpcConfig};
pub use server::RpcServer;

/// Why a chain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The chain refused a transaction (invalid, double spend, not final…).
    #[error("transaction rejected: {0}")]
    Rejected(String),
    /// The chain or the connection to it failed.
    #[error("chain unavailable: {0}")]
    Unavailable(String),
    /// The chain's data on disk is damaged.
    #[error("chain data corrupt: {0}")]
    Corrupt(String),
    /// The request is not supported by this chain (e.g. mining on mainnet).
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// An unspent output as the chain reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unspent {
    /// Where it is.
    pub outpoint: OutPoint,
    /// What it is.
    pub txout: TxOut,
    /// Blocks confirming it (0: only in the mempool).
    pub confirmations: u32,
}

/// What blackbox needs from a bitcoin chain. Calls block; async callers use a blocking thread.
pub trait Chain: Send + Sync {
    /// Height of the best block.
    fn height(&self) -> Result<u32, ChainError>;
    /// Submits a transaction; the chain checks it fully before accepting.
    fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError>;
    /// The output if it is unspent (confirmed or in the mempool), with its confirmations.
    fn utxo(&self, outpoint: &OutPoint) -> Result<Option<Unspent>, ChainError>;
    /// Confirmed unspent outputs paying `script` (a wallet's coins).
    fn unspent(&self, script: &Script) -> Result<Vec<Unspent>, ChainError>;
    /// Mines `blocks` blocks whose rewards pay `script` (regtest and devnet only).
    fn mine(&self, blocks: u32, script: &Script) -> Result<(), ChainError>;
    /// The best block's timestamp (Unix seconds), to check the local clock against.
    fn tip_time(&self) -> Result<u64, ChainError> {
        Err(ChainError::Unsupported("block times".into()))
    }
    /// Waits until the best block is higher than `above` or `timeout` passes; returns the height
    /// then. The default asks for the height once a second; chains that can be told about new
    /// blocks do better.
    fn wait_for_block(&self, above: u32, timeout: Duration) -> Result<u32, ChainError> {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.height()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if h > above || left.is_zero() {
                return Ok(h);
            }
            std::thread::sleep(left.min(Duration::from_secs(1)));
        }
    }
}
