//! The client's TOML configuration (written by `blackbox devnet up`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::NodeRef;

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
    /// Known storage nodes.
    pub nodes: Vec<NodeEntry>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            needed: 3,
            total: 10,
            happy: 7,
            segment_size: blackbox_core::DEFAULT_SEGMENT_SIZE,
            request_timeout_secs: 60,
            nodes: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config {}: {}", path.display(), e.message()))
    }

    /// The nodes, parsed.
    pub fn node_refs(&self) -> Result<Vec<NodeRef>, String> {
        self.nodes
            .iter()
            .map(|n| {
                let peer = n.peer_id.parse().map_err(|_| format!("invalid peer id `{}` in config", n.peer_id))?;
                let addrs = n
                    .addrs
                    .iter()
                    .map(|a| a.parse().map_err(|_| format!("invalid address `{a}` in config")))
                    .collect::<Result<_, _>>()?;
                Ok(NodeRef { peer, addrs })
            })
            .collect()
    }
}
