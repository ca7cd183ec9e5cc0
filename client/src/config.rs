//! The client's TOML configuration (written by `blackbox devnet up`).

use std::path::{Path, PathBuf};

use blackbox_util::config::{load_config, relative_to, ConfigError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::NodeRef;

/// A `[[nodes]]` entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeEntryError {
    /// Not a libp2p peer id.
    #[error("invalid peer id `{0}` in config")]
    Peer(String),
    /// Not a multiaddr.
    #[error("invalid address `{0}` in config")]
    Addr(String),
}

/// One node entry of the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// libp2p peer id.
    pub peer_id: String,
    /// Multiaddrs to dial.
    pub addrs: Vec<String>,
}

/// Configuration of the `blackbox` client commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Shares needed to rebuild a file (k).
    pub needed: usize,
    /// Shares made per file (n).
    pub total: usize,
    /// Distinct nodes that must hold shares for an upload to succeed (servers-of-happiness).
    pub happy: usize,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// Seconds before a request to a node is given up.
    pub request_timeout_secs: u64,
    /// DHT bootstrap peers (`<multiaddr>/p2p/<peer id>`): when set, nodes are found through the
    /// DHT (and the nodes seen before) and each must serve a valid signed offer.
    pub bootstrap: Vec<String>,
    /// Directory for the client's own state (known nodes); relative to the config file.
    pub data_dir: PathBuf,
    /// Most satoshis per GB-month the client pays for storage (nodes above it are not used).
    pub max_storage_price: Option<u64>,
    /// How nodes are ranked for placement.
    pub weights: crate::rank::Weights,
    /// Lease asked for each stored share, in seconds (nodes delete shares whose lease ran out;
    /// `renew` and the auditor extend them).
    pub lease_secs: u32,
    /// The auditor's schedule and thresholds.
    pub audit: AuditConfig,
    /// Payment channels (`[payments]`): with it, nodes that bill are paid at their signed prices.
    pub payments: Option<ClientPayments>,
    /// Storage nodes to use directly (without discovery).
    pub nodes: Vec<NodeEntry>,
}

/// The `[payments]` section of the client config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientPayments {
    /// Satoshis locked in each channel.
    pub channel_capacity_sat: u64,
    /// Blocks from opening a channel to its timeout.
    pub channel_blocks: u32,
    /// Fee of each channel's commitment and refund transactions.
    pub channel_fee_sat: u64,
    /// Confirmations to wait for before using a new channel.
    pub min_confirmations: u32,
    /// The bitcoin node (`[payments.chain]`).
    pub chain: blackbox_chain::RpcConfig,
}

impl Default for ClientPayments {
    fn default() -> Self {
        Self {
            channel_capacity_sat: 1_000_000,
            channel_blocks: 1008,
            channel_fee_sat: 1_000,
            min_confirmations: 1,
            chain: blackbox_chain::RpcConfig {
                rpc_addr: "127.0.0.1:18443".into(),
                rpc_user: String::new(),
                rpc_password: String::new(),
                rpc_cookie_file: None,
                network: "regtest".into(),
            },
        }
    }
}

/// The `[audit]` section: how `auditor run` looks after the watched files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Mean seconds between audits of a file (each run is jittered by ±10%).
    pub interval_secs: u64,
    /// Pieces asked of each share per audit. With the defaults (32 an hour) a node that lost 1%
    /// of a share is caught within a day with 99.96% probability.
    pub count: u32,
    /// Seconds a node has to answer a challenge.
    pub deadline_secs: u64,
    /// Repair a file when fewer than this many distinct shares are healthy (0: `happy`).
    pub repair_below: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            interval_secs: 86_400 / u64::from(blackbox_proofs::DEFAULT_AUDITS_PER_DAY),
            count: u32::from(blackbox_proofs::DEFAULT_COUNT),
            deadline_secs: 10,
            repair_below: 0,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            needed: 3,
            total: 10,
            happy: 7,
            segment_size: blackbox_core::DEFAULT_SEGMENT_SIZE,
            request_timeout_secs: 60,
            bootstrap: Vec::new(),
            data_dir: PathBuf::from("client-data"),
            max_storage_price: None,
            weights: crate::rank::Weights::default(),
            lease_secs: blackbox_core::DEFAULT_LEASE_SECS,
            audit: AuditConfig::default(),
            payments: None,
            nodes: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// Reads and checks a config file; a relative `data_dir` is resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: ClientConfig = load_config(path)?;
        cfg.data_dir = relative_to(path, &cfg.data_dir);
        if let Some(pc) = &cfg.payments {
            if pc.channel_blocks < 24 {
                return Err(ConfigError::Value {
                    path: path.into(),
                    message: "[payments] channel_blocks must be at least 24: channels are retired 12 blocks before their timeout".into(),
                });
            }
        }
        Ok(cfg)
    }

    /// The nodes, parsed.
    pub fn node_refs(&self) -> Result<Vec<NodeRef>, NodeEntryError> {
        self.nodes
            .iter()
            .map(|n| {
                let peer = n.peer_id.parse().map_err(|_| NodeEntryError::Peer(n.peer_id.clone()))?;
                let addrs = n
                    .addrs
                    .iter()
                    .map(|a| a.parse().map_err(|_| NodeEntryError::Addr(a.clone())))
                    .collect::<Result<_, _>>()?;
                Ok(NodeRef { peer, addrs })
            })
            .collect()
    }
}

/// Writes `value` as TOML to `path` through the one durable writer; used for the client's own
/// state files.
pub(crate) fn save_toml<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = toml::to_string(value).map_err(std::io::Error::other)?;
    blackbox_util::write_atomic(path, text.as_bytes())
}

/// Runs `f` holding the exclusive lock of the state file `path`, so that read-modify-write
/// cycles of several processes sharing the client's data dir merge instead of racing.
pub(crate) fn locked<R>(path: &Path, f: impl FnOnce() -> R) -> std::io::Result<R> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let _lock = blackbox_util::lock(Path::new(&name))?;
    Ok(f())
}

/// Loads a state file that carries a format version: `None` when missing, unreadable or of
/// another version (which is logged and left alone, never overwritten by a guess).
pub(crate) fn load_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    version: u32,
    version_of: impl Fn(&T) -> u32,
) -> Option<T> {
    let record: T = load_toml(path)?;
    let found = version_of(&record);
    if found != version {
        tracing::warn!(path = %path.display(), found, expected = version, "ignoring a state file of another version");
        return None;
    }
    Some(record)
}

pub(crate) fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    match toml::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e.message(), path = %path.display(), "ignoring unreadable state file");
            None
        }
    }
}
