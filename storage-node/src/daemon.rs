//! `blackbox node run`: the provider daemon around [`StorageServer`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use blackbox_net::multiaddr::Protocol;
use blackbox_net::offer::{Offer, Prices, Resources, SignedOffer, MAX_VALIDITY_SECS};
use blackbox_net::{serve_with, Discovery, Keypair, Multiaddr, PeerId};

use crate::billing::{Billing, BillingConfig};
use crate::{DiskStore, Faults, LeasePolicy, NodeConfig, ShareStore, StorageServer};
use blackbox_payments::Prices as ChannelPrices;

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
const KEY_FILE: &str = "identity.key";
const PAYMENT_KEY_FILE: &str = "payment.key";

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a secret file, or creates it with `make()` (atomically, mode 0600) on first start.
fn load_or_create_secret(path: &Path, make: impl FnOnce() -> Result<Vec<u8>, String>) -> Result<Vec<u8>, String> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = make()?;
            write_atomic(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            Ok(bytes)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Loads the node's ed25519 identity from its data dir, creating it on first start.
pub fn load_or_create_identity(dir: &Path) -> Result<Keypair, String> {
    let path = dir.join(KEY_FILE);
    let bytes =
        load_or_create_secret(&path, || Keypair::generate_ed25519().to_protobuf_encoding().map_err(|e| e.to_string()))?;
    Keypair::from_protobuf_encoding(&bytes).map_err(|e| format!("identity key {} is unreadable: {e}", path.display()))
}

/// Loads the node's secp256k1 payment key (created on first start); returns its compressed
/// public key, which offers carry so clients can pay the node.
pub fn load_or_create_payment_key(dir: &Path) -> Result<[u8; 33], String> {
    let secret = load_payment_secret(dir)?;
    Ok(secp256k1::PublicKey::from_secret_key(&secp256k1::Secp256k1::signing_only(), &secret).serialize())
}

/// The node's payment secret key (created on first use); it signs channel closes.
pub fn load_payment_secret(dir: &Path) -> Result<secp256k1::SecretKey, String> {
    let path = dir.join(PAYMENT_KEY_FILE);
    let bytes = load_or_create_secret(&path, || {
        Ok(secp256k1::SecretKey::new(&mut secp256k1::rand::thread_rng()).secret_bytes().to_vec())
    })?;
    secp256k1::SecretKey::from_slice(&bytes).map_err(|e| format!("payment key {} is unreadable: {e}", path.display()))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs the offer described by the node's config, valid from `now`.
pub fn sign_offer(
    cfg: &NodeConfig,
    keypair: &Keypair,
    bitcoin_pubkey: [u8; 33],
    now: u64,
) -> Result<SignedOffer, String> {
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
        prices: Prices {
            storage_sat_per_gb_month: o.storage_sat_per_gb_month,
            egress_sat_per_gb: o.egress_sat_per_gb,
            cpu_sat_per_core_hour: o.cpu_sat_per_core_hour,
        },
        bitcoin_pubkey,
        region: o.region.clone(),
        issued_at: now,
        expires_at: now + o.validity_secs.clamp(60, MAX_VALIDITY_SECS),
    };
    offer.sign(keypair).map_err(|e| e.to_string())
}

/// Parses bootstrap entries (`<multiaddr>/p2p/<peer id>`).
pub fn parse_bootstrap(list: &[String]) -> Result<Vec<(PeerId, Multiaddr)>, String> {
    list.iter()
        .map(|entry| {
            let mut addr: Multiaddr = entry.parse().map_err(|e| format!("invalid bootstrap address `{entry}`: {e}"))?;
            match addr.pop() {
                Some(Protocol::P2p(peer)) => Ok((peer, addr)),
                _ => Err(format!("bootstrap address `{entry}` must end in /p2p/<peer id>")),
            }
        })
        .collect()
}

/// Runs a node until SIGINT/SIGTERM, then stops serving and flushes the store.
pub async fn run(cfg: NodeConfig) -> Result<(), String> {
    let dir: PathBuf = cfg.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let listen: Multiaddr = cfg.listen.parse().map_err(|e| format!("invalid listen address `{}`: {e}", cfg.listen))?;
    let keypair = load_or_create_identity(&dir)?;
    let bitcoin_pubkey = load_or_create_payment_key(&dir)?;
    let discovery = Discovery { bootstrap: parse_bootstrap(&cfg.bootstrap)? };
    let offer = sign_offer(&cfg, &keypair, bitcoin_pubkey, now_secs())?;
    let store =
        DiskStore::open(&dir.join("store")).map_err(|e| format!("cannot open store in {}: {e}", dir.display()))?;
    let billing = match &cfg.payments {
        Some(pc) => {
            let chain = blackbox_chain::BitcoindRpc::new(pc.chain.clone()).map_err(|e| e.to_string())?;
            let billing = Arc::new(Billing::open(BillingConfig {
                prices: ChannelPrices {
                    storage_sat_per_gb_month: cfg.offer.storage_sat_per_gb_month,
                    egress_sat_per_gb: cfg.offer.egress_sat_per_gb,
                    cpu_sat_per_core_hour: cfg.offer.cpu_sat_per_core_hour,
                },
                key: load_payment_secret(&dir)?,
                chain: Arc::new(chain),
                min_confirmations: pc.min_confirmations,
                min_timeout_blocks: pc.min_timeout_blocks,
                close_margin_blocks: pc.close_margin_blocks,
                dir: dir.join("channels"),
            })?);
            info!(chain = %pc.chain.rpc_addr, "payments on: storage, egress and CPU are billed through channels");
            Some(billing)
        }
        None => None,
    };
    let mut server = StorageServer::new(store, cfg.quota.0, Duration::from_secs(cfg.upload_timeout_secs))
        .map_err(|e| e.to_string())?
        .with_leases(LeasePolicy { default_secs: cfg.lease_default_secs, max_secs: cfg.lease_max_secs });
    if let Some(b) = &billing {
        server = server.with_billing(b.clone());
    }
    let server = Arc::new(server);
    server.set_offer(offer.encode().into());
    let faults = Faults {
        corrupt_every: if cfg.fault_corrupt_reads { 1 } else { cfg.fault_corrupt_every },
        proof_from_other_share: cfg.fault_proof_other_share,
        proof_delay: Duration::from_millis(cfg.fault_proof_delay_ms),
    };
    if faults.corrupt_every > 0 || faults.proof_from_other_share || !faults.proof_delay.is_zero() {
        warn!(?faults, "TEST FAULTS ENABLED: this node misbehaves on purpose");
        server.set_faults(faults);
    }
    let handle = serve_with(keypair.clone(), listen, server.clone(), &discovery).await.map_err(|e| e.to_string())?;
    let info = NodeInfo {
        peer_id: handle.peer_id.to_string(),
        addrs: handle.listen_addrs.iter().map(ToString::to_string).collect(),
    };
    let text = toml::to_string(&info).map_err(|e| e.to_string())?;
    write_atomic(&dir.join(PID_FILE), format!("{}\n", std::process::id()).as_bytes()).map_err(|e| e.to_string())?;
    write_atomic(&dir.join(INFO_FILE), text.as_bytes()).map_err(|e| e.to_string())?;
    let st = server.status();
    info!(peer_id = %info.peer_id, shares = st.shares, used = st.used, quota = st.quota, "node ready");

    let sweeper = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                let s = server.clone();
                let _ = tokio::task::spawn_blocking(move || s.expire_idle_uploads()).await;
            }
        })
    };
    let collector = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(cfg.lease_sweep_secs.max(1)));
            loop {
                tick.tick().await;
                let s = server.clone();
                match tokio::task::spawn_blocking(move || s.collect_expired(now_secs())).await {
                    Ok(Ok((0, _))) => {}
                    Ok(Ok((count, bytes))) => info!(count, bytes, "collected shares with expired leases"),
                    Ok(Err(e)) => warn!(error = %e, "lease sweep failed"),
                    Err(e) => warn!(error = %e, "lease sweep panicked"),
                }
            }
        })
    };
    let closer = billing.clone().map(|b| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let b = b.clone();
                let _ = tokio::task::spawn_blocking(move || match b.chain().height() {
                    Ok(h) => {
                        b.close_due(h, b.close_margin());
                    }
                    Err(e) => warn!(error = %e, "chain unavailable; cannot check channel timeouts"),
                })
                .await;
            }
        })
    });
    let refresher = {
        let (server, cfg) = (server.clone(), cfg.clone());
        let every = Duration::from_secs((cfg.offer.validity_secs.clamp(60, MAX_VALIDITY_SECS) / 2).max(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match sign_offer(&cfg, &keypair, bitcoin_pubkey, now_secs()) {
                    Ok(offer) => server.set_offer(offer.encode().into()),
                    Err(e) => warn!(error = %e, "cannot re-sign offer"),
                }
            }
        })
    };
    shutdown_signal().await;
    info!("shutting down");
    sweeper.abort();
    collector.abort();
    refresher.abort();
    if let Some(c) = closer {
        c.abort();
    }
    handle.stop().await;
    if let (Some(b), Some(pc)) = (billing, &cfg.payments) {
        // Channels that would time out before we are likely back are closed now.
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
    if let Err(e) = server.store().flush() {
        warn!(error = %e, "flush on shutdown failed");
    }
    let _ = std::fs::remove_file(dir.join(PID_FILE));
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
