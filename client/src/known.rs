//! Nodes this client has seen serve a valid offer, kept in its data dir so that it can find the
//! network again when its bootstrap peers are gone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{load_versioned, save_toml, NodeEntry};
use crate::NodeRef;

const FILE: &str = "known-nodes.toml";
const VERSION: u32 = 1;
/// Most nodes remembered (oldest dropped first).
const MAX_KNOWN: usize = 4096;

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    nodes: Vec<NodeEntry>,
}

/// The known-nodes file of a client.
pub struct KnownNodes {
    path: PathBuf,
    nodes: Vec<NodeEntry>,
}

impl KnownNodes {
    /// Loads `known-nodes.toml` from `dir`; a missing or unreadable file counts as empty.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(FILE);
        let nodes = load_versioned::<Record>(&path, VERSION, |r| r.version).map(|r| r.nodes).unwrap_or_default();
        Self { path, nodes }
    }

    /// The remembered nodes (entries that no longer parse are skipped).
    pub fn refs(&self) -> Vec<NodeRef> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let peer = n.peer_id.parse().ok()?;
                Some(NodeRef { peer, addrs: n.addrs.iter().filter_map(|a| a.parse().ok()).collect() })
            })
            .collect()
    }

    /// Remembers `nodes` (newest addresses win).
    pub fn merge(&mut self, nodes: &[NodeRef]) {
        for n in nodes {
            let entry =
                NodeEntry { peer_id: n.peer.to_string(), addrs: n.addrs.iter().map(ToString::to_string).collect() };
            self.nodes.retain(|e| e.peer_id != entry.peer_id);
            self.nodes.push(entry);
        }
        if self.nodes.len() > MAX_KNOWN {
            let extra = self.nodes.len() - MAX_KNOWN;
            self.nodes.drain(..extra);
        }
    }

    /// Writes the file atomically.
    pub fn save(&self) -> std::io::Result<()> {
        save_toml(&self.path, &Record { version: VERSION, nodes: self.nodes.clone() })
    }

    /// Remembers `nodes` in the file in `dir`, under its lock.
    pub fn remember(dir: &Path, nodes: &[NodeRef]) -> std::io::Result<()> {
        crate::config::locked(&dir.join(FILE), || {
            let mut k = KnownNodes::load(dir);
            k.merge(nodes);
            k.save()
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blackbox_net::PeerId;

    #[test]
    fn remembers_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = KnownNodes::load(dir.path());
        assert!(k.refs().is_empty());
        let a = NodeRef { peer: PeerId::random(), addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()] };
        k.merge(std::slice::from_ref(&a));
        k.merge(std::slice::from_ref(&a));
        k.save().unwrap();
        assert_eq!(KnownNodes::load(dir.path()).refs(), vec![a]);
        std::fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert!(KnownNodes::load(dir.path()).refs().is_empty());
    }
}
