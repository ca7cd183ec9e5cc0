//! `blackbox wallet`, `blackbox node earnings` and `blackbox cpu-lease`: what was paid and earned.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use blackbox_client::wallet::{wallet_report, ChannelState};
use blackbox_client::ClientConfig;
use blackbox_storage_node::earnings::{earnings as node_earnings, CloseState};
use blackbox_storage_node::NodeConfig;

use crate::commands::session;
use crate::show::short;

/// `wallet` options.
#[derive(Args)]
pub struct WalletArgs {
    /// Broadcast the refund of every channel past its timeout that the node never closed.
    #[arg(long)]
    refund: bool,
}

/// `cpu-lease` options.
#[derive(Args)]
pub struct CpuLeaseArgs {
    /// Peer id of the node.
    peer: String,
    /// Cores to lease.
    #[arg(long, default_value_t = 1)]
    cores: u32,
    /// Seconds to lease them for.
    #[arg(long)]
    secs: u32,
}

pub async fn wallet(config: Option<PathBuf>, args: WalletArgs) -> Result<ExitCode> {
    let Some(path) = config else { bail!("no client config: pass --config FILE or set BLACKBOX_CONFIG") };
    let cfg = ClientConfig::load(&path)?;
    let w = tokio::task::spawn_blocking(move || wallet_report(&cfg, args.refund)).await??;
    for (peer, txid) in &w.refunds {
        println!("refund of the channel to {} broadcast: {txid}", short(peer));
    }
    if args.refund && w.refunds.is_empty() {
        println!("no channel to refund (none past its timeout and still unspent)");
    }
    println!("address {}", w.address);
    println!("balance {} sat in {} coins (chain height {})", w.balance, w.coins, w.height);
    println!("{:<20} {:>10} {:>10} {:>10} {:>8}  STATE", "NODE", "CAPACITY", "PAID", "LEFT", "TIMEOUT");
    for c in &w.channels {
        let state = match &c.state {
            ChannelState::Open => "open".to_string(),
            ChannelState::Refundable => "timed out: refundable (`wallet --refund`)".to_string(),
            ChannelState::ClosedByNode => "closed by the node".to_string(),
            ChannelState::Refunded { txid, confirmations } => format!("refunded {txid} ({confirmations} conf)"),
            ChannelState::Unknown(e) => format!("unknown ({e})"),
        };
        println!("{:<20} {:>10} {:>10} {:>10} {:>8}  {state}", short(&c.peer), c.capacity, c.paid, c.left, c.timeout);
    }
    println!("paid {} sat in all", w.paid());
    Ok(ExitCode::SUCCESS)
}

/// `blackbox node earnings --config node.toml`: per channel, what was billed at the node's prices,
/// what the payer signed over, and whether the close is confirmed.
pub async fn earnings(config: Option<PathBuf>) -> Result<ExitCode> {
    let path = config.context("`node earnings` needs --config NODE.toml")?;
    let cfg = NodeConfig::load(&path)?;
    let e = tokio::task::spawn_blocking(move || node_earnings(&cfg)).await??;
    let p = e.prices;
    println!(
        "prices: {} sat/GB-month stored, {} sat/GB served, {} sat/core-hour",
        p.storage_sat_per_gb_month, p.egress_sat_per_gb, p.cpu_sat_per_core_hour
    );
    println!(
        "{:<14} {:>22} {:>14} {:>10} {:>9} {:>9}  CLOSE",
        "CHANNEL", "STORED (byte-seconds)", "SERVED (bytes)", "CPU (c-s)", "EARNED", "RECEIVED"
    );
    for c in &e.channels {
        let close = match &c.close {
            CloseState::Open => "open".to_string(),
            CloseState::BelowDust => "below dust: not closed".to_string(),
            CloseState::Confirmed { txid, confirmations, .. } => {
                format!("{} confirmed ({confirmations} conf)", short(&txid.to_string()))
            }
            CloseState::Mempool(txid) => format!("{} in mempool", short(&txid.to_string())),
            CloseState::SpentOrUnknown(txid) => format!("{} (output spent or unknown)", short(&txid.to_string())),
            CloseState::Unchecked { txid, why } => format!("{} ({why})", short(&txid.to_string())),
        };
        println!(
            "{:<14} {:>22} {:>14} {:>10} {:>9} {:>9}  {close}",
            short(&c.funding.to_string()),
            c.usage.storage_byte_secs,
            c.usage.egress_bytes,
            c.usage.cpu_core_secs,
            c.earned,
            c.received
        );
    }
    println!(
        "earned {} sat; received {} sat in commitments; {} sat settled on chain",
        e.earned(),
        e.received(),
        e.settled()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn cpu_lease(config: Option<PathBuf>, args: CpuLeaseArgs) -> Result<ExitCode> {
    let s = session(config).await?;
    s.lease_cpu(&args.peer, args.cores, args.secs).await?;
    println!("leased {} core(s) for {} s on {}", args.cores, args.secs, short(&args.peer));
    Ok(ExitCode::SUCCESS)
}
