//! `blackbox node …`: set a provider up, run it, and see and spend what it earns.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use blackbox_storage_node::earnings::{earnings as node_earnings, CloseState};
use blackbox_storage_node::power::minute_of;
use blackbox_storage_node::setup::{init, InitOptions, CONFIG_FILE};
use blackbox_storage_node::withdraw::withdraw;
use blackbox_storage_node::NodeConfig;
use blackbox_util::ByteSize;

use crate::show;

#[derive(Subcommand)]
pub enum NodeAction {
    /// Set a node up: check the disk, create keys and the dashboard token, write node.toml.
    Init(InitArgs),
    /// Run the node in the foreground until SIGINT/SIGTERM.
    Run(DirArgs),
    /// What the node billed and received on each payment channel.
    Earnings(JsonArgs),
    /// What electricity costs per resource against the prices, line by line (`[power]`).
    Economics(EconomicsArgs),
    /// Send settled earnings from the node's payment key to a bitcoin address.
    Withdraw(WithdrawArgs),
}

/// Where the node is: `--config FILE` (global) or `--dir DIR` holding `node.toml`.
#[derive(Args)]
pub struct DirArgs {
    /// The node's directory (its node.toml); default $BLACKBOX_NODE_DIR or ~/.blackbox/node.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct JsonArgs {
    #[command(flatten)]
    at: DirArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct InitArgs {
    /// The node's directory (created; holds node.toml, keys and data).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Storage to sell, e.g. 500GiB (default: 90% of the disk's free space).
    #[arg(long)]
    storage: Option<ByteSize>,
    /// Bitcoin address `node withdraw` pays by default.
    #[arg(long)]
    payout: Option<String>,
    /// A peer to join through (repeatable): /ip4/A.B.C.D/tcp/PORT/p2p/PEER-ID.
    #[arg(long)]
    bootstrap: Vec<String>,
    /// libp2p listen address (default /ip4/0.0.0.0/tcp/4001).
    #[arg(long)]
    listen: Option<String>,
    /// Dashboard address (default 127.0.0.1:7780).
    #[arg(long)]
    dashboard: Option<String>,
    /// The bitcoin node to be paid through: a TOML file with rpc_addr, network and rpc_user +
    /// rpc_password or rpc_cookie_file (a devnet's DIR/chain/rpc.toml works).
    #[arg(long)]
    chain: Option<PathBuf>,
    /// Rewrite an existing node.toml (keys are kept).
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct EconomicsArgs {
    #[command(flatten)]
    json: JsonArgs,
    /// Evaluate at this UTC time of day (HH:MM) instead of now.
    #[arg(long)]
    at: Option<String>,
}

#[derive(Args)]
pub struct WithdrawArgs {
    /// Destination address (default: payout_address of node.toml).
    address: Option<String>,
    /// Satoshis to send (default: everything settled, less the fee).
    #[arg(long)]
    amount: Option<u64>,
    #[command(flatten)]
    at: DirArgs,
}

fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BLACKBOX_NODE_DIR") {
        return PathBuf::from(d);
    }
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("blackbox-node"), |h| Path::new(&h).join(".blackbox/node"))
}

/// The node config named by `--config`, or `--dir`'s node.toml, or the default directory's.
pub fn config_path(config: Option<PathBuf>, dir: &DirArgs) -> Result<PathBuf> {
    let path = config.unwrap_or_else(|| dir.dir.clone().unwrap_or_else(default_dir).join(CONFIG_FILE));
    if !path.exists() {
        bail!("no node config at {} (run `blackbox node init` first, or give --config FILE)", path.display());
    }
    Ok(path)
}

/// The node config path `node run` will use, if one is there (to size the runtime).
pub fn run_config(config: &Option<PathBuf>, action: &NodeAction) -> Option<PathBuf> {
    match action {
        NodeAction::Run(d) => config_path(config.clone(), d).ok(),
        _ => None,
    }
}

pub async fn run(config: Option<PathBuf>, action: NodeAction) -> Result<ExitCode> {
    match action {
        NodeAction::Init(a) => init_node(a),
        NodeAction::Run(d) => {
            let cfg = NodeConfig::load(&config_path(config, &d)?)?;
            let fetcher = cfg.compute.fetch_client.clone().map(|c| {
                std::sync::Arc::new(crate::fetch::GridFetcher::new(c))
                    as std::sync::Arc<dyn blackbox_storage_node::jobs::InputFetcher>
            });
            blackbox_storage_node::daemon::run(cfg, fetcher, |s| println!("{s}")).await?;
            Ok(ExitCode::SUCCESS)
        }
        NodeAction::Earnings(a) => {
            let cfg = NodeConfig::load(&config_path(config, &a.at)?)?;
            let e = tokio::task::spawn_blocking(move || node_earnings(&cfg)).await??;
            if a.json {
                println!("{}", earnings_json(&e));
            } else {
                show::earnings(&e);
            }
            Ok(ExitCode::SUCCESS)
        }
        NodeAction::Economics(a) => economics(config, a),
        NodeAction::Withdraw(a) => {
            let cfg = NodeConfig::load(&config_path(config, &a.at)?)?;
            let (to, amount) = (a.address, a.amount);
            let w = tokio::task::spawn_blocking(move || withdraw(&cfg, to.as_deref(), amount)).await??;
            println!(
                "sent {} sat in {} (fee {} sat); the settled balance was {} sat",
                w.amount_sat, w.txid, w.fee_sat, w.balance_sat
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_node(a: InitArgs) -> Result<ExitCode> {
    let chain = a
        .chain
        .as_ref()
        .map(|p| -> Result<blackbox_chain::RpcConfig> {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{} is not a chain config", p.display()))
        })
        .transpose()?;
    let opts = InitOptions {
        dir: a.dir.unwrap_or_else(default_dir),
        storage: a.storage,
        payout: a.payout,
        bootstrap: a.bootstrap,
        listen: a.listen,
        dashboard: a.dashboard,
        chain,
        force: a.force,
    };
    let r = init(&opts)?;
    println!("node set up in {}", opts.dir.display());
    println!("  peer id     {}", r.peer_id);
    println!("  storage     {} offered ({} free on {})", r.storage, ByteSize(r.free), r.filesystem);
    println!("  config      {} (every setting commented)", r.config.display());
    println!("  dashboard   token in {}", r.token_file.display());
    for w in &r.warnings {
        println!("warning: {w}");
    }
    println!("next: blackbox node run --config {}", r.config.display());
    Ok(ExitCode::SUCCESS)
}

fn earnings_json(e: &blackbox_storage_node::earnings::Earnings) -> serde_json::Value {
    let channels: Vec<_> = e
        .channels
        .iter()
        .map(|c| {
            json!({
                "funding": c.funding.to_string(), "capacity_sat": c.capacity, "timeout_height": c.timeout,
                "earned_sat": c.earned, "received_sat": c.received,
                "stored_byte_secs": c.usage.storage_byte_secs.to_string(), "served_bytes": c.usage.egress_bytes,
                "cpu_core_secs": c.usage.cpu_core_secs, "fuel": c.usage.fuel,
                "closed": !matches!(c.close, CloseState::Open),
            })
        })
        .collect();
    json!({"earned_sat": e.earned(), "received_sat": e.received(), "settled_sat": e.settled(), "channels": channels})
}

fn economics(config: Option<PathBuf>, a: EconomicsArgs) -> Result<ExitCode> {
    let cfg = NodeConfig::load(&config_path(config, &a.json.at)?)?;
    let Some(power) = &cfg.power else { bail!("no [power] section in the node config: electricity is not considered") };
    let now = blackbox_util::now_secs();
    let now = match &a.at {
        None => now,
        Some(t) => {
            let (m, _) = blackbox_storage_node::config::parse_hours(&format!("{t}-00:00"))
                .with_context(|| format!("--at {t}: use HH:MM (UTC)"))?;
            now - now % 86_400 + u64::from(m) * 60
        }
    };
    let prices = cfg.offer.prices();
    let lines = power.economics(&prices, now);
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    let schedule: Vec<_> = power.cpu_schedule(&prices).into_iter().map(|(s, e, sold)| (hm(s), hm(e), sold)).collect();
    if a.json.json {
        let sched: Vec<_> = schedule.iter().map(|(s, e, sold)| json!({"from": s, "to": e, "cpu": sold})).collect();
        let out = json!({"at": hm(minute_of(now)), "sat_per_kwh": power.price_at(minute_of(now)),
            "daily_average_sat_per_kwh": power.daily_average(), "margin": power.margin, "lines": lines, "cpu_schedule": sched});
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    show::economics(power, &lines, &schedule, now);
    Ok(ExitCode::SUCCESS)
}
