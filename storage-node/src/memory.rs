//! In-memory share store: same contract as the disk store, nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use blackbox_core::Hash;

use crate::store::{ShareKey, ShareMeta, ShareStore, StoreError};

#[derive(Default)]
struct Inner {
    data: BTreeMap<ShareKey, Vec<u8>>,
    uploads: BTreeMap<u64, (ShareKey, Vec<u8>)>,
    metas: BTreeMap<ShareKey, (ShareMeta, Vec<Hash>)>,
    leases: BTreeMap<ShareKey, u64>,
    slots: BTreeMap<ShareKey, Vec<u8>>,
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
}

impl ShareStore for MemoryStore {
    fn begin_upload(&self, id: u64, key: &ShareKey) -> Result<(), StoreError> {
        self.lock().uploads.insert(id, (*key, Vec::new()));
        Ok(())
    }

    fn write_at(&self, id: u64, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let (_, buf) = inner.uploads.get_mut(&id).ok_or(StoreError::Io(format!("no upload {id}")))?;
        let start = usize::try_from(offset).map_err(|_| StoreError::Corrupt("offset"))?;
        let end = start + data.len();
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[start..end].copy_from_slice(data);
        Ok(())
    }

    fn commit(
        &self,
        id: u64,
        key: &ShareKey,
        meta: &ShareMeta,
        leaves: &[Hash],
        lease_expires: u64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let (_, bytes) = inner.uploads.remove(&id).ok_or(StoreError::Io(format!("no upload {id}")))?;
        if inner.metas.contains_key(key) {
            return Ok(false);
        }
        inner.data.insert(*key, bytes);
        inner.metas.insert(*key, (meta.clone(), leaves.to_vec()));
        inner.leases.insert(*key, lease_expires);
        Ok(true)
    }

    fn abort_upload(&self, id: u64) -> Result<(), StoreError> {
        self.lock().uploads.remove(&id);
        Ok(())
    }

    fn unfinished_uploads(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self.lock().uploads.keys().copied().collect())
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

    fn read_at(&self, key: &ShareKey, offset: u64, len: usize) -> Result<Option<Bytes>, StoreError> {
        let inner = self.lock();
        let Some(buf) = inner.data.get(key) else {
            return Ok(None);
        };
        let Ok(start) = usize::try_from(offset) else {
            return Ok(None);
        };
        Ok(buf.get(start..start.saturating_add(len)).map(Bytes::copy_from_slice))
    }

    fn list_shares(&self, si: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        Ok(self.lock().metas.keys().filter(|k| &k.si == si).map(|k| k.share).collect())
    }

    fn totals(&self) -> Result<(u64, u64), StoreError> {
        let inner = self.lock();
        Ok((inner.metas.len() as u64, inner.metas.values().map(|(m, _)| m.share_len).sum()))
    }

    fn lease(&self, key: &ShareKey) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().leases.get(key).copied())
    }

    fn set_lease(&self, key: &ShareKey, expires: u64) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if !inner.metas.contains_key(key) {
            return Ok(false);
        }
        inner.leases.insert(*key, expires);
        Ok(true)
    }

    fn expired(&self, now: u64) -> Result<Vec<ShareKey>, StoreError> {
        Ok(self.lock().leases.iter().filter(|(_, e)| **e < now).map(|(k, _)| *k).collect())
    }

    fn delete_share(&self, key: &ShareKey) -> Result<Option<u64>, StoreError> {
        let mut inner = self.lock();
        let Some((meta, _)) = inner.metas.remove(key) else {
            return Ok(None);
        };
        inner.leases.remove(key);
        inner.data.remove(key);
        Ok(Some(meta.share_len))
    }

    fn slot(&self, key: &ShareKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().slots.get(key).cloned())
    }

    fn slots(&self, si: &[u8; 32]) -> Result<Vec<(u8, Vec<u8>)>, StoreError> {
        Ok(self.lock().slots.iter().filter(|(k, _)| &k.si == si).map(|(k, v)| (k.share, v.clone())).collect())
    }

    fn set_slot(&self, key: &ShareKey, header: &[u8]) -> Result<(), StoreError> {
        self.lock().slots.insert(*key, header.to_vec());
        Ok(())
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
