//! RocksDB share store. Large values (blocks) go to blob files, so compaction does not rewrite them.
//!
//! Keys: `b si share index(BE)` blocks, `u si share` unfinished-upload markers, `m si share` share
//! metadata, `l si share` leaf hashes. Commit writes `m` and `l` and deletes `u` in one synced batch.

use std::path::Path;

use bytes::Bytes;
use rocksdb::{DBCompressionType, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use blackbox_core::Hash;

use crate::store::{ShareKey, ShareMeta, ShareStore, StoreError};

fn db_err(e: rocksdb::Error) -> StoreError {
    StoreError::Db(e.into_string())
}

fn share_key(tag: u8, key: &ShareKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(42);
    k.push(tag);
    k.extend_from_slice(&key.si);
    k.push(key.share);
    k
}

fn block_key(key: &ShareKey, index: u64) -> Vec<u8> {
    let mut k = share_key(b'b', key);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

type KeyValue = (Box<[u8]>, Box<[u8]>);

/// A share store in a RocksDB database directory.
pub struct RocksStore {
    db: DB,
}

impl RocksStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(DBCompressionType::None);
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(4096);
        opts.set_blob_file_size(256 << 20);
        opts.set_blob_compression_type(DBCompressionType::None);
        opts.set_enable_blob_gc(true);
        opts.set_write_buffer_size(32 << 20);
        opts.set_max_background_jobs(2);
        opts.set_max_open_files(512);
        let db = DB::open(&opts, path).map_err(db_err)?;
        Ok(Self { db })
    }

    fn scan(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<KeyValue, StoreError>> + '_ {
        let prefix = prefix.to_vec();
        self.db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
            .map(|r| r.map_err(db_err))
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
    }

    fn clear_blocks(batch: &mut WriteBatch, key: &ShareKey) {
        let from = block_key(key, 0);
        let to = block_key(key, u64::MAX);
        batch.delete_range(from, to);
    }
}

impl ShareStore for RocksStore {
    fn begin_upload(&self, key: &ShareKey) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        Self::clear_blocks(&mut batch, key);
        batch.put(share_key(b'u', key), b"");
        self.db.write(batch).map_err(db_err)
    }

    fn put_block(&self, key: &ShareKey, index: u64, data: &[u8]) -> Result<(), StoreError> {
        self.db.put(block_key(key, index), data).map_err(db_err)
    }

    fn commit(&self, key: &ShareKey, meta: &ShareMeta, leaves: &[Hash]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(share_key(b'm', key), meta.encode());
        batch.put(share_key(b'l', key), leaves.concat());
        batch.delete(share_key(b'u', key));
        let mut opts = WriteOptions::default();
        // Syncing the WAL here also makes every earlier block write of this upload durable.
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(db_err)
    }

    fn abort_upload(&self, key: &ShareKey) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        if self.meta(key)?.is_none() {
            Self::clear_blocks(&mut batch, key);
        }
        batch.delete(share_key(b'u', key));
        self.db.write(batch).map_err(db_err)
    }

    fn unfinished_uploads(&self) -> Result<Vec<ShareKey>, StoreError> {
        self.scan(b"u")
            .map(|r| {
                let (k, _) = r?;
                if k.len() != 34 {
                    return Err(StoreError::Corrupt("upload marker key"));
                }
                let mut si = [0u8; 32];
                si.copy_from_slice(&k[1..33]);
                Ok(ShareKey { si, share: k[33] })
            })
            .collect()
    }

    fn meta(&self, key: &ShareKey) -> Result<Option<ShareMeta>, StoreError> {
        match self.db.get_pinned(share_key(b'm', key)).map_err(db_err)? {
            Some(v) => Ok(Some(ShareMeta::decode(&v)?)),
            None => Ok(None),
        }
    }

    fn leaves(&self, key: &ShareKey, start: u64, count: u32) -> Result<Vec<Hash>, StoreError> {
        let Some(v) = self.db.get_pinned(share_key(b'l', key)).map_err(db_err)? else {
            return Ok(Vec::new());
        };
        if v.len() % 32 != 0 {
            return Err(StoreError::Corrupt("leaf hashes length"));
        }
        let total = (v.len() / 32) as u64;
        let start = start.min(total);
        let end = (start + count as u64).min(total);
        Ok(v[(start * 32) as usize..(end * 32) as usize]
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    fn block(&self, key: &ShareKey, index: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .db
            .get_pinned(block_key(key, index))
            .map_err(db_err)?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn list_shares(&self, si: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let mut prefix = vec![b'm'];
        prefix.extend_from_slice(si);
        self.scan(&prefix)
            .map(|r| {
                let (k, _) = r?;
                k.get(33)
                    .copied()
                    .ok_or(StoreError::Corrupt("share meta key"))
            })
            .collect()
    }

    fn totals(&self) -> Result<(u64, u64), StoreError> {
        let (mut count, mut bytes) = (0, 0);
        for r in self.scan(b"m") {
            let (_, v) = r?;
            count += 1;
            bytes += ShareMeta::decode(&v)?.share_len;
        }
        Ok((count, bytes))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(db_err)?;
        self.db.flush().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        crate::store::suite::run(&|| Box::new(RocksStore::open(&path).unwrap()));
    }

    #[test]
    fn unfinished_upload_survives_reopen_and_commit_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (a, b) = (
            ShareKey {
                si: [1; 32],
                share: 0,
            },
            ShareKey {
                si: [1; 32],
                share: 1,
            },
        );
        {
            let s = RocksStore::open(&path).unwrap();
            s.begin_upload(&a).unwrap();
            s.put_block(&a, 0, b"x").unwrap();
            s.begin_upload(&b).unwrap();
            s.put_block(&b, 0, b"y").unwrap();
            s.commit(
                &b,
                &ShareMeta {
                    header: vec![],
                    num_blocks: 1,
                    share_len: 1,
                },
                &[[0; 32]],
            )
            .unwrap();
        }
        let s = RocksStore::open(&path).unwrap();
        assert_eq!(s.unfinished_uploads().unwrap(), vec![a]);
        assert_eq!(s.list_shares(&[1; 32]).unwrap(), vec![1]);
        s.abort_upload(&a).unwrap();
        assert!(s.block(&a, 0).unwrap().is_none());
        assert_eq!(s.block(&b, 0).unwrap().unwrap().as_ref(), b"y");
    }
}
