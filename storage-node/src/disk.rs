//! The node's disk store: RocksDB holds metadata and the commit point; block bytes live in one file
//! per share.
//!
//! Why not the blocks in RocksDB too: with Debian's portable RocksDB build, every byte went through
//! the WAL and again through a blob file, each with a software CRC32c; that cost more CPU than all
//! the rest of a node's work together (perf, `blackbox bench e2e`). Block integrity is already
//! covered end to end by the BLAKE3 hash trees, so the share file needs no second checksum.
//!
//! RocksDB keys: `v si share` a slot share's current version (its signed slot header), `u id`
//! unfinished-upload markers (value: the share it is for), `d si share`
//! deletions in progress, `m si share` share metadata (versioned, see `ShareMeta`), `l si share`
//! leaf hashes (version byte, then 32 bytes per block), `e si share` lease expiry (version byte,
//! Unix seconds u64 LE). Uploads are staged in `uploads/<id hex>`, one file per upload; share
//! files are `shares/<first si byte, hex>/<si hex>.<share>`. A commit fsyncs the staged file,
//! renames it into place (only if the share is not stored yet: committed shares are never
//! replaced or truncated), fsyncs both directories, then writes `m`, `l`, `e` and deletes `u` in
//! one synced batch; a share is visible only through its `m` record, so a crash at any point
//! leaves no partial share, and the `u` marker tells the next start which file to delete.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rocksdb::{DBCompressionType, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use blackbox_core::Hash;

use crate::store::{ShareKey, ShareMeta, ShareStore, StoreError};

fn db_err(e: rocksdb::Error) -> StoreError {
    StoreError::Db(e.into_string())
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::Io(format!("{what}: {e}"))
}

fn db_key(tag: u8, key: &ShareKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(34);
    k.push(tag);
    k.extend_from_slice(&key.si);
    k.push(key.share);
    k
}

/// Marker of upload `id` (value: the `s`-tagged share key it is for).
fn upload_key(id: u64) -> Vec<u8> {
    let mut k = vec![b'u'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The share key of a `tag si share` record key.
fn share_key(k: &[u8], tag: u8) -> Result<ShareKey, StoreError> {
    if k.len() != 34 || k[0] != tag {
        return Err(StoreError::Corrupt("share key"));
    }
    let mut si = [0u8; 32];
    si.copy_from_slice(&k[1..33]);
    Ok(ShareKey { si, share: k[33] })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

type KeyValue = (Box<[u8]>, Box<[u8]>);

/// Version byte in front of a share's leaf-hash record.
const LEAVES_VERSION: u8 = 1;
/// Version byte in front of a share's lease record.
const LEASE_VERSION: u8 = 1;

fn lease_record(expires: u64) -> [u8; 9] {
    let mut r = [LEASE_VERSION; 9];
    r[1..].copy_from_slice(&expires.to_le_bytes());
    r
}

fn decode_lease(v: &[u8]) -> Result<u64, StoreError> {
    match v.split_first() {
        Some((&LEASE_VERSION, rest)) if rest.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(rest);
            Ok(u64::from_le_bytes(a))
        }
        _ => Err(StoreError::Corrupt("lease record")),
    }
}

/// Share store on a local disk: RocksDB for metadata, a file per share for its bytes.
pub struct DiskStore {
    db: DB,
    shares: PathBuf,
    uploads: PathBuf,
}

impl DiskStore {
    /// Opens (creating if needed) the store in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shares = path.join("shares");
        std::fs::create_dir_all(&shares).map_err(io_err("creating share directory"))?;
        let uploads = path.join("uploads");
        std::fs::create_dir_all(&uploads).map_err(io_err("creating upload directory"))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(DBCompressionType::None);
        opts.set_max_background_jobs(2);
        opts.set_max_open_files(512);
        let db = DB::open(&opts, path.join("meta")).map_err(db_err)?;
        let store = Self { db, shares, uploads };
        store.finish_deletions()?;
        Ok(store)
    }

    /// Deletes the files of shares whose deletion a crash interrupted (`d` markers).
    fn finish_deletions(&self) -> Result<(), StoreError> {
        let pending: Vec<ShareKey> = self.scan(b"d").map(|r| share_key(&r?.0, b'd')).collect::<Result<_, _>>()?;
        for key in pending {
            self.remove_file(&key)?;
            self.db.delete(db_key(b'd', &key)).map_err(db_err)?;
        }
        Ok(())
    }

    /// Path of upload `id`'s staging file.
    fn staging_path(&self, id: u64) -> PathBuf {
        self.uploads.join(format!("{id:016x}"))
    }

    /// Path of the file holding a share's bytes.
    pub fn share_path(&self, key: &ShareKey) -> PathBuf {
        self.shares.join(hex(&key.si[..1])).join(format!("{}.{}", hex(&key.si), key.share))
    }

    fn scan(&self, prefix: &[u8]) -> impl Iterator<Item = Result<KeyValue, StoreError>> + '_ {
        let prefix = prefix.to_vec();
        self.db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
            .map(|r| r.map_err(db_err))
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
    }

    fn remove_file(&self, key: &ShareKey) -> Result<(), StoreError> {
        match std::fs::remove_file(self.share_path(key)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::Io(format!("removing share file: {e}"))),
            _ => Ok(()),
        }
    }
}

impl ShareStore for DiskStore {
    fn begin_upload(&self, id: u64, key: &ShareKey) -> Result<(), StoreError> {
        // The marker is durable before the file exists, so a crash never leaves an unknown file.
        self.db.put_opt(upload_key(id), db_key(b's', key), &synced()).map_err(db_err)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.staging_path(id))
            .map_err(io_err("creating upload file"))?;
        Ok(())
    }

    fn write_at(&self, id: u64, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let file = OpenOptions::new().write(true).open(self.staging_path(id)).map_err(io_err("opening upload file"))?;
        file.write_all_at(data, offset).map_err(io_err("writing upload file"))
    }

    fn commit(
        &self,
        id: u64,
        key: &ShareKey,
        meta: &ShareMeta,
        leaves: &[Hash],
        lease_expires: u64,
    ) -> Result<bool, StoreError> {
        if self.meta(key)?.is_some() {
            self.abort_upload(id)?;
            return Ok(false);
        }
        let staged = self.staging_path(id);
        File::open(&staged).and_then(|f| f.sync_all()).map_err(io_err("syncing upload file"))?;
        let path = self.share_path(key);
        let dir = path.parent().unwrap_or(&self.shares);
        std::fs::create_dir_all(dir).map_err(io_err("creating share directory"))?;
        std::fs::rename(&staged, &path).map_err(io_err("moving the upload into place"))?;
        blackbox_util::fs::sync_dir(dir).map_err(io_err("syncing share directory"))?;
        blackbox_util::fs::sync_dir(&self.uploads).map_err(io_err("syncing upload directory"))?;
        let mut batch = WriteBatch::default();
        batch.put(db_key(b'm', key), meta.encode());
        let mut record = Vec::with_capacity(1 + 32 * leaves.len());
        record.push(LEAVES_VERSION);
        record.extend(leaves.iter().flatten());
        batch.put(db_key(b'l', key), record);
        batch.put(db_key(b'e', key), lease_record(lease_expires));
        batch.delete(upload_key(id));
        self.db.write_opt(batch, &synced()).map_err(db_err)?;
        Ok(true)
    }

    fn abort_upload(&self, id: u64) -> Result<(), StoreError> {
        // A crash between moving an upload into place and its commit batch left the file at the
        // share's path without metadata: it belongs to this upload, and goes with it.
        if let Some(target) = self.db.get(upload_key(id)).map_err(db_err)? {
            let key = share_key(&target, b's')?;
            if self.meta(&key)?.is_none() && !self.staging_path(id).exists() {
                self.remove_file(&key)?;
            }
        }
        match std::fs::remove_file(self.staging_path(id)) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(StoreError::Io(format!("removing upload file: {e}")))
            }
            _ => {}
        }
        self.db.delete(upload_key(id)).map_err(db_err)
    }

    fn unfinished_uploads(&self) -> Result<Vec<u64>, StoreError> {
        self.scan(b"u")
            .map(|r| {
                let (k, _) = r?;
                let id: [u8; 8] =
                    k.get(1..).and_then(|b| b.try_into().ok()).ok_or(StoreError::Corrupt("upload key"))?;
                Ok(u64::from_be_bytes(id))
            })
            .collect()
    }

    fn meta(&self, key: &ShareKey) -> Result<Option<ShareMeta>, StoreError> {
        match self.db.get_pinned(db_key(b'm', key)).map_err(db_err)? {
            Some(v) => Ok(Some(ShareMeta::decode(&v)?)),
            None => Ok(None),
        }
    }

    fn leaves(&self, key: &ShareKey, start: u64, count: u32) -> Result<Vec<Hash>, StoreError> {
        let Some(v) = self.db.get_pinned(db_key(b'l', key)).map_err(db_err)? else {
            return Ok(Vec::new());
        };
        let Some((&LEAVES_VERSION, hashes)) = v.split_first() else {
            return Err(StoreError::Corrupt("leaf hashes version"));
        };
        if hashes.len() % 32 != 0 {
            return Err(StoreError::Corrupt("leaf hashes length"));
        }
        let total = (hashes.len() / 32) as u64;
        let start = start.min(total);
        let end = start.saturating_add(count as u64).min(total);
        Ok(hashes[(start * 32) as usize..(end * 32) as usize]
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    fn read_at(&self, key: &ShareKey, offset: u64, len: usize) -> Result<Option<Bytes>, StoreError> {
        let file = match File::open(self.share_path(key)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io(format!("opening share file: {e}"))),
        };
        let mut buf = vec![0u8; len];
        match file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(Some(Bytes::from(buf))),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(StoreError::Io(format!("reading share file: {e}"))),
        }
    }

    fn list_shares(&self, si: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let mut prefix = vec![b'm'];
        prefix.extend_from_slice(si);
        self.scan(&prefix)
            .map(|r| {
                let (k, _) = r?;
                k.get(33).copied().ok_or(StoreError::Corrupt("share meta key"))
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

    fn lease(&self, key: &ShareKey) -> Result<Option<u64>, StoreError> {
        match self.db.get_pinned(db_key(b'e', key)).map_err(db_err)? {
            Some(v) => Ok(Some(decode_lease(&v)?)),
            None => Ok(None),
        }
    }

    fn set_lease(&self, key: &ShareKey, expires: u64) -> Result<bool, StoreError> {
        if self.meta(key)?.is_none() {
            return Ok(false);
        }
        self.db.put_opt(db_key(b'e', key), lease_record(expires), &synced()).map_err(db_err)?;
        Ok(true)
    }

    fn expired(&self, now: u64) -> Result<Vec<ShareKey>, StoreError> {
        let mut out = Vec::new();
        for r in self.scan(b"e") {
            let (k, v) = r?;
            if k.len() != 34 {
                return Err(StoreError::Corrupt("lease key"));
            }
            if decode_lease(&v)? < now {
                let mut si = [0u8; 32];
                si.copy_from_slice(&k[1..33]);
                out.push(ShareKey { si, share: k[33] });
            }
        }
        Ok(out)
    }

    fn delete_share(&self, key: &ShareKey) -> Result<Option<u64>, StoreError> {
        let Some(meta) = self.meta(key)? else {
            return Ok(None);
        };
        // Invisible first, with a deletion marker so that a crash before the file is gone lets
        // the next start delete it.
        let mut batch = WriteBatch::default();
        for tag in [b'm', b'l', b'e'] {
            batch.delete(db_key(tag, key));
        }
        batch.put(db_key(b'd', key), b"");
        self.db.write_opt(batch, &synced()).map_err(db_err)?;
        self.remove_file(key)?;
        self.db.delete(db_key(b'd', key)).map_err(db_err)?;
        Ok(Some(meta.share_len))
    }

    fn slot(&self, key: &ShareKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(db_key(b'v', key)).map_err(db_err)
    }

    fn slots(&self, si: &[u8; 32]) -> Result<Vec<(u8, Vec<u8>)>, StoreError> {
        let mut prefix = vec![b'v'];
        prefix.extend_from_slice(si);
        self.scan(&prefix)
            .map(|r| {
                let (k, v) = r?;
                Ok((k.get(33).copied().ok_or(StoreError::Corrupt("slot key"))?, v.to_vec()))
            })
            .collect()
    }

    fn set_slot(&self, key: &ShareKey, header: &[u8]) -> Result<(), StoreError> {
        self.db.put_opt(db_key(b'v', key), header, &synced()).map_err(db_err)
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
        let path = dir.path().join("store");
        crate::store::suite::run(&|| Box::new(DiskStore::open(&path).unwrap()));
    }

    #[test]
    fn unfinished_upload_survives_reopen_and_commit_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let (a, b) = (ShareKey { si: [1; 32], share: 0 }, ShareKey { si: [1; 32], share: 1 });
        {
            let s = DiskStore::open(&path).unwrap();
            s.begin_upload(1, &a).unwrap();
            s.write_at(1, 0, b"x").unwrap();
            s.begin_upload(2, &b).unwrap();
            s.write_at(2, 0, b"y").unwrap();
            s.commit(2, &b, &ShareMeta { header: vec![], num_blocks: 1, share_len: 1 }, &[[0; 32]], 9).unwrap();
        }
        let s = DiskStore::open(&path).unwrap();
        assert_eq!(s.unfinished_uploads().unwrap(), vec![1]);
        assert_eq!(s.list_shares(&[1; 32]).unwrap(), vec![1]);
        s.abort_upload(1).unwrap();
        assert!(!s.share_path(&a).exists());
        assert!(!s.staging_path(1).exists());
        assert!(s.read_at(&a, 0, 1).unwrap().is_none());
        assert_eq!(s.read_at(&b, 0, 1).unwrap().unwrap().as_ref(), b"y");
    }
}
