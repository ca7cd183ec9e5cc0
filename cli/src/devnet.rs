//! `blackbox devnet up`: a local network of real node processes on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use std::sync::Arc;

use blackbox_chain::{burn_script, Chain, DevChain, RpcConfig, RpcServer};
use blackbox_client::config::{ClientConfig, ClientPayments};
use blackbox_net::{Discovery, Libp2pTransport};
use blackbox_storage_node::config::ByteSize;
use blackbox_storage_node::config::OfferConfig;
use blackbox_storage_node::config::PaymentsConfig;
use blackbox_storage_node::daemon::parse_bootstrap;
use blackbox_storage_node::daemon::{NodeInfo, INFO_FILE};
use blackbox_storage_node::NodeConfig;

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
}

/// The devnet chain: a `DevChain` in `<dir>/chain`, served over JSON-RPC on a port kept across
/// restarts, mining a block every `block_secs`.
struct DevnetChain {
    chain: Arc<DevChain>,
    _server: RpcServer,
    rpc: RpcConfig,
}

const CHAIN_FILE: &str = "rpc.toml";
/// Storage price of a devnet node without `--price-spread`, in sat per GB-month.
const DEVNET_STORAGE_PRICE: u64 = 1_000_000;

fn start_chain(root: &Path) -> Result<DevnetChain> {
    let dir = root.join("chain");
    let chain = Arc::new(DevChain::open(&dir).map_err(|e| anyhow::anyhow!("devnet chain: {e}"))?);
    let saved: Option<RpcConfig> =
        std::fs::read_to_string(dir.join(CHAIN_FILE)).ok().and_then(|t| toml::from_str(&t).ok());
    let password = saved.as_ref().map(|c| c.rpc_password.clone()).unwrap_or_else(|| {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        data_encoding::HEXLOWER.encode(&b)
    });
    let server = saved
        .as_ref()
        .and_then(|c| RpcServer::start(chain.clone(), &c.rpc_addr, "devnet", &password).ok())
        .map_or_else(|| RpcServer::start(chain.clone(), "127.0.0.1:0", "devnet", &password), Ok)
        .map_err(|e| anyhow::anyhow!("devnet chain rpc: {e}"))?;
    let rpc = RpcConfig {
        rpc_addr: server.addr().to_string(),
        rpc_user: "devnet".into(),
        rpc_password: password,
        network: "regtest".into(),
    };
    std::fs::write(dir.join(CHAIN_FILE), toml::to_string(&rpc)?).context("cannot write the chain rpc file")?;
    Ok(DevnetChain { chain, _server: server, rpc })
}

/// Gives the client's wallet spendable devnet coins (101 blocks to its address) if it has none.
fn fund_wallet(chain: &DevChain, client_data: &Path) -> Result<()> {
    let key = blackbox_client::pay::load_or_create_wallet_key(client_data).map_err(anyhow::Error::msg)?;
    let script = blackbox_payments::wallet::receive_script(&key);
    if chain.unspent(&script).map_err(|e| anyhow::anyhow!("{e}"))?.is_empty() {
        // 120 blocks: 21 coins of 50 BTC are mature at once, so many channels can open in parallel.
        chain.mine(120, &script).map_err(|e| anyhow::anyhow!("{e}"))?;
        info!("funded the client wallet with devnet coins");
    }
    Ok(())
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
            region: if self.regions > 0 { format!("r{}", i % self.regions) } else { String::new() },
            ..OfferConfig::default()
        }
    }
}

struct NodeProc {
    dir: PathBuf,
    child: Child,
    alive: bool,
}

fn node_dir(root: &Path, i: usize) -> PathBuf {
    root.join(format!("node-{i:02}"))
}

/// Writes `node.toml` for a new node (the OS picks its port on first start; `pin_ports` then
/// records it); keeps an existing one so restarts reuse ports and data.
fn ensure_node_config(
    dir: &Path,
    quota: ByteSize,
    bootstrap: Option<&str>,
    offer: OfferConfig,
    payments: &Option<PaymentsConfig>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("node.toml");
    if path.exists() {
        // The devnet owns the payments section: point it at this run's chain.
        let mut cfg = NodeConfig::load(&path).map_err(anyhow::Error::msg)?;
        if cfg.payments.as_ref().map(|p| &p.chain) != payments.as_ref().map(|p| &p.chain) {
            cfg.payments = payments.clone();
            cfg.data_dir = PathBuf::from(".");
            std::fs::write(&path, toml::to_string(&cfg)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    } else {
        let cfg = NodeConfig {
            data_dir: PathBuf::from("."),
            listen: ANY_PORT.into(),
            bootstrap: bootstrap.map(|b| vec![b.to_string()]).unwrap_or_default(),
            offer,
            quota,
            threads: 1,
            payments: payments.clone(),
            ..NodeConfig::default()
        };
        std::fs::write(&path, toml::to_string(&cfg)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

const ANY_PORT: &str = "/ip4/127.0.0.1/tcp/0";

/// Rewrites the config of every node that started on an OS-picked port with the port it got, so a
/// restart of the devnet finds each node where `client.toml` says it is.
fn pin_ports(procs: &[NodeProc], infos: &[NodeInfo]) -> Result<()> {
    for (p, info) in procs.iter().zip(infos) {
        let path = p.dir.join("node.toml");
        let mut cfg = NodeConfig::load(&path).map_err(anyhow::Error::msg)?;
        if cfg.listen != ANY_PORT {
            continue;
        }
        let addr = info.addrs.first().context("node reported no listen address")?;
        cfg.listen = addr.clone();
        cfg.data_dir = PathBuf::from(".");
        std::fs::write(&path, toml::to_string(&cfg)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string()
}

fn spawn_node(exe: &Path, dir: &Path, config: &Path, i: usize) -> Result<Child> {
    let _ = std::fs::remove_file(dir.join(INFO_FILE));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .with_context(|| format!("cannot open log in {}", dir.display()))?;
    Command::new(exe)
        .arg("node")
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("BLACKBOX_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start node {i}"))
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
    let chain = if args.no_payments { None } else { Some(start_chain(&root)?) };
    let node_payments = chain.as_ref().map(|c| PaymentsConfig {
        min_confirmations: 1,
        min_timeout_blocks: 12,
        close_margin_blocks: 6,
        close_all_on_shutdown: false,
        chain: c.rpc.clone(),
    });
    let _miner = chain.as_ref().map(|c| {
        let (chain, every) = (c.chain.clone(), Duration::from_secs_f64(args.block_secs.clamp(0.05, 3600.0)));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let chain = chain.clone();
                let _ = tokio::task::spawn_blocking(move || chain.mine(1, &burn_script())).await;
            }
        })
    });
    let exe = std::env::current_exe().context("cannot find the blackbox executable")?;
    // Node 0 starts the DHT; every other node knows only node 0.
    let first_dir = node_dir(&root, 0);
    let first_config = ensure_node_config(&first_dir, args.quota, None, args.offer(0), &node_payments)?;
    let child = spawn_node(&exe, &first_dir, &first_config, 0)?;
    let mut procs = vec![NodeProc { dir: first_dir, child, alive: true }];
    let first = match wait_ready(&mut procs).await {
        Ok(mut infos) => infos.remove(0),
        Err(e) => {
            stop_all(&mut procs).await;
            return Err(e);
        }
    };
    let first_addr = first.addrs.first().context("node 0 reported no listen address")?;
    let bootstrap = format!("{first_addr}/p2p/{}", first.peer_id);
    for i in 1..args.nodes {
        let dir = node_dir(&root, i);
        let config = ensure_node_config(&dir, args.quota, Some(&bootstrap), args.offer(i), &node_payments)?;
        let child = spawn_node(&exe, &dir, &config, i)?;
        procs.push(NodeProc { dir, child, alive: true });
    }
    let infos = match wait_ready(&mut procs).await {
        Ok(infos) => infos,
        Err(e) => {
            stop_all(&mut procs).await;
            return Err(e);
        }
    };
    pin_ports(&procs, &infos)?;
    wait_discoverable(&bootstrap, args.nodes).await;
    let client_path = root.join("client.toml");
    let mut client = ClientConfig::load(&client_path).unwrap_or_default();
    client.total = client.total.min(args.nodes);
    client.needed = client.needed.min(client.total);
    client.happy = client.happy.min(client.total).max(client.needed);
    client.bootstrap = vec![bootstrap];
    client.nodes = Vec::new();
    client.data_dir = PathBuf::from("client-data");
    if let Some(c) = &chain {
        let keep = client.payments.clone();
        client.payments = Some(ClientPayments {
            chain: c.rpc.clone(),
            channel_blocks: args.channel_blocks,
            ..keep.unwrap_or(ClientPayments { channel_capacity_sat: 10_000_000, ..ClientPayments::default() })
        });
        fund_wallet(&c.chain, &root.join("client-data"))?;
    } else {
        client.payments = None;
    }
    std::fs::write(&client_path, toml::to_string(&client)?)
        .with_context(|| format!("cannot write {}", client_path.display()))?;
    let abs = std::fs::canonicalize(&client_path).unwrap_or(client_path);
    println!("devnet ready: {} nodes; client config {}", args.nodes, abs.display());
    println!("try: export BLACKBOX_CONFIG={}; blackbox put FILE", abs.display());

    supervise(&mut procs, &mut term).await;
    Ok(ExitCode::SUCCESS)
}

/// Waits (up to 30 s) until a client that knows only the bootstrap node finds all `n` nodes.
async fn wait_discoverable(bootstrap: &str, n: usize) {
    let Ok(boot) = parse_bootstrap(&[bootstrap.to_string()]) else { return };
    let Ok(transport) = Libp2pTransport::with_discovery(Duration::from_secs(10), &Discovery { bootstrap: boot }) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = 0;
    while Instant::now() < deadline {
        found = transport.find_storage_providers().await.map_or(0, |p| p.len());
        if found >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    warn!(found, expected = n, "not every node is discoverable yet");
}

/// Waits until every node has written its info file, or fails with the first node's error.
async fn wait_ready(procs: &mut [NodeProc]) -> Result<Vec<NodeInfo>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut infos: Vec<Option<NodeInfo>> = vec![None; procs.len()];
    loop {
        for (i, p) in procs.iter_mut().enumerate() {
            if infos[i].is_some() {
                continue;
            }
            if let Some(status) = p.child.try_wait()? {
                bail!("node {i} exited during start ({status}): {}", log_tail(&p.dir));
            }
            if let Ok(text) = std::fs::read_to_string(p.dir.join(INFO_FILE)) {
                infos[i] = Some(toml::from_str(&text).with_context(|| format!("bad info file of node {i}"))?);
            }
        }
        if infos.iter().all(Option::is_some) {
            return Ok(infos.into_iter().flatten().collect());
        }
        if Instant::now() > deadline {
            bail!("nodes did not start within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGINT and SIGTERM, caught from the start of `devnet up`.
struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Watches the nodes until SIGINT/SIGTERM, reporting any that exit, then stops them all.
async fn supervise(procs: &mut [NodeProc], stop: &mut Stop) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = tick.tick() => {
                for (i, p) in procs.iter_mut().enumerate() {
                    if p.alive {
                        if let Ok(Some(status)) = p.child.try_wait() {
                            p.alive = false;
                            warn!(node = i, %status, "node exited");
                        }
                    }
                }
            }
        }
    }
    info!("stopping nodes");
    stop_all(procs).await;
}

async fn stop_all(procs: &mut [NodeProc]) {
    for p in procs.iter_mut() {
        if let Some(pid) = p.child.id() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for p in procs.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, p.child.wait()).await.is_err() {
            let _ = p.child.kill().await;
        }
    }
}
