//! `blackbox wallet`: what the client paid, and its coins.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use blackbox_client::wallet::wallet_report;

use crate::commands::client_config;
use crate::show;

/// `wallet` options.
#[derive(Args)]
pub struct WalletArgs {
    /// Broadcast the refund of every channel past its timeout that the node never closed.
    #[arg(long)]
    refund: bool,
    /// Print only the wallet's address (e.g. for `blackbox node withdraw $(blackbox wallet --address)`).
    #[arg(long)]
    address: bool,
}

/// `blackbox wallet`: address, balance and every channel (and refunds with `--refund`).
pub async fn wallet(config: Option<PathBuf>, args: WalletArgs) -> Result<ExitCode> {
    let cfg = client_config(config)?;
    if args.address {
        let key = blackbox_client::pay::load_or_create_wallet_key(&cfg.data_dir)?;
        let network = cfg.payments.as_ref().map_or("regtest", |p| p.chain.network.as_str());
        let network: bitcoin::Network = network.parse().map_err(|_| anyhow::anyhow!("unknown network {network}"))?;
        let script = blackbox_payments::wallet::receive_script(&key);
        println!("{}", bitcoin::Address::from_script(&script, network)?);
        return Ok(ExitCode::SUCCESS);
    }
    let w = tokio::task::spawn_blocking(move || wallet_report(&cfg, args.refund)).await??;
    show::wallet(&w, args.refund);
    Ok(ExitCode::SUCCESS)
}
