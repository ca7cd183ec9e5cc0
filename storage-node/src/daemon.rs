//! `blackbox node run`: the provider daemon around [`StorageServer`]: opens the store and the
//! billing, serves on libp2p, runs the periodic workers, and shuts down cleanly on a signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use blackbox_chain::ChainError;
use blackbox_net::offer::{Offer, OfferError, Resources, SignedOffer, MAX_VALIDITY_SECS};
use blackbox_net::{parse_bootstrap, serve_with, BootstrapError, Discovery, Keypair, Multiaddr, ServeHandle};
use blackbox_util::{now_secs, write_atomic};

use crate::billing::{load_accounts, Billing, BillingConfig, LoadError};
use crate::config::AvailabilityError;
use crate::dashboard::{self, load_or_create_token, Dashboard, Sources, TOKEN_FILE};
use crate::egress::MonthlyEgress;
use crate::history::History;
use crate::jobs::{Capacity, InputFetcher, Jobs};
use crate::keys::{load_or_create_identity, load_payment_secret, payment_public_key, KeyError};
use crate::setup::{preflight, Summary};
use crate::{DiskStore, LeasePolicy, NodeConfig, ShareStore, StorageServer, StoreError};

/// What a running node writes to `node.info` in its data dir, so tools can find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's libp2p identity.
    pub peer_id: String,
    /// Addresses it listens on.
    pub addrs: Vec<String>,
    /// The dashboard's URL, when it is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
}

/// File names inside a node's data dir.
pub const INFO_FILE: &str = "node.info";
/// Pid of the running node process.
pub const PID_FILE: &str = "node.pid";

/// Why the daemon could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The data dir cannot be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// `listen` is not a multiaddr.
    #[error("invalid listen address `{addr}`: {reason}")]
    Listen { addr: String, reason: String },
    /// A key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A bootstrap entry is unusable.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The offer's availability does not parse.
    #[error(transparent)]
    Availability(#[from] AvailabilityError),
    /// The offer cannot be signed.
    #[error("cannot sign the offer: {0}")]
    Offer(#[from] OfferError),
    /// The share store cannot be opened.
    #[error("cannot open store in {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    /// The chain of `[payments]` cannot be used.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The channel records cannot be read.
    #[error(transparent)]
    Billing(#[from] LoadError),
    /// The job runner cannot start.
    #[error("cannot start the job runner: {0}")]
    Compute(#[from] blackbox_compute::ComputeError),
    /// The network cannot be started.
    #[error("cannot start the network: {0}")]
    Network(std::io::Error),
    /// The pid or info file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Signs the offer described by the node's config, valid from `now`. With `[power]`, CPU is left
/// out in hours when electricity costs more than jobs pay (the offer then expires when that
/// changes) and storage when it does not pay for its disks.
pub fn sign_offer(
    cfg: &NodeConfig,
    keypair: &Keypair,
    bitcoin_pubkey: [u8; 33],
    now: u64,
) -> Result<SignedOffer, DaemonError> {
    let o = &cfg.offer;
    let mut resources = Resources {
        storage_bytes: o.storage.unwrap_or(cfg.quota).0,
        bandwidth_bytes_per_month: o.bandwidth_per_month.0,
        cpu_millicores: (o.cpu_cores.max(0.0) * 1000.0).min(u32::MAX as f64) as u32,
        ram_bytes: o.ram.0,
    };
    let mut expires_at = now + o.validity_secs.clamp(60, MAX_VALIDITY_SECS);
    if let Some(power) = &cfg.power {
        let lines = power.economics(&o.prices(), now);
        if !lines[0].offered {
            (resources.cpu_millicores, resources.ram_bytes) = (0, 0);
        }
        if !lines[1].offered {
            resources.storage_bytes = 0;
        }
        if let Some(change) = power.next_cpu_change(&o.prices(), now) {
            expires_at = expires_at.min(change);
        }
    }
    let offer = Offer {
        node: keypair.public(),
        resources,
        availability: o.availability()?,
        prices: o.prices(),
        bitcoin_pubkey,
        region: o.region.clone(),
        issued_at: now,
        expires_at,
    };
    Ok(offer.sign(keypair)?)
}

/// Signs the offer for `now`, serves it, and withdraws or restores CPU for new jobs to match it;
/// returns when it expires.
fn publish_offer(
    server: &StorageServer<DiskStore>,
    cfg: &NodeConfig,
    keypair: &Keypair,
    bitcoin_pubkey: [u8; 33],
    now: u64,
) -> Result<u64, DaemonError> {
    let signed = sign_offer(cfg, keypair, bitcoin_pubkey, now)?;
    let withdrawn = cfg.power.is_some() && cfg.offer.cpu_cores > 0.0 && signed.offer.resources.cpu_millicores == 0;
    if let Some(jobs) = server.jobs() {
        if withdrawn != jobs.withdrawn() {
            info!(withdrawn, "CPU {} by [power] at this hour", if withdrawn { "withdrawn" } else { "offered again" });
        }
        jobs.set_withdrawn(withdrawn);
    }
    server.set_offer(signed.encode().into());
    Ok(signed.offer.expires_at)
}

/// A started node: the logic, its billing, and the network handle.
struct Node {
    server: Arc<StorageServer<DiskStore>>,
    billing: Option<Arc<Billing>>,
    handle: ServeHandle,
    dashboard: Option<Dashboard>,
}

/// Starts the dashboard when `[dashboard]` enables it; a failure is logged, not fatal: the node
/// serves storage without it.
async fn start_dashboard(
    cfg: &NodeConfig,
    server: &Arc<StorageServer<DiskStore>>,
    info: &NodeInfo,
    bitcoin_pubkey: [u8; 33],
) -> Option<Dashboard> {
    if !cfg.dashboard.enabled {
        return None;
    }
    let token = match load_or_create_token(&cfg.data_dir) {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "no dashboard: its token cannot be read or created");
            return None;
        }
    };
    let payout_script = bitcoin::CompressedPublicKey::from_slice(&bitcoin_pubkey)
        .map(|k| blackbox_payments::script::p2wpkh(&k))
        .unwrap_or_default();
    let sources = Arc::new(Sources {
        cfg: cfg.clone(),
        server: server.clone(),
        peer_id: info.peer_id.clone(),
        addrs: info.addrs.clone(),
        payout_script,
    });
    match dashboard::serve(&cfg.dashboard.listen, token, sources).await {
        Ok(d) => {
            info!(url = %d.url(), "dashboard ready (token in {})", cfg.data_dir.join(TOKEN_FILE).display());
            Some(d)
        }
        Err(e) => {
            warn!(listen = %cfg.dashboard.listen, error = %e, "no dashboard: cannot listen");
            None
        }
    }
}

fn open_billing(cfg: &NodeConfig, node: blackbox_net::PeerId) -> Result<Option<Arc<Billing>>, DaemonError> {
    let Some(pc) = &cfg.payments else { return Ok(None) };
    let chain = blackbox_chain::BitcoindRpc::new(pc.chain.clone())?;
    let billing = Billing::open(BillingConfig {
        node,
        prices: cfg.offer.prices(),
        key: load_payment_secret(&cfg.data_dir)?,
        chain: Arc::new(chain),
        min_confirmations: pc.min_confirmations,
        min_timeout_blocks: pc.min_timeout_blocks,
        close_margin_blocks: pc.close_margin_blocks,
        min_fee_sat: pc.min_commitment_fee_sat,
        dir: cfg.data_dir.join("channels"),
    })?;
    info!(chain = %pc.chain.rpc_addr, "payments on: storage, egress and CPU are billed through channels");
    Ok(Some(Arc::new(billing)))
}

fn open_server(
    cfg: &NodeConfig,
    billing: &Option<Arc<Billing>>,
    fetcher: Option<Arc<dyn InputFetcher>>,
) -> Result<StorageServer<DiskStore>, DaemonError> {
    let dir = &cfg.data_dir;
    let store_err = |source| DaemonError::Store { path: dir.clone(), source };
    let store = DiskStore::open(&dir.join("store")).map_err(store_err)?;
    let mut server = StorageServer::new(store, cfg.quota.0, Duration::from_secs(cfg.upload_timeout_secs))
        .map_err(store_err)?
        .with_leases(LeasePolicy { default_secs: cfg.lease_default_secs, max_secs: cfg.lease_max_secs })
        .with_egress(MonthlyEgress::open(Some(dir.join("egress-month"))), cfg.offer.bandwidth_per_month.0);
    if let Some(b) = billing {
        server = server.with_billing(b.clone());
    }
    if cfg.compute.enabled {
        let o = &cfg.offer;
        let capacity = Capacity {
            millicores: (o.cpu_cores.max(0.0) * 1000.0).min(u32::MAX as f64) as u32,
            ram: o.ram.0,
            availability: o.availability()?,
        };
        let jobs =
            Jobs::new(cfg.compute.clone(), capacity, dir.join("jobs"), fetcher, tokio::runtime::Handle::current())?;
        #[cfg(feature = "faults")]
        jobs.wrong_results.store(cfg.fault_wrong_job_results, std::sync::atomic::Ordering::Relaxed);
        info!(cores = o.cpu_cores, ram = o.ram.0, "jobs on: WebAssembly jobs are run and billed per fuel");
        server = server.with_jobs(Arc::new(jobs));
    }
    #[cfg(feature = "faults")]
    if cfg.faults().any() {
        warn!(faults = ?cfg.faults(), "TEST FAULTS ENABLED: this node misbehaves on purpose");
        server.set_faults(cfg.faults());
    }
    Ok(server)
}

/// Opens everything, starts serving and writes the pid and info files.
async fn start(
    cfg: &NodeConfig,
    keypair: &Keypair,
    bitcoin_pubkey: [u8; 33],
    fetcher: Option<Arc<dyn InputFetcher>>,
) -> Result<Node, DaemonError> {
    let dir = &cfg.data_dir;
    let listen: Multiaddr = cfg.listen.parse().map_err(|e: blackbox_net::multiaddr::Error| DaemonError::Listen {
        addr: cfg.listen.clone(),
        reason: e.to_string(),
    })?;
    let discovery = Discovery { bootstrap: parse_bootstrap(&cfg.bootstrap)? };
    let billing = open_billing(cfg, keypair.public().to_peer_id())?;
    let server = Arc::new(open_server(cfg, &billing, fetcher)?);
    publish_offer(&server, cfg, keypair, bitcoin_pubkey, now_secs())?;
    let handle = serve_with(keypair.clone(), listen, server.clone(), &discovery).await.map_err(DaemonError::Network)?;
    let mut info = NodeInfo {
        peer_id: handle.peer_id.to_string(),
        addrs: handle.listen_addrs.iter().map(ToString::to_string).collect(),
        dashboard: None,
    };
    let dashboard = start_dashboard(cfg, &server, &info, bitcoin_pubkey).await;
    info.dashboard = dashboard.as_ref().map(Dashboard::url);
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes()).map_err(|source| DaemonError::Write { path, source })
    };
    write(PID_FILE, format!("{}\n", std::process::id()))?;
    write(INFO_FILE, toml::to_string(&info).unwrap_or_default())?;
    let st = server.status();
    info!(peer_id = %info.peer_id, shares = st.shares, used = st.used, quota = st.quota, "node ready");
    Ok(Node { server, billing, handle, dashboard })
}

/// Runs `work` on a blocking thread every `period`, until aborted.
fn every(period: Duration, skip_first: bool, work: impl Fn() + Send + Sync + 'static) -> JoinHandle<()> {
    let work = Arc::new(work);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        if skip_first {
            tick.tick().await;
        }
        loop {
            tick.tick().await;
            let w = work.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || w()).await {
                warn!(error = %e, "periodic work panicked");
            }
        }
    })
}

/// The periodic workers: idle uploads, expired leases, channel closes, offer re-signing.
fn spawn_workers(node: &Node, cfg: &NodeConfig, keypair: Keypair, bitcoin_pubkey: [u8; 33]) -> Vec<JoinHandle<()>> {
    let s = node.server.clone();
    let mut workers = vec![every(Duration::from_secs(30), false, move || s.expire_idle_uploads())];
    let s = node.server.clone();
    workers.push(every(Duration::from_secs(cfg.lease_sweep_secs.max(1)), false, move || {
        match s.collect_expired(now_secs()) {
            Ok((0, _)) => {}
            Ok((count, bytes)) => info!(count, bytes, "collected shares with expired leases"),
            Err(e) => warn!(error = %e, "lease sweep failed"),
        }
    }));
    if node.billing.is_some() {
        let (dir, prices) = (cfg.data_dir.clone(), cfg.offer.prices());
        let history = std::sync::Mutex::new(History::load(&dir));
        workers.push(every(Duration::from_secs(60), false, move || {
            let Ok(accounts) = load_accounts(&dir.join("channels"), prices) else { return };
            let earned = accounts.iter().map(|a| a.owed).sum();
            let received = accounts.iter().map(|a| a.channel.paid).sum();
            let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = h.record(now_secs(), earned, received) {
                warn!(error = %e, "cannot save the earnings history");
            }
        }));
    }
    if let Some(b) = node.billing.clone() {
        workers.push(every(Duration::from_secs(5), false, move || match b.chain().height() {
            Ok(h) => {
                b.close_due(h, b.close_margin());
            }
            Err(e) => warn!(error = %e, "chain unavailable; cannot check channel timeouts"),
        }));
    }
    let (s, c) = (node.server.clone(), cfg.clone());
    let half = (cfg.offer.validity_secs.clamp(60, MAX_VALIDITY_SECS) / 2).max(10);
    workers.push(tokio::spawn(async move {
        loop {
            let now = now_secs();
            // Re-signed at half its validity, and when `[power]` changes what is sold.
            let next = match publish_offer(&s, &c, &keypair, bitcoin_pubkey, now) {
                Ok(expires) => expires.min(now + half),
                Err(e) => {
                    warn!(error = %e, "cannot re-sign offer");
                    now + 30
                }
            };
            let wait = next.saturating_sub(now_secs()).max(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }));
    workers
}

/// Stops serving, closes channels that would time out before the node is likely back, and
/// flushes the store.
async fn stop(node: Node, workers: Vec<JoinHandle<()>>, cfg: &NodeConfig) {
    for w in workers {
        w.abort();
    }
    if let Some(j) = node.server.jobs() {
        j.cancel_all();
    }
    drop(node.dashboard);
    node.handle.stop().await;
    if let (Some(b), Some(pc)) = (node.billing, &cfg.payments) {
        let margin = if pc.close_all_on_shutdown { u32::MAX } else { pc.close_margin_blocks.saturating_mul(4) };
        let _ = tokio::task::spawn_blocking(move || match b.chain().height() {
            Ok(h) => {
                let closed = b.close_due(h, margin);
                info!(count = closed.len(), "channels closed at shutdown");
            }
            Err(e) => warn!(error = %e, "chain unavailable at shutdown; channels stay open"),
        })
        .await;
    }
    node.server.egress().save();
    if let Err(e) = node.server.store().flush() {
        warn!(error = %e, "flush on shutdown failed");
    }
    let _ = std::fs::remove_file(cfg.data_dir.join(PID_FILE));
}

/// The one-screen summary of a started node, with the pre-flight warnings (blocking: it probes
/// the listen addresses and asks the chain for the time).
fn summarize(cfg: &NodeConfig, node: &Node) -> Summary {
    let addrs: Vec<Multiaddr> = node.handle.listen_addrs.clone();
    let offer = node.server.current_offer().and_then(|b| SignedOffer::decode(&b).ok()).map(|s| s.offer);
    let mut warnings = preflight(cfg, &addrs, node.server.status().used, now_secs());
    if let Some(d) = &node.dashboard {
        if d.public() {
            warnings.push(format!("the dashboard listens on {}, reachable from other machines", d.addr));
        }
    }
    Summary {
        peer_id: node.handle.peer_id.to_string(),
        addrs: addrs.iter().map(|a| format!("{a}/p2p/{}", node.handle.peer_id)).collect(),
        offer,
        chain: cfg.payments.as_ref().map(|p| format!("{} ({})", p.chain.rpc_addr, p.chain.network)),
        payout: cfg.payout_address.clone(),
        dashboard: node.dashboard.as_ref().map(|d| (d.url(), d.public())),
        token_file: cfg.data_dir.join(TOKEN_FILE).display().to_string(),
        warnings,
    }
}

/// Runs a node until SIGINT/SIGTERM, then stops serving and flushes the store; `fetcher` reads
/// jobs' inputs from the grid (none: jobs take no inputs); `ready` gets the summary once it serves.
pub async fn run(
    cfg: NodeConfig,
    fetcher: Option<Arc<dyn InputFetcher>>,
    ready: impl FnOnce(Summary),
) -> Result<(), DaemonError> {
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| DaemonError::DataDir { path: dir.clone(), source })?;
    let keypair = load_or_create_identity(dir)?;
    let bitcoin_pubkey = payment_public_key(&load_payment_secret(dir)?);
    let node = start(&cfg, &keypair, bitcoin_pubkey, fetcher).await?;
    let workers = spawn_workers(&node, &cfg, keypair, bitcoin_pubkey);
    let summary = tokio::task::block_in_place(|| summarize(&cfg, &node));
    for w in &summary.warnings {
        warn!("{w}");
    }
    ready(summary);
    shutdown_signal().await;
    info!("shutting down");
    stop(node, workers, &cfg).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
