//! `blackbox node run`: the provider daemon around [`StorageServer`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use blackbox_net::{serve, Keypair, Multiaddr};

use crate::{DiskStore, NodeConfig, ShareStore, StorageServer};

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

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads the node's ed25519 identity from its data dir, creating it on first start.
pub fn load_or_create_identity(dir: &Path) -> Result<Keypair, String> {
    let path = dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| format!("identity key {} is unreadable: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| e.to_string())?;
            write_atomic(&path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
            Ok(key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Runs a node until SIGINT/SIGTERM, then stops serving and flushes the store.
pub async fn run(cfg: NodeConfig) -> Result<(), String> {
    let dir: PathBuf = cfg.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let listen: Multiaddr = cfg.listen.parse().map_err(|e| format!("invalid listen address `{}`: {e}", cfg.listen))?;
    let keypair = load_or_create_identity(&dir)?;
    let store =
        DiskStore::open(&dir.join("store")).map_err(|e| format!("cannot open store in {}: {e}", dir.display()))?;
    let server = Arc::new(
        StorageServer::new(store, cfg.quota.0, Duration::from_secs(cfg.upload_timeout_secs))
            .map_err(|e| e.to_string())?,
    );
    let handle = serve(keypair, listen, server.clone()).await.map_err(|e| e.to_string())?;
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
    shutdown_signal().await;
    info!("shutting down");
    sweeper.abort();
    handle.stop().await;
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
