//! A bounded in-memory cache of directory tree nodes by file root (immutable, so never stale).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use blackbox_core::dir::Node;
use blackbox_core::Hash;

/// Bytes of encoded nodes kept.
const CACHE_BYTES: usize = 64 << 20;

/// Recently used tree nodes, evicted oldest first past [`CACHE_BYTES`].
#[derive(Default)]
pub struct NodeCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<Hash, (Node, usize)>,
    order: VecDeque<Hash>,
    bytes: usize,
}

impl NodeCache {
    /// The cached node with this file root.
    pub fn get(&self, root: &Hash) -> Option<Node> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.nodes.get(root).map(|(n, _)| n.clone())
    }

    /// Forgets every node (to measure as a fresh process would).
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Inner::default();
    }

    /// Keeps `node` (`len` encoded bytes) under its file root.
    pub fn put(&self, root: Hash, node: &Node, len: usize) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.nodes.contains_key(&root) {
            return;
        }
        inner.nodes.insert(root, (node.clone(), len));
        inner.order.push_back(root);
        inner.bytes += len;
        while inner.bytes > CACHE_BYTES {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some((_, l)) = inner.nodes.remove(&old) {
                inner.bytes -= l;
            }
        }
    }
}
