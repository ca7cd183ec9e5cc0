//! Directories on the grid: a B+tree of encrypted immutable nodes under one mutable root slot.
//!
//! An edit reads the root, rewrites the path to one leaf (new nodes, named by their content under
//! the directory's node key), uploads the new nodes together and publishes the new root as a
//! compare-and-swap; a lost swap re-reads the directory and re-applies the edit.

mod cache;
pub mod tree;

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt;
use rand::RngCore;

use blackbox_core::dir::{Entry, Node};
use blackbox_core::{EncodingParams, FileEncoder, FileKey, ReadCap, SlotReadCap, SlotWriteCap};
use blackbox_net::Transport;

pub use cache::{NodeCache, RootCache};

use crate::slot::{conflict_backoff, SlotState};
use crate::{Client, ClientError, UploadOptions};

const NODE_KEY_CONTEXT: &str = "blackbox 2026 directory node key";
/// Tree nodes uploaded at once by a flush.
const UPLOADS_IN_FLIGHT: usize = 8;
/// Times an edit waits for a newer root version being written to become readable.
const NEWER_WAITS: u32 = 8;
/// Compare-and-swap attempts of one edit before it gives up.
const UPDATE_ATTEMPTS: u32 = 30;

/// Per-directory locks, so that this process's edits of one directory queue up instead of
/// racing each other through compare-and-swap round trips.
#[derive(Default)]
pub struct DirLocks(Mutex<HashMap<[u8; 32], std::sync::Arc<tokio::sync::Mutex<()>>>>);

impl DirLocks {
    fn get(&self, si: [u8; 32]) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Locks nobody holds or waits for are dropped, so the map stays as small as the work.
        all.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
        all.entry(si).or_default().clone()
    }
}

/// A directory as read: its root node and the slot state it came from (for the next swap).
#[derive(Debug, Clone)]
pub struct DirSnapshot {
    /// The tree's root.
    pub root: Node,
    /// The sequence of the root version read.
    pub sequence: u64,
    /// What the nodes held of the root slot.
    pub state: SlotState,
}

/// The nodes of one directory's tree on the grid: read through the client's cache, written
/// (content-keyed, so a retried edit reuses them) when the edit is flushed.
pub struct GridNodes<'a, T> {
    client: &'a Client<T>,
    node_key: [u8; 32],
    opts: Option<&'a UploadOptions>,
    pending: Mutex<HashMap<[u8; 32], (FileKey, Bytes)>>,
}

impl<'a, T: Transport> GridNodes<'a, T> {
    /// The nodes of the directory `cap` reads; `opts` is needed only to write.
    pub fn new(client: &'a Client<T>, cap: &SlotReadCap, opts: Option<&'a UploadOptions>) -> Self {
        Self {
            client,
            node_key: blake3::derive_key(NODE_KEY_CONTEXT, &cap.read_key),
            opts,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Uploads every node stored since the last flush.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let pending: Vec<(FileKey, Bytes)> =
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, v)| v).collect();
        let Some(opts) = self.opts else { return Ok(()) };
        let uploads = pending.into_iter().map(|(key, bytes)| {
            let opts = UploadOptions { key: Some(key), ..opts.clone() };
            async move {
                let size = bytes.len() as u64;
                let open = move || Ok(std::io::Cursor::new(bytes.clone()));
                self.client.upload(open, size, &opts, Default::default()).await
            }
        });
        let mut uploads = futures::stream::iter(uploads).buffer_unordered(UPLOADS_IN_FLIGHT);
        while let Some(r) = uploads.next().await {
            r?;
        }
        Ok(())
    }
}

impl<T: Transport> tree::NodeStore for GridNodes<'_, T> {
    async fn load(&self, cap: &ReadCap) -> Result<Node, ClientError> {
        if let Some(node) = self.client.node_cache.get(&cap.root) {
            return Ok(node);
        }
        if cap.size > blackbox_core::dir::MAX_NODE_LEN as u64 {
            return Err(blackbox_core::dir::DirError::Malformed("node too long").into());
        }
        let mut bytes = Vec::with_capacity(cap.size as usize);
        self.client.download_small(cap, &mut bytes).await?;
        let node = Node::decode(&bytes)?;
        self.client.node_cache.put(cap.root, &node, bytes.len());
        Ok(node)
    }

    async fn store(&self, node: &Node) -> Result<ReadCap, ClientError> {
        let params: EncodingParams =
            self.opts.map(|o| o.params).ok_or_else(|| ClientError::ReadOnly("directory".into()))?;
        let bytes = node.encode();
        let key = blake3::keyed_hash(&self.node_key, &bytes).into();
        let mut enc = FileEncoder::new(key, params, bytes.len() as u64);
        let seg = params.segment_size() as usize;
        for chunk in bytes.chunks(seg) {
            enc.encode_next(chunk)?;
        }
        let (_, cap) = enc.finish()?;
        self.client.node_cache.put(cap.root, node, bytes.len());
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(cap.root, (key, bytes.into()));
        Ok(cap)
    }
}

/// A fresh random slot write cap.
pub fn new_write_cap() -> SlotWriteCap {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    SlotWriteCap { seed }
}

impl<T: Transport> Client<T> {
    /// Creates an empty directory and returns its write cap.
    pub async fn dir_create(&self, opts: &UploadOptions) -> Result<SlotWriteCap, ClientError> {
        let cap = new_write_cap();
        self.write_slot(&cap, &SlotState::default(), &Node::empty().encode(), opts).await?;
        Ok(cap)
    }

    /// Forgets the cached tree nodes (benchmarks measure cold reads with it).
    pub fn clear_node_cache(&self) {
        self.node_cache.clear();
    }

    /// Reads a directory's root.
    pub async fn dir_read(&self, cap: &SlotReadCap) -> Result<DirSnapshot, ClientError> {
        let read = self.read_slot(cap).await?;
        Ok(DirSnapshot { root: Node::decode(&read.content)?, sequence: read.sequence, state: read.state })
    }

    /// The entry `name` of a directory read as `snap`.
    pub async fn dir_get(
        &self,
        cap: &SlotReadCap,
        snap: &DirSnapshot,
        name: &str,
    ) -> Result<Option<Entry>, ClientError> {
        tree::get(&GridNodes::new(self, cap, None), &snap.root, name).await
    }

    /// Up to `limit` entries after `start_after`, in name order.
    pub async fn dir_list(
        &self,
        cap: &SlotReadCap,
        snap: &DirSnapshot,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Entry)>, ClientError> {
        tree::list(&GridNodes::new(self, cap, None), &snap.root, start_after, limit).await
    }

    /// Every immutable tree node of a directory read as `snap`.
    pub async fn dir_node_caps(&self, cap: &SlotReadCap, snap: &DirSnapshot) -> Result<Vec<ReadCap>, ClientError> {
        tree::node_caps(&GridNodes::new(self, cap, None), &snap.root).await
    }

    /// Edits the entries `names` atomically: `edit` gets their current values and returns the
    /// new ones (`None` removes). Re-read and re-applied when another writer was first.
    pub async fn dir_update<F>(
        &self,
        cap: &SlotWriteCap,
        names: &[&str],
        opts: &UploadOptions,
        edit: F,
    ) -> Result<u64, ClientError>
    where
        F: Fn(Vec<Option<Entry>>) -> Result<Vec<Option<Entry>>, ClientError>,
    {
        let read = cap.read_cap();
        let lock = self.dir_locks.get(read.verify_cap().storage_index());
        let _mine = lock.lock().await;
        let store = GridNodes::new(self, &read, Some(opts));
        let (mut attempt, mut waits, mut waiting_for) = (0, 0, 0);
        loop {
            let snap = self.dir_read(&read).await?;
            // A newer version than the one read is being written: build on it once it is
            // readable, so no writer replaces a version it did not see (a writer that died
            // part-way, whose version stays the newest and unreadable for ~5 s, is given up on).
            if snap.state.max_seen != waiting_for {
                // Writers are making progress: wait afresh for the newest one.
                (waiting_for, waits) = (snap.state.max_seen, 0);
            }
            if snap.sequence < snap.state.max_seen && waits < NEWER_WAITS {
                tokio::time::sleep(conflict_backoff(waits)).await;
                waits += 1;
                continue;
            }
            let mut current = Vec::with_capacity(names.len());
            for name in names {
                current.push(tree::get(&store, &snap.root, name).await?);
            }
            let new = edit(current.clone())?;
            let mut root = snap.root.clone();
            for ((name, old), value) in names.iter().zip(current).zip(new) {
                if old != value {
                    root = tree::set(&store, &root, name, value).await?;
                }
            }
            if root == snap.root {
                return Ok(snap.state.max_seen);
            }
            store.flush().await?;
            match self.write_slot(cap, &snap.state, &root.encode(), opts).await {
                Err(e) if e.is_conflict() && attempt + 1 < UPDATE_ATTEMPTS => {
                    tracing::debug!(attempt, "directory changed meanwhile; applying the edit again");
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Replaces a directory's whole content by sorted, unique `entries`, built in one pass.
    pub async fn dir_replace_all(
        &self,
        cap: &SlotWriteCap,
        entries: Vec<(String, Entry)>,
        opts: &UploadOptions,
    ) -> Result<u64, ClientError> {
        let read = cap.read_cap();
        let store = GridNodes::new(self, &read, Some(opts));
        let root = tree::build(&store, entries).await?;
        store.flush().await?;
        // Only what the nodes hold is needed for the swap, not the old content.
        let state = self.slot_state(&read.verify_cap()).await;
        self.write_slot(cap, &state, &root.encode(), opts).await
    }
}
