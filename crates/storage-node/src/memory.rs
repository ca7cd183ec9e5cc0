//! In-memory share store: same contract as RocksDB, nothing survives the process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use blackbox_core::Hash;

use crate::store::{ShareKey, ShareMeta, ShareStore, StoreError};

#[derive(Default)]
struct Inner {
    blocks: BTreeMap<(ShareKey, u64), Bytes>,
    uploads: BTreeSet<ShareKey>,
    metas: BTreeMap<ShareKey, (ShareMeta, Vec<Hash>)>,
}

/// A share store in memory, for tests and in-process grids.
#[derive(Default)]
pub struct MemoryStore(Mutex<Inner>);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drop_blocks(inner: &mut Inner, key: &ShareKey) {
        inner.blocks.retain(|(k, _), _| k != key);
    }
}

impl ShareStore for MemoryStore {
    fn begin_upload(&self, key: &ShareKey) -> Result<(), StoreError> {
        let mut inner = self.lock();
        Self::drop_blocks(&mut inner, key);
        inner.uploads.insert(*key);
        Ok(())
    }

    fn put_block(&self, key: &ShareKey, index: u64, data: &[u8]) -> Result<(), StoreError> {
        self.lock()
            .blocks
            .insert((*key, index), Bytes::copy_from_slice(data));
        Ok(())
    }

    fn commit(&self, key: &ShareKey, meta: &ShareMeta, leaves: &[Hash]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.uploads.remove(key);
        inner.metas.insert(*key, (meta.clone(), leaves.to_vec()));
        Ok(())
    }

    fn abort_upload(&self, key: &ShareKey) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.uploads.remove(key);
        if !inner.metas.contains_key(key) {
            Self::drop_blocks(&mut inner, key);
        }
        Ok(())
    }

    fn unfinished_uploads(&self) -> Result<Vec<ShareKey>, StoreError> {
        Ok(self.lock().uploads.iter().copied().collect())
    }

    fn meta(&self, key: &ShareKey) -> Result<Option<ShareMeta>, StoreError> {
        Ok(self.lock().metas.get(key).map(|(m, _)| m.clone()))
    }

    fn leaves(&self, key: &ShareKey, start: u64, count: u32) -> Result<Vec<Hash>, StoreError> {
        let inner = self.lock();
        let Some((_, leaves)) = inner.metas.get(key) else {
            return Ok(Vec::new());
        };
        let start = (start.min(leaves.len() as u64)) as usize;
        let end = (start + count as usize).min(leaves.len());
        Ok(leaves[start..end].to_vec())
    }

    fn block(&self, key: &ShareKey, index: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self.lock().blocks.get(&(*key, index)).cloned())
    }

    fn list_shares(&self, si: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        Ok(self
            .lock()
            .metas
            .keys()
            .filter(|k| &k.si == si)
            .map(|k| k.share)
            .collect())
    }

    fn totals(&self) -> Result<(u64, u64), StoreError> {
        let inner = self.lock();
        Ok((
            inner.metas.len() as u64,
            inner.metas.values().map(|(m, _)| m.share_len).sum(),
        ))
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_suite() {
        crate::store::suite::run(&|| Box::new(super::MemoryStore::new()));
    }
}
