//! The `ShareStore` boundary: what a node needs from its disk, with the crash-safety contract.

use bytes::Bytes;
use thiserror::Error;

use blackbox_core::{Hash, MAX_HEADER_LEN};

/// Identifies one share: storage index and share number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareKey {
    /// Storage index of the file.
    pub si: [u8; 32],
    /// Share number.
    pub share: u8,
}

/// Failures of a share store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(String),
    /// A share file could not be read or written.
    #[error("disk error: {0}")]
    Io(String),
    /// A stored record does not decode: the disk holds something this build did not write.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
}

/// The record that makes a share visible: its header and sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMeta {
    /// Encoded share header (see `blackbox_core::ShareHeader`).
    pub header: Vec<u8>,
    /// Number of blocks.
    pub num_blocks: u64,
    /// Total bytes of blocks.
    pub share_len: u64,
}

const META_VERSION: u8 = 1;

impl ShareMeta {
    /// `version u8, share_len u64 LE, num_blocks u64 LE, header bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.header.len());
        out.push(META_VERSION);
        out.extend_from_slice(&self.share_len.to_le_bytes());
        out.extend_from_slice(&self.num_blocks.to_le_bytes());
        out.extend_from_slice(&self.header);
        out
    }

    /// Strict decoder of [`ShareMeta::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() < 17 || bytes.len() > 17 + MAX_HEADER_LEN {
            return Err(StoreError::Corrupt("share meta length"));
        }
        if bytes[0] != META_VERSION {
            return Err(StoreError::Corrupt("share meta version"));
        }
        let u = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[r]);
            u64::from_le_bytes(a)
        };
        Ok(Self { share_len: u(1..9), num_blocks: u(9..17), header: bytes[17..].to_vec() })
    }
}

/// Durable storage of shares: each share is a byte string (its blocks back to back) plus metadata.
///
/// Contract: every upload has its own id and staging area; bytes written with `write_at` belong to
/// that upload only and are never listed until `commit` makes the share visible, atomically and
/// durably (fsync) with its metadata. A committed share is immutable: a second commit of the same
/// share is refused and nothing of the stored share changes. After a crash, every upload that was
/// not committed is reported by `unfinished_uploads`, so the node can drop it; no reader can ever
/// see a partial share.
pub trait ShareStore: Send + Sync + 'static {
    /// Starts upload `id` of share `key` in a staging area of its own.
    fn begin_upload(&self, id: u64, key: &ShareKey) -> Result<(), StoreError>;
    /// Writes bytes of upload `id` at `offset` within the share.
    fn write_at(&self, id: u64, offset: u64, data: &[u8]) -> Result<(), StoreError>;
    /// Makes upload `id` the share `key`, visible with its metadata, leaf hashes and lease expiry
    /// (Unix seconds), atomically and durably; `false` (and the upload dropped) if the share is
    /// already stored.
    fn commit(
        &self,
        id: u64,
        key: &ShareKey,
        meta: &ShareMeta,
        leaves: &[Hash],
        lease_expires: u64,
    ) -> Result<bool, StoreError>;
    /// Drops an unfinished upload and its staged blocks.
    fn abort_upload(&self, id: u64) -> Result<(), StoreError>;
    /// Uploads begun and neither committed nor aborted.
    fn unfinished_uploads(&self) -> Result<Vec<u64>, StoreError>;
    /// Metadata of a committed share.
    fn meta(&self, key: &ShareKey) -> Result<Option<ShareMeta>, StoreError>;
    /// Leaf hashes `start..start+count` (clipped to the share) of a committed share.
    fn leaves(&self, key: &ShareKey, start: u64, count: u32) -> Result<Vec<Hash>, StoreError>;
    /// `len` stored bytes at `offset` (`None` if the share or the range is missing); callers check
    /// that the share is committed.
    fn read_at(&self, key: &ShareKey, offset: u64, len: usize) -> Result<Option<Bytes>, StoreError>;
    /// Share numbers of `si` that are committed.
    fn list_shares(&self, si: &[u8; 32]) -> Result<Vec<u8>, StoreError>;
    /// Count and total bytes of committed shares (for quota accounting at start).
    fn totals(&self) -> Result<(u64, u64), StoreError>;
    /// Lease expiry (Unix seconds) of a committed share.
    fn lease(&self, key: &ShareKey) -> Result<Option<u64>, StoreError>;
    /// Sets the lease expiry of a committed share, durably; `false` if the share is not stored.
    fn set_lease(&self, key: &ShareKey, expires: u64) -> Result<bool, StoreError>;
    /// Committed shares whose lease expired before `now`.
    fn expired(&self, now: u64) -> Result<Vec<ShareKey>, StoreError>;
    /// Deletes a committed share (metadata, leaves, lease and bytes); returns its length, or
    /// `None` if it was not stored. A crash part-way leaves no visible share and no lost space.
    fn delete_share(&self, key: &ShareKey) -> Result<Option<u64>, StoreError>;
    /// The record of a slot share's current version (the encoded signed slot header), if any.
    fn slot(&self, key: &ShareKey) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every share of slot `si` with a current version, with that version's record.
    fn slots(&self, si: &[u8; 32]) -> Result<Vec<(u8, Vec<u8>)>, StoreError>;
    /// Sets the record of a slot share's current version, durably.
    fn set_slot(&self, key: &ShareKey, header: &[u8]) -> Result<(), StoreError>;
    /// Flushes buffered writes to disk (called on clean shutdown).
    fn flush(&self) -> Result<(), StoreError>;
}

/// One test suite run against every `ShareStore` implementation.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;

    fn key(b: u8, share: u8) -> ShareKey {
        ShareKey { si: [b; 32], share }
    }

    fn meta(n: u64) -> ShareMeta {
        ShareMeta { header: vec![1, 2, 3], num_blocks: n, share_len: n * 4 }
    }

    pub fn run(open: &dyn Fn() -> Box<dyn ShareStore>) {
        let s = open();
        let k = key(1, 3);
        s.begin_upload(7, &k).unwrap();
        s.write_at(7, 4, b"bbbb").unwrap();
        s.write_at(7, 0, b"aaaa").unwrap();
        // Unfinished: invisible.
        assert!(s.meta(&k).unwrap().is_none());
        assert!(s.list_shares(&k.si).unwrap().is_empty());
        assert!(s.read_at(&k, 0, 4).unwrap().is_none());
        assert_eq!(s.unfinished_uploads().unwrap(), vec![7]);
        // A second upload of the same share has its own staging area.
        s.begin_upload(8, &k).unwrap();
        s.write_at(8, 0, b"zzzzzzzz").unwrap();
        assert!(s.commit(7, &k, &meta(2), &[[1; 32], [2; 32]], 1000).unwrap());
        assert_eq!(s.meta(&k).unwrap(), Some(meta(2)));
        assert_eq!(s.list_shares(&k.si).unwrap(), vec![3]);
        assert_eq!(s.unfinished_uploads().unwrap(), vec![8]);
        // Committed shares are immutable: the other upload cannot replace it.
        assert!(!s.commit(8, &k, &meta(2), &[[9; 32], [9; 32]], 9).unwrap());
        assert!(s.unfinished_uploads().unwrap().is_empty());
        assert_eq!(s.read_at(&k, 4, 4).unwrap().unwrap().as_ref(), b"bbbb");
        assert_eq!(s.read_at(&k, 2, 4).unwrap().unwrap().as_ref(), b"aabb");
        assert!(s.read_at(&k, 6, 4).unwrap().is_none(), "read past the end");
        assert_eq!(s.leaves(&k, 1, 5).unwrap(), vec![[2; 32]]);
        assert_eq!(s.leaves(&k, 7, 5).unwrap(), Vec::<Hash>::new());
        assert_eq!(s.lease(&k).unwrap(), Some(1000));
        assert_eq!(s.totals().unwrap(), (1, 8));

        // An aborted upload leaves nothing behind, and never touches the committed share.
        let k2 = key(1, 4);
        s.begin_upload(9, &k2).unwrap();
        s.write_at(9, 0, b"cccc").unwrap();
        s.abort_upload(9).unwrap();
        assert!(s.read_at(&k2, 0, 4).unwrap().is_none());
        s.begin_upload(10, &k).unwrap();
        s.write_at(10, 0, b"xxxx").unwrap();
        s.abort_upload(10).unwrap();
        assert_eq!(s.read_at(&k, 0, 4).unwrap().unwrap().as_ref(), b"aaaa");
        assert!(s.unfinished_uploads().unwrap().is_empty());
        assert_eq!(s.list_shares(&k.si).unwrap(), vec![3]);
        // Other storage indexes do not leak into listings.
        assert!(s.list_shares(&[2; 32]).unwrap().is_empty());

        // Leases: renewed ones survive, expired ones are listed and deleted with their bytes.
        let k3 = key(5, 0);
        s.begin_upload(11, &k3).unwrap();
        s.write_at(11, 0, b"eeee").unwrap();
        assert!(s.commit(11, &k3, &meta(1), &[[3; 32]], 500).unwrap());
        assert_eq!(s.lease(&k3).unwrap(), Some(500));
        assert_eq!(s.expired(600).unwrap(), vec![k3]);
        assert!(s.set_lease(&k, 2000).unwrap());
        assert!(!s.set_lease(&key(9, 9), 2000).unwrap());
        assert_eq!(s.expired(1500).unwrap(), vec![k3]);
        assert_eq!(s.delete_share(&k3).unwrap(), Some(4));
        assert_eq!(s.delete_share(&k3).unwrap(), None);
        assert!(s.meta(&k3).unwrap().is_none());
        assert!(s.read_at(&k3, 0, 4).unwrap().is_none());
        assert!(s.lease(&k3).unwrap().is_none());
        assert!(s.expired(1500).unwrap().is_empty());
        assert!(s.unfinished_uploads().unwrap().is_empty());
        assert_eq!(s.totals().unwrap(), (1, 8));
        // Slot records: absent, set, replaced.
        assert_eq!(s.slot(&k).unwrap(), None);
        s.set_slot(&k, b"v1").unwrap();
        s.set_slot(&k, b"v2").unwrap();
        assert_eq!(s.slot(&k).unwrap(), Some(b"v2".to_vec()));
        assert_eq!(s.slot(&k2).unwrap(), None);
        s.flush().unwrap();
    }
}
