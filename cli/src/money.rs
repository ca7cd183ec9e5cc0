//! `blackbox wallet`, `blackbox node earnings` and `blackbox cpu-lease`: what was paid and earned.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use blackbox_client::wallet::wallet_report;
use blackbox_storage_node::earnings::earnings as node_earnings;
use blackbox_storage_node::NodeConfig;

use crate::commands::client_config;
use crate::show;

/// `wallet` options.
#[derive(Args)]
pub struct WalletArgs {
    /// Broadcast the refund of every channel past its timeout that the node never closed.
    #[arg(long)]
    refund: bool,
}

/// `blackbox wallet`: address, balance and every channel (and refunds with `--refund`).
pub async fn wallet(config: Option<PathBuf>, args: WalletArgs) -> Result<ExitCode> {
    let cfg = client_config(config)?;
    let w = tokio::task::spawn_blocking(move || wallet_report(&cfg, args.refund)).await??;
    show::wallet(&w, args.refund);
    Ok(ExitCode::SUCCESS)
}

/// `blackbox node earnings --config node.toml`: per channel, what was billed at the node's prices,
/// what the payer signed over, and whether the close is confirmed.
pub async fn earnings(config: Option<PathBuf>) -> Result<ExitCode> {
    let path = config.context("`node earnings` needs --config NODE.toml")?;
    let cfg = NodeConfig::load(&path)?;
    let e = tokio::task::spawn_blocking(move || node_earnings(&cfg)).await??;
    show::earnings(&e);
    Ok(ExitCode::SUCCESS)
}
