//! `blackbox wallet`, `blackbox node earnings` and `blackbox cpu-lease`: what was paid and earned.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use bitcoin::hashes::Hash;
use blackbox_chain::{BitcoindRpc, Chain};
use blackbox_client::pay::{load_channels, load_or_create_wallet_key, refund_expired};
use blackbox_payments::wallet::receive_script;
use blackbox_payments::Prices;
use blackbox_storage_node::billing::load_accounts;

use crate::commands::{client, load_config, short};

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
    let cfg = load_config(config)?;
    let Some(pc) = cfg.payments.clone() else { bail!("the client config has no [payments] section") };
    let key = load_or_create_wallet_key(&cfg.data_dir).map_err(anyhow::Error::msg)?;
    let chain = BitcoindRpc::new(pc.chain.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let network = chain.network();
    let dir = cfg.data_dir.join("channels");
    tokio::task::spawn_blocking(move || -> Result<ExitCode> {
        if args.refund {
            let done = refund_expired(&chain, &key, &dir).map_err(anyhow::Error::msg)?;
            for (peer, txid) in &done {
                println!("refund of the channel to {} broadcast: {txid}", short(peer));
            }
            if done.is_empty() {
                println!("no channel to refund (none past its timeout and still unspent)");
            }
        }
        let script = receive_script(&key);
        let address = bitcoin::Address::from_script(&script, network).map(|a| a.to_string()).unwrap_or_default();
        let coins = chain.unspent(&script).map_err(|e| anyhow::anyhow!("{e}"))?;
        let balance: u64 = coins.iter().map(|c| c.txout.value.to_sat()).sum();
        let height = chain.height().map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("address {address}");
        println!("balance {balance} sat in {} coins (chain height {height})", coins.len());
        println!("{:<20} {:>10} {:>10} {:>10} {:>8}  STATE", "NODE", "CAPACITY", "PAID", "LEFT", "TIMEOUT");
        let mut paid_total = 0;
        for (_, r) in load_channels(&dir) {
            let p = r.channel_params().map_err(anyhow::Error::msg)?;
            let state = if let Some(t) = &r.refunded {
                let conf = t
                    .parse::<bitcoin::Txid>()
                    .ok()
                    .and_then(|txid| chain.utxo(&bitcoin::OutPoint { txid, vout: 0 }).ok().flatten())
                    .map_or(0, |u| u.confirmations);
                format!("refunded {t} ({conf} conf)")
            } else {
                match chain.utxo(&p.funding) {
                    Ok(Some(_)) if height >= p.timeout => "timed out: refundable (`wallet --refund`)".to_string(),
                    Ok(Some(_)) => "open".to_string(),
                    Ok(None) => "closed by the node".to_string(),
                    Err(e) => format!("unknown ({e})"),
                }
            };
            paid_total += r.paid;
            println!(
                "{:<20} {:>10} {:>10} {:>10} {:>8}  {state}",
                short(&r.peer),
                p.capacity,
                r.paid,
                p.max_payable() - r.paid,
                p.timeout
            );
        }
        println!("paid {paid_total} sat in all");
        Ok(ExitCode::SUCCESS)
    })
    .await?
}

/// `blackbox node earnings --config node.toml`: per channel, what was billed at the node's prices,
/// what the payer signed over, and whether the close is confirmed.
pub async fn earnings(config: Option<PathBuf>) -> Result<ExitCode> {
    let path = config.context("`node earnings` needs --config NODE.toml")?;
    let cfg = blackbox_storage_node::NodeConfig::load(&path).map_err(anyhow::Error::msg)?;
    let prices = Prices {
        storage_sat_per_gb_month: cfg.offer.storage_sat_per_gb_month,
        egress_sat_per_gb: cfg.offer.egress_sat_per_gb,
        cpu_sat_per_core_hour: cfg.offer.cpu_sat_per_core_hour,
    };
    let accounts = load_accounts(&cfg.data_dir.join("channels")).map_err(anyhow::Error::msg)?;
    let chain = cfg.payments.as_ref().and_then(|p| BitcoindRpc::new(p.chain.clone()).ok());
    tokio::task::spawn_blocking(move || -> Result<ExitCode> {
        println!(
            "prices: {} sat/GB-month stored, {} sat/GB served, {} sat/core-hour",
            prices.storage_sat_per_gb_month, prices.egress_sat_per_gb, prices.cpu_sat_per_core_hour
        );
        println!(
            "{:<14} {:>22} {:>14} {:>10} {:>9} {:>9}  CLOSE",
            "CHANNEL", "STORED (byte-seconds)", "SERVED (bytes)", "CPU (c-s)", "EARNED", "RECEIVED"
        );
        let (mut earned, mut received, mut settled) = (0u64, 0u64, 0u64);
        for a in &accounts {
            let owed = a.usage.owed(&prices);
            earned += owed;
            received += a.channel.paid;
            let close = match (&a.closed, &chain) {
                (None, _) => "open".to_string(),
                (Some(txid), _) if *txid == bitcoin::Txid::all_zeros() => "below dust: not closed".to_string(),
                (Some(txid), Some(chain)) => {
                    // The provider's output is the commitment's first.
                    let out = bitcoin::OutPoint { txid: *txid, vout: 0 };
                    let mine = blackbox_payments::script::p2wpkh(&a.channel.params.provider);
                    match chain.utxo(&out) {
                        Ok(Some(u)) if u.confirmations > 0 && u.txout.script_pubkey == mine => {
                            settled += u.txout.value.to_sat();
                            format!("{} confirmed ({} conf)", short(&txid.to_string()), u.confirmations)
                        }
                        Ok(Some(_)) => format!("{} in mempool", short(&txid.to_string())),
                        Ok(None) => format!("{} (output spent or unknown)", short(&txid.to_string())),
                        Err(e) => format!("{} ({e})", short(&txid.to_string())),
                    }
                }
                (Some(txid), None) => short(&txid.to_string()),
            };
            println!(
                "{:<14} {:>22} {:>14} {:>10} {:>9} {:>9}  {close}",
                short(&a.channel.params.funding.to_string()),
                a.usage.storage_byte_secs,
                a.usage.egress_bytes,
                a.usage.cpu_core_secs,
                owed,
                a.channel.paid
            );
        }
        println!("earned {earned} sat; received {received} sat in commitments; {settled} sat settled on chain");
        Ok(ExitCode::SUCCESS)
    })
    .await?
}

pub async fn cpu_lease(config: Option<PathBuf>, args: CpuLeaseArgs) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let c = client(&cfg).await?;
    let node = c
        .nodes()
        .iter()
        .find(|n| n.peer.to_string() == args.peer)
        .cloned()
        .with_context(|| format!("node {} not found", args.peer))?;
    c.lease_cpu(&node, args.cores, args.secs).await?;
    println!("leased {} core(s) for {} s on {}", args.cores, args.secs, short(&args.peer));
    Ok(ExitCode::SUCCESS)
}
