//! Bounded in-memory caches of immutable things by file root (directory tree nodes, multi-part
//! manifests): what a root names never changes, so an entry is never stale.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use blackbox_core::dir::Node;
use blackbox_core::Hash;

/// Bytes of encoded directory nodes kept.
const NODE_CACHE_BYTES: usize = 64 << 20;

/// Recently used values by file root, evicted oldest first past a byte budget.
pub struct RootCache<V> {
    inner: Mutex<Inner<V>>,
    budget: usize,
}

/// Directory tree nodes read or written lately.
pub type NodeCache = RootCache<Node>;

impl Default for NodeCache {
    fn default() -> Self {
        Self::new(NODE_CACHE_BYTES)
    }
}

struct Inner<V> {
    values: HashMap<Hash, (V, usize)>,
    order: VecDeque<Hash>,
    bytes: usize,
}

impl<V> Default for Inner<V> {
    fn default() -> Self {
        Self { values: HashMap::new(), order: VecDeque::new(), bytes: 0 }
    }
}

impl<V: Clone> RootCache<V> {
    /// An empty cache that keeps up to `budget` bytes (as the values' encoded sizes add up).
    pub fn new(budget: usize) -> Self {
        Self { inner: Mutex::new(Inner::default()), budget }
    }

    /// The cached value with this file root.
    pub fn get(&self, root: &Hash) -> Option<V> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.values.get(root).map(|(v, _)| v.clone())
    }

    /// Forgets everything (to measure as a fresh process would).
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Inner::default();
    }

    /// Keeps `value` (`len` encoded bytes) under its file root.
    pub fn put(&self, root: Hash, value: &V, len: usize) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.values.contains_key(&root) {
            return;
        }
        inner.values.insert(root, (value.clone(), len));
        inner.order.push_back(root);
        inner.bytes += len;
        while inner.bytes > self.budget {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some((_, l)) = inner.values.remove(&old) {
                inner.bytes -= l;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_values_go_first_past_the_budget() {
        let c: RootCache<u32> = RootCache::new(10);
        c.put([1; 32], &1, 4);
        c.put([2; 32], &2, 4);
        c.put([1; 32], &9, 4); // already there: kept as it was
        assert_eq!(c.get(&[1; 32]), Some(1));
        c.put([3; 32], &3, 4);
        assert_eq!((c.get(&[1; 32]), c.get(&[2; 32]), c.get(&[3; 32])), (None, Some(2), Some(3)));
    }
}
