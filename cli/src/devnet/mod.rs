//! `blackbox devnet up`: a local network of real node processes on 127.0.0.1, with its own
//! bitcoin chain, and the client config (and wallet funds) to use it.

mod chain;
mod netns;
mod procs;

pub use netns::parse_rate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use blackbox_chain::{burn_script, Chain};
use blackbox_client::config::{ClientConfig, ClientPayments};
use blackbox_storage_node::config::{DashboardConfig, OfferConfig, PaymentsConfig};
use blackbox_storage_node::daemon::NodeInfo;
use blackbox_storage_node::jobs::ComputeConfig;
use blackbox_storage_node::NodeConfig;
use blackbox_util::{write_atomic, write_secret, ByteSize};

use chain::{fund_wallet, start_chain, DevnetChain};
use procs::{node_dir, spawn_node, stop_all, supervise, wait_discoverable, wait_ready, NodeProc, Stop};

/// Storage price of a devnet node without `--price-spread`, in sat per GB-month.
const DEVNET_STORAGE_PRICE: u64 = 1_000_000;

/// `devnet up` options.
#[derive(Args)]
pub struct UpArgs {
    /// Number of storage nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Directory holding every node's data dir and the client config.
    #[arg(long)]
    dir: PathBuf,
    /// Quota of each new node, e.g. 20GiB.
    #[arg(long, default_value = "20GiB", value_parser = |s: &str| ByteSize::parse(s))]
    quota: ByteSize,
    /// Spread of storage prices over new nodes: node i asks 1,000,000 × SPREAD^(i/(N-1))
    /// sat/GB-month (1: all ask the same).
    #[arg(long, default_value_t = 1.0)]
    price_spread: f64,
    /// Declare this many regions over new nodes (node i in region `r<i mod R>`), since on one machine
    /// every node shares 127.0.0.1; 0: none.
    #[arg(long, default_value_t = 0)]
    regions: usize,
    /// Run without the devnet chain and payments (nodes serve for free).
    #[arg(long)]
    no_payments: bool,
    /// Seconds between devnet blocks.
    #[arg(long, default_value_t = 1.0)]
    block_secs: f64,
    /// Blocks from opening a payment channel to its timeout (the client's refund path); nodes
    /// close channels 6 blocks before it.
    #[arg(long, default_value_t = 600)]
    channel_blocks: u32,
    /// Run each node in a network namespace of its own (root): a private bridge, each node with
    /// an address in its own /24 of 198.18.0.0/16 (a benchmark range, never routed anywhere),
    /// removed when the devnet stops.
    #[arg(long)]
    netns: bool,
    /// With --netns: shape each node's link to this rate in both directions (tc tbf), e.g.
    /// 100mbit.
    #[arg(long, requires = "netns", value_parser = |s: &str| netns::parse_rate(s).map(|_| s.to_string()))]
    node_rate: Option<String>,
    /// With --netns: shape the client's uplink (the host's side of the bridge) to this rate.
    #[arg(long, requires = "netns", value_parser = |s: &str| netns::parse_rate(s).map(|_| s.to_string()))]
    client_rate: Option<String>,
    /// With --netns: nodes sharing each /24 (to see placement spread over network groups).
    #[arg(long, requires = "netns", default_value_t = 1)]
    per_subnet: usize,
}

impl UpArgs {
    /// The offer section of new node `i`.
    fn offer(&self, i: usize) -> OfferConfig {
        let frac = if self.nodes > 1 { i as f64 / (self.nodes - 1) as f64 } else { 0.0 };
        let spread = if self.price_spread.is_finite() && self.price_spread >= 1.0 { self.price_spread } else { 1.0 };
        // Devnet coins cost nothing: prices high enough that even small files earn more than the
        // dust limit, so channels close on chain with real amounts.
        OfferConfig {
            storage_sat_per_gb_month: (DEVNET_STORAGE_PRICE as f64 * spread.powf(frac)).round() as u64,
            egress_sat_per_gb: 1_000_000,
            cpu_sat_per_core_hour: 3_600,
            fuel_sat_per_gfuel: 1_000,
            cpu_cores: 2.0,
            ram: ByteSize(2 << 30),
            region: if self.regions > 0 { format!("r{}", i % self.regions) } else { String::new() },
            ..OfferConfig::default()
        }
    }
}

/// Writes `node.toml` for a new node on a free port of its own; keeps an existing one so restarts
/// reuse ports and data.
fn ensure_node_config(
    dir: &Path,
    (ip, quota): (&str, ByteSize),
    bootstrap: Option<&str>,
    offer: OfferConfig,
    payments: &Option<PaymentsConfig>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("node.toml");
    if path.exists() {
        // The devnet owns the payments section, the address and the bootstrap peer: point them
        // at this run's chain and network (same port).
        let mut cfg = NodeConfig::load(&path)?;
        let listen = with_ip(&cfg.listen, ip);
        let boot: Vec<String> = bootstrap.map(|b| vec![b.to_string()]).unwrap_or_default();
        if cfg.payments.as_ref().map(|p| &p.chain) != payments.as_ref().map(|p| &p.chain)
            || cfg.listen != listen
            || cfg.bootstrap != boot
        {
            cfg.payments = payments.clone();
            cfg.listen = listen;
            cfg.bootstrap = boot;
            save_node_config(&path, cfg)?;
        }
    } else {
        let cfg = NodeConfig {
            data_dir: PathBuf::from("."),
            listen: format!("/ip4/{ip}/tcp/{}", pick_listen_port()?),
            bootstrap: bootstrap.map(|b| vec![b.to_string()]).unwrap_or_default(),
            offer,
            quota,
            threads: 1,
            payments: payments.clone(),
            // Many nodes on one machine: each dashboard on a port of its own (in its node.info).
            dashboard: DashboardConfig { enabled: true, listen: "127.0.0.1:0".into() },
            compute: ComputeConfig {
                enabled: true,
                fetch_client: Some(PathBuf::from(FETCH_CLIENT)),
                ..ComputeConfig::default()
            },
            ..NodeConfig::default()
        };
        save_node_config(&path, cfg)?;
    }
    Ok(path)
}

/// Writes a node config with its data dir beside it (owner-only: it holds the chain password).
fn save_node_config(path: &Path, mut cfg: NodeConfig) -> Result<()> {
    cfg.data_dir = PathBuf::from(".");
    write_secret(path, toml::to_string(&cfg)?.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

const ANY_PORT: &str = "/ip4/127.0.0.1/tcp/0";

/// `/ip4/A/tcp/P` with `ip` for A (anything else unchanged).
fn with_ip(listen: &str, ip: &str) -> String {
    match listen.strip_prefix("/ip4/").and_then(|rest| rest.split_once('/')) {
        Some((_, tail)) => format!("/ip4/{ip}/{tail}"),
        None => listen.to_string(),
    }
}

/// A port that is free now and below the kernel's ephemeral range. A port the OS picks for a
/// listener lies in that range, where any outgoing connection on the machine may take it while its
/// node is stopped, so a restart could not listen there again.
pub(super) fn pick_listen_port() -> Result<u16> {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
        .max(2048);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = rand::thread_rng().gen_range(low / 2..low);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port below {low} on 127.0.0.1")
}
/// The client config each devnet node reads job inputs with (its own wallet pays the others).
const FETCH_CLIENT: &str = "fetch-client.toml";

/// Writes each node's fetch client config (beside its node config) and funds its wallet.
fn write_fetch_clients(args: &UpArgs, root: &Path, chain: Option<&DevnetChain>, bootstrap: &str) -> Result<()> {
    for i in 0..args.nodes {
        let dir = node_dir(root, i);
        let client = ClientConfig {
            bootstrap: vec![bootstrap.to_string()],
            data_dir: PathBuf::from("fetch-client-data"),
            total: args.nodes.min(ClientConfig::default().total),
            payments: chain.map(|c| ClientPayments {
                chain: c.rpc.clone(),
                channel_blocks: args.channel_blocks,
                channel_capacity_sat: 2_000_000,
                ..ClientPayments::default()
            }),
            ..ClientConfig::default()
        };
        if let Some(c) = chain {
            fund_wallet(&c.chain, &dir.join("fetch-client-data"), 4)?;
        }
        let path = dir.join(FETCH_CLIENT);
        write_secret(&path, toml::to_string(&client)?.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Rewrites the config of every node that started on an OS-picked port (a devnet made by an older
/// version) with the port it got, so a restart finds each node where `client.toml` says it is.
fn pin_ports(procs: &[NodeProc], infos: &[NodeInfo]) -> Result<()> {
    for (p, info) in procs.iter().zip(infos) {
        let path = p.dir.join("node.toml");
        let mut cfg = NodeConfig::load(&path)?;
        if cfg.listen != ANY_PORT {
            continue;
        }
        let addr = info.addrs.first().context("node reported no listen address")?;
        cfg.listen = addr.clone();
        save_node_config(&path, cfg)?;
    }
    Ok(())
}

/// Starts node 0 (which starts the DHT), then every other node bootstrapping from it (each in its
/// namespace with `--netns`); returns the processes and the bootstrap address.
async fn start_nodes(
    args: &UpArgs,
    root: &Path,
    (payments, net): (&Option<PaymentsConfig>, Option<&netns::Netns>),
    procs: &mut Vec<NodeProc>,
) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the blackbox executable")?;
    let ip = |i: usize| net.map_or("127.0.0.1".to_string(), |n| n.node_ip(i, args.per_subnet));
    let ns = |i: usize| net.map(|n| n.ns(i));
    let dir = node_dir(root, 0);
    let config = ensure_node_config(&dir, (&ip(0), args.quota), None, args.offer(0), payments)?;
    procs.push(NodeProc { child: spawn_node(&exe, &dir, &config, (0, ns(0)))?, dir, alive: true });
    let first = wait_ready(procs).await?.remove(0);
    let first_addr = first.addrs.first().context("node 0 reported no listen address")?;
    let bootstrap = format!("{first_addr}/p2p/{}", first.peer_id);
    for i in 1..args.nodes {
        let dir = node_dir(root, i);
        let config = ensure_node_config(&dir, (&ip(i), args.quota), Some(&bootstrap), args.offer(i), payments)?;
        procs.push(NodeProc { child: spawn_node(&exe, &dir, &config, (i, ns(i)))?, dir, alive: true });
    }
    let infos = wait_ready(procs).await?;
    pin_ports(procs, &infos)?;
    Ok(bootstrap)
}

/// Writes `client.toml` (keeping a user's own settings from an earlier run) and funds the wallet.
fn write_client_config(args: &UpArgs, root: &Path, chain: Option<&DevnetChain>, bootstrap: String) -> Result<PathBuf> {
    let client_path = root.join("client.toml");
    let mut client = ClientConfig::load(&client_path).unwrap_or_default();
    client.total = client.total.min(args.nodes);
    client.needed = client.needed.min(client.total);
    client.happy = client.happy.min(client.total).max(client.needed);
    client.bootstrap = vec![bootstrap];
    client.nodes = Vec::new();
    client.data_dir = PathBuf::from("client-data");
    client.payments = chain.map(|c| {
        let keep = client.payments.clone();
        ClientPayments {
            chain: c.rpc.clone(),
            channel_blocks: args.channel_blocks,
            ..keep.unwrap_or(ClientPayments { channel_capacity_sat: 10_000_000, ..ClientPayments::default() })
        }
    });
    if let Some(c) = chain {
        // 120 blocks: 21 coins of 50 BTC are mature at once, so many channels can open in parallel
        // (and the nodes' fetch wallets funded before mature too).
        fund_wallet(&c.chain, &root.join("client-data"), 120)?;
    }
    let text = toml::to_string(&client)?;
    let write = if chain.is_some() { write_secret } else { write_atomic };
    write(&client_path, text.as_bytes()).with_context(|| format!("cannot write {}", client_path.display()))?;
    Ok(std::fs::canonicalize(&client_path).unwrap_or(client_path))
}

/// Writes `gateway.toml` once: a free local port and one generated key pair owning every bucket.
fn write_gateway_config(root: &Path) -> Result<PathBuf> {
    let path = root.join("gateway.toml");
    if !path.exists() {
        let port = pick_listen_port()?;
        let word = |len: usize, set: &[u8]| -> String {
            let mut rng = blackbox_util::Xorshift::new(rand::random());
            (0..len).map(|_| set[(rng.next_u64() % set.len() as u64) as usize] as char).collect()
        };
        let key = blackbox_gateway::KeyConfig {
            access_key_id: format!("BB{}", word(18, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")),
            secret_access_key: word(40, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
            owner: vec!["*".into()],
            ..Default::default()
        };
        let cfg = blackbox_gateway::GatewayConfig {
            listen: format!("127.0.0.1:{port}"),
            client_config: PathBuf::from("client.toml"),
            keys: vec![key],
            ..Default::default()
        };
        write_secret(&path, toml::to_string(&cfg)?.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

/// Mines a devnet block every `block_secs` until dropped.
fn spawn_miner(chain: &DevnetChain, block_secs: f64) -> tokio::task::JoinHandle<()> {
    let (chain, every) = (chain.chain.clone(), Duration::from_secs_f64(block_secs.clamp(0.05, 3600.0)));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let chain = chain.clone();
            let _ = tokio::task::spawn_blocking(move || chain.mine(1, &burn_script())).await;
        }
    })
}

pub async fn up(args: UpArgs) -> Result<ExitCode> {
    if args.nodes == 0 || args.nodes > 255 {
        bail!("--nodes must be between 1 and 255");
    }
    // Taken over before any node starts: a SIGTERM that arrives while the network is starting (or
    // just after "devnet ready") must stop the nodes, not kill this process and orphan them.
    let mut term = Stop::install()?;
    let root = args.dir.clone();
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let shaping = netns::Shaping {
        node_rate: args.node_rate.clone(),
        client_rate: args.client_rate.clone(),
        per_subnet: args.per_subnet,
    };
    let net = if args.netns { Some(netns::Netns::create(&root, args.nodes, &shaping)?) } else { None };
    let host = if net.is_some() { netns::HOST_IP } else { "127.0.0.1" };
    let chain = if args.no_payments { None } else { Some(start_chain(&root, host)?) };
    let node_payments = chain.as_ref().map(|c| PaymentsConfig {
        min_confirmations: 1,
        min_timeout_blocks: 12,
        close_margin_blocks: 6,
        close_all_on_shutdown: false,
        min_commitment_fee_sat: 200,
        chain: c.rpc.clone(),
    });
    let miner = chain.as_ref().map(|c| spawn_miner(c, args.block_secs));
    let mut procs = Vec::new();
    let bootstrap = match start_nodes(&args, &root, (&node_payments, net.as_ref()), &mut procs).await {
        Ok(b) => b,
        Err(e) => {
            stop_all(&mut procs).await;
            return Err(e);
        }
    };
    wait_discoverable(&bootstrap, args.nodes).await;
    write_fetch_clients(&args, &root, chain.as_ref(), &bootstrap)?;
    let client_path = write_client_config(&args, &root, chain.as_ref(), bootstrap)?;
    let gateway_path = write_gateway_config(&root)?;
    // The network keeps running if whoever started it stops reading its output: a failed
    // write is ignored, never a panic that would take the nodes down.
    let say = |line: String| {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    say(format!("devnet ready: {} nodes; client config {}", args.nodes, client_path.display()));
    say(format!("try: export BLACKBOX_CONFIG={}; blackbox put FILE", client_path.display()));
    say(format!("S3: blackbox gateway --config {} (its key pair is in that file)", gateway_path.display()));
    let first = node_dir(&root, 0);
    let info = std::fs::read_to_string(first.join("node.info")).ok().and_then(|t| toml::from_str::<NodeInfo>(&t).ok());
    if let Some(url) = info.and_then(|i| i.dashboard) {
        say(format!("dashboard of node-00: {url} (token in {})", first.join("dashboard.token").display()));
    }
    supervise(&mut procs, &mut term).await;
    if let Some(m) = miner {
        m.abort();
    }
    drop(net);
    Ok(ExitCode::SUCCESS)
}
