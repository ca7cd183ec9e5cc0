//! The copy-on-write B+tree of a directory, over any [`NodeStore`]: a change rewrites only the
//! nodes on the path from the root to one leaf; a listing reads only the nodes it returns.

use std::future::Future;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use blackbox_core::dir::{entry_len, Child, Entry, Node};
use blackbox_core::ReadCap;

use crate::ClientError;

/// A node is split once its encoding is above this many bytes.
pub const MAX_NODE_BYTES: usize = 64 << 10;
/// Nodes are split (and built) into pieces of about this many bytes.
pub const TARGET_NODE_BYTES: usize = 24 << 10;
/// Child nodes fetched at once while listing.
const FETCHES_IN_FLIGHT: usize = 32;

/// Where the nodes of a tree (all but the root) are kept.
pub trait NodeStore: Sync {
    /// Reads a node.
    fn load(&self, cap: &ReadCap) -> impl Future<Output = Result<Node, ClientError>> + Send;
    /// Stores a node, returning its cap (the store may finish the write later, in `flush`).
    fn store(&self, node: &Node) -> impl Future<Output = Result<ReadCap, ClientError>> + Send;
}

/// The entry named `name` under `root`.
pub async fn get<S: NodeStore>(store: &S, root: &Node, name: &str) -> Result<Option<Entry>, ClientError> {
    let mut node = root.clone();
    loop {
        match node {
            Node::Leaf(entries) => {
                return Ok(entries.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| entries[i].1.clone()));
            }
            Node::Branch(children) => {
                let Some(i) = child_for(&children, name) else { return Ok(None) };
                node = store.load(&children[i].cap).await?;
            }
        }
    }
}

/// Index of the child whose range holds `name` (the last with `first <= name`).
fn child_for(children: &[Child], name: &str) -> Option<usize> {
    if children.is_empty() {
        return None;
    }
    Some(children.partition_point(|c| c.first.as_str() <= name).saturating_sub(1))
}

/// Sets (`Some`) or removes (`None`) the entry `name`, returning the new root.
pub async fn set<S: NodeStore>(store: &S, root: &Node, name: &str, value: Option<Entry>) -> Result<Node, ClientError> {
    blackbox_core::dir::check_name(name)?;
    if let Some(e) = &value {
        blackbox_core::dir::check_entry(e)?;
    }
    // Walk down, remembering each branch and the child taken.
    let mut path: Vec<(Vec<Child>, usize)> = Vec::new();
    let mut node = root.clone();
    let mut entries = loop {
        match node {
            Node::Leaf(e) => break e,
            Node::Branch(children) => {
                let i = child_for(&children, name).unwrap_or(0);
                let next = match children.get(i) {
                    Some(c) => store.load(&c.cap).await?,
                    None => Node::empty(),
                };
                path.push((children, i));
                node = next;
            }
        }
    };
    match (entries.binary_search_by(|(n, _)| n.as_str().cmp(name)), value) {
        (Ok(i), Some(e)) => entries[i].1 = e,
        (Ok(i), None) => {
            entries.remove(i);
        }
        (Err(i), Some(e)) => entries.insert(i, (name.to_string(), e)),
        (Err(_), None) => return Ok(root.clone()),
    }
    // Rebuild upwards: each level's replacement children go into its parent.
    let mut pieces = split_leaf(entries);
    while let Some((mut children, i)) = path.pop() {
        let stored = store_all(store, pieces).await?;
        if children.is_empty() {
            children = stored;
        } else {
            children.splice(i..=i, stored);
        }
        if children.is_empty() {
            pieces = vec![Node::empty()];
            continue;
        }
        pieces = split_branch(children);
    }
    finish_root(store, pieces).await
}

/// Makes one root of the top level's pieces: a new branch above them if there are several, and
/// no single-child branches at the top.
async fn finish_root<S: NodeStore>(store: &S, mut pieces: Vec<Node>) -> Result<Node, ClientError> {
    loop {
        if pieces.len() > 1 {
            pieces = split_branch(store_all(store, pieces).await?);
            continue;
        }
        let root = pieces.pop().unwrap_or_else(Node::empty);
        match root {
            Node::Branch(ref c) if c.len() == 1 => pieces = vec![store.load(&c[0].cap).await?],
            Node::Branch(ref c) if c.is_empty() => return Ok(Node::empty()),
            other => return Ok(other),
        }
    }
}

/// Stores each node (concurrently) and returns the children pointing at them (empty leaves dropped).
async fn store_all<S: NodeStore>(store: &S, nodes: Vec<Node>) -> Result<Vec<Child>, ClientError> {
    let kept: Vec<Node> = nodes.into_iter().filter(|n| n.count() > 0).collect();
    let stored = futures::future::try_join_all(kept.iter().map(|n| store.store(n))).await?;
    Ok(kept
        .iter()
        .zip(stored)
        .map(|(n, cap)| Child { first: n.first().unwrap_or_default().to_string(), cap, count: n.count() })
        .collect())
}

/// Cuts items into pieces of about [`TARGET_NODE_BYTES`], when they exceed [`MAX_NODE_BYTES`].
fn chunks<I>(items: Vec<I>, len: impl Fn(&I) -> usize) -> Vec<Vec<I>> {
    let total: usize = items.iter().map(&len).sum();
    if total <= MAX_NODE_BYTES {
        return vec![items];
    }
    let pieces = total.div_ceil(TARGET_NODE_BYTES);
    let per = total.div_ceil(pieces);
    let mut out = vec![Vec::new()];
    let mut size = 0;
    for item in items {
        let l = len(&item);
        if size + l > per && out.last().is_some_and(|c| !c.is_empty()) {
            out.push(Vec::new());
            size = 0;
        }
        size += l;
        if let Some(c) = out.last_mut() {
            c.push(item);
        }
    }
    out
}

fn split_leaf(entries: Vec<(String, Entry)>) -> Vec<Node> {
    chunks(entries, |(n, e)| entry_len(n, e)).into_iter().map(Node::Leaf).collect()
}

fn split_branch(children: Vec<Child>) -> Vec<Node> {
    chunks(children, |c| c.first.len() + 92).into_iter().map(Node::Branch).collect()
}

/// Builds a tree of sorted, unique `entries` in one pass (bottom-up).
pub async fn build<S: NodeStore>(store: &S, entries: Vec<(String, Entry)>) -> Result<Node, ClientError> {
    let mut pieces = split_leaf(entries);
    while pieces.len() > 1 {
        pieces = split_branch(store_all(store, pieces).await?);
    }
    finish_root(store, pieces).await
}

/// Up to `limit` entries after `start_after` (from the first for `None`), in name order.
pub async fn list<S: NodeStore>(
    store: &S,
    root: &Node,
    start_after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Entry)>, ClientError> {
    let mut out = Vec::new();
    list_into(store, root.clone(), start_after, limit, &mut out).await?;
    Ok(out)
}

fn list_into<'a, S: NodeStore>(
    store: &'a S,
    node: Node,
    start_after: Option<&'a str>,
    limit: usize,
    out: &'a mut Vec<(String, Entry)>,
) -> BoxFuture<'a, Result<(), ClientError>> {
    async move {
        match node {
            Node::Leaf(entries) => {
                let from = start_after.map_or(0, |s| entries.partition_point(|(n, _)| n.as_str() <= s));
                let room = limit.saturating_sub(out.len());
                out.extend(entries.into_iter().skip(from).take(room));
            }
            Node::Branch(children) => {
                let first = start_after.and_then(|s| child_for(&children, s)).unwrap_or(0);
                let rest: Vec<Child> = children.into_iter().skip(first).collect();
                let mut at = 0;
                while at < rest.len() && out.len() < limit {
                    // Enough children to fill the page, by their counts, fetched together.
                    let room = (limit - out.len()) as u64;
                    let (mut end, mut expected) = (at, 0u64);
                    while end < rest.len() && (end == at || expected < room) {
                        expected += rest[end].count;
                        end += 1;
                    }
                    let mut nodes = load_all(store, &rest[at..end]);
                    while let Some(child) = nodes.next().await {
                        if out.len() >= limit {
                            break;
                        }
                        list_into(store, child?, start_after, limit, out).await?;
                    }
                    at = end;
                }
            }
        }
        Ok(())
    }
    .boxed()
}

/// The nodes of `children`, in order, fetched a few at a time.
fn load_all<'a, S: NodeStore>(
    store: &'a S,
    children: &'a [Child],
) -> impl futures::Stream<Item = Result<Node, ClientError>> + Send + 'a {
    let mut fetches = futures::stream::FuturesOrdered::new();
    for c in children {
        fetches.push_back(store.load(&c.cap));
    }
    fetches
}

/// Every node cap reachable from `root` (the tree's immutable files), for audits and repairs.
pub async fn node_caps<S: NodeStore>(store: &S, root: &Node) -> Result<Vec<ReadCap>, ClientError> {
    let mut caps = Vec::new();
    let mut level: Vec<ReadCap> = match root {
        Node::Branch(c) => c.iter().map(|c| c.cap.clone()).collect(),
        Node::Leaf(_) => Vec::new(),
    };
    while !level.is_empty() {
        caps.extend(level.iter().cloned());
        let nodes: Vec<Result<Node, ClientError>> =
            futures::stream::iter(level.iter().map(|c| store.load(c))).buffered(FETCHES_IN_FLIGHT).collect().await;
        level = Vec::new();
        for n in nodes {
            if let Node::Branch(c) = n? {
                level.extend(c.into_iter().map(|c| c.cap));
            }
        }
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use blackbox_core::dir::Kind;

    use super::*;

    /// Nodes in memory, named by the hash of their encoding; counts loads.
    #[derive(Default)]
    struct Mem(Mutex<(HashMap<[u8; 32], Node>, usize)>);

    impl NodeStore for Mem {
        async fn load(&self, cap: &ReadCap) -> Result<Node, ClientError> {
            let mut m = self.0.lock().unwrap();
            m.1 += 1;
            Ok(m.0[&cap.root].clone())
        }
        async fn store(&self, node: &Node) -> Result<ReadCap, ClientError> {
            let bytes = node.encode();
            let root = *blake3::hash(&bytes).as_bytes();
            self.0.lock().unwrap().0.insert(root, Node::decode(&bytes).unwrap());
            Ok(ReadCap { key: [0; 32], root, k: 1, n: 1, size: bytes.len() as u64 })
        }
    }

    fn entry(i: u64) -> Entry {
        Entry {
            kind: Kind::File,
            cap: format!("bb:lit:{}", "a".repeat(120)),
            sealed_write: None,
            size: i,
            mtime_ns: i,
            mode: 0o644,
            content_type: String::new(),
            metadata: Vec::new(),
        }
    }

    fn depth(store: &Mem, node: &Node) -> usize {
        match node {
            Node::Leaf(_) => 1,
            Node::Branch(c) => {
                let child = store.0.lock().unwrap().0[&c[0].cap.root].clone();
                1 + depth(store, &child)
            }
        }
    }

    #[tokio::test]
    async fn the_tree_matches_a_sorted_map_through_random_edits() {
        let store = Mem::default();
        let mut model = BTreeMap::new();
        let mut root = Node::empty();
        let mut rng = blackbox_util::Xorshift::new(7);
        for step in 0..3000u64 {
            let name = format!("k{:05}", rng.next_u64() % 1500);
            if rng.next_u64().is_multiple_of(4) {
                model.remove(&name);
                root = set(&store, &root, &name, None).await.unwrap();
            } else {
                model.insert(name.clone(), entry(step));
                root = set(&store, &root, &name, Some(entry(step))).await.unwrap();
            }
            if step % 500 == 0 {
                let all = list(&store, &root, None, usize::MAX).await.unwrap();
                assert_eq!(all, model.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>());
            }
        }
        assert_eq!(root.count(), model.len() as u64);
        for (k, v) in model.iter().step_by(37) {
            assert_eq!(get(&store, &root, k).await.unwrap().as_ref(), Some(v));
        }
        let after = model.keys().nth(100).unwrap().clone();
        let page = list(&store, &root, Some(&after), 50).await.unwrap();
        let want: Vec<String> = model.keys().skip(101).take(50).cloned().collect();
        assert_eq!(page.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), want);
        for k in model.keys().cloned().collect::<Vec<_>>() {
            root = set(&store, &root, &k, None).await.unwrap();
        }
        assert_eq!(root, Node::empty());
    }

    #[tokio::test]
    async fn built_trees_are_shallow_and_edits_touch_a_path() {
        let store = Mem::default();
        let entries: Vec<(String, Entry)> = (0..20_000).map(|i| (format!("name-{i:06}"), entry(i))).collect();
        let root = build(&store, entries.clone()).await.unwrap();
        assert_eq!(root.count(), 20_000);
        assert!(depth(&store, &root) <= 3, "depth {}", depth(&store, &root));
        let nodes_before = store.0.lock().unwrap().0.len();
        let root = set(&store, &root, "name-010000x", Some(entry(1))).await.unwrap();
        let written = store.0.lock().unwrap().0.len() - nodes_before;
        assert!(written <= 3, "one insert wrote {written} nodes");
        store.0.lock().unwrap().1 = 0;
        assert!(get(&store, &root, "name-019999").await.unwrap().is_some());
        assert!(store.0.lock().unwrap().1 <= 2, "a lookup loads one node per level");
        store.0.lock().unwrap().1 = 0;
        let page = list(&store, &root, Some("name-005000"), 100).await.unwrap();
        assert_eq!(page[0].0, "name-005001");
        assert!(store.0.lock().unwrap().1 <= 6, "a page loads few nodes");
    }
}
