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

use crate::billing::{Billing, BillingConfig, LoadError};
use crate::config::AvailabilityError;
use crate::egress::MonthlyEgress;
use crate::jobs::{Capacity, InputFetcher, Jobs};
use crate::keys::{load_or_create_identity, load_payment_secret, payment_public_key, KeyError};
use crate::{DiskStore, LeasePolicy, NodeConfig, ShareStore, StorageServer, StoreError};

/// What a running node writes to `node.info` in its data dir, so tools can find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's libp2p identity.
    pub peer_id: String,
    /// Addresses it listens on.
    pub addrs: Vec<String>,
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

/// Signs the offer described by the node's config, valid from `now`.
pub fn sign_offer(
    cfg: &NodeConfig,
    keypair: &Keypair,
    bitcoin_pubkey: [u8; 33],
    now: u64,
) -> Result<SignedOffer, DaemonError> {
    let o = &cfg.offer;
    let offer = Offer {
        node: keypair.public(),
        resources: Resources {
            storage_bytes: o.storage.unwrap_or(cfg.quota).0,
            bandwidth_bytes_per_month: o.bandwidth_per_month.0,
            cpu_millicores: (o.cpu_cores.max(0.0) * 1000.0).min(u32::MAX as f64) as u32,
            ram_bytes: o.ram.0,
        },
        availability: o.availability()?,
        prices: o.prices(),
        bitcoin_pubkey,
        region: o.region.clone(),
        issued_at: now,
        expires_at: now + o.validity_secs.clamp(60, MAX_VALIDITY_SECS),
    };
    Ok(offer.sign(keypair)?)
}

/// A started node: the logic, its billing, and the network handle.
struct Node {
    server: Arc<StorageServer<DiskStore>>,
    billing: Option<Arc<Billing>>,
    handle: ServeHandle,
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
    let offer = sign_offer(cfg, keypair, bitcoin_pubkey, now_secs())?;
    let billing = open_billing(cfg, keypair.public().to_peer_id())?;
    let server = Arc::new(open_server(cfg, &billing, fetcher)?);
    server.set_offer(offer.encode().into());
    let handle = serve_with(keypair.clone(), listen, server.clone(), &discovery).await.map_err(DaemonError::Network)?;
    let info = NodeInfo {
        peer_id: handle.peer_id.to_string(),
        addrs: handle.listen_addrs.iter().map(ToString::to_string).collect(),
    };
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes()).map_err(|source| DaemonError::Write { path, source })
    };
    write(PID_FILE, format!("{}\n", std::process::id()))?;
    write(INFO_FILE, toml::to_string(&info).unwrap_or_default())?;
    let st = server.status();
    info!(peer_id = %info.peer_id, shares = st.shares, used = st.used, quota = st.quota, "node ready");
    Ok(Node { server, billing, handle })
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
    if let Some(b) = node.billing.clone() {
        workers.push(every(Duration::from_secs(5), false, move || match b.chain().height() {
            Ok(h) => {
                b.close_due(h, b.close_margin());
            }
            Err(e) => warn!(error = %e, "chain unavailable; cannot check channel timeouts"),
        }));
    }
    let (s, c) = (node.server.clone(), cfg.clone());
    let resign = Duration::from_secs((cfg.offer.validity_secs.clamp(60, MAX_VALIDITY_SECS) / 2).max(10));
    workers.push(every(resign, true, move || match sign_offer(&c, &keypair, bitcoin_pubkey, now_secs()) {
        Ok(offer) => s.set_offer(offer.encode().into()),
        Err(e) => warn!(error = %e, "cannot re-sign offer"),
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

/// Runs a node until SIGINT/SIGTERM, then stops serving and flushes the store; `fetcher` reads
/// jobs' inputs from the grid (none: jobs take no inputs).
pub async fn run(cfg: NodeConfig, fetcher: Option<Arc<dyn InputFetcher>>) -> Result<(), DaemonError> {
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| DaemonError::DataDir { path: dir.clone(), source })?;
    let keypair = load_or_create_identity(dir)?;
    let bitcoin_pubkey = payment_public_key(&load_payment_secret(dir)?);
    let node = start(&cfg, &keypair, bitcoin_pubkey, fetcher).await?;
    let workers = spawn_workers(&node, &cfg, keypair, bitcoin_pubkey);
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
