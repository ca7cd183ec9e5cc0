//! Directory formats (pure): entries, the B-tree nodes a directory is stored as, and the sealing
//! of subdirectory write caps.
//!
//! A directory is a sorted map name → [`Entry`], stored as a B+tree: its root node is the content
//! of the directory's mutable slot, every other node an encrypted immutable file named by a
//! [`Child`] of its parent. Entries of subdirectories hold the child's read cap in the clear (for
//! every reader) and its write cap sealed under the parent's write key (for writers only).

use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use thiserror::Error;

use crate::{Hash, ReadCap, SlotReadCap, SlotWriteCap};

/// Format version of an encoded [`Node`].
pub const NODE_VERSION: u8 = 1;
/// Longest encoded node accepted.
pub const MAX_NODE_LEN: usize = 1 << 20;
/// Longest name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest cap (or symlink target) in an entry.
pub const MAX_CAP_LEN: usize = 4096;
/// Longest content type.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// Most bytes of user metadata (keys and values) in one entry.
pub const MAX_METADATA_LEN: usize = 8192;
/// Length of a sealed write cap: nonce, encrypted seed, tag.
pub const SEALED_LEN: usize = 12 + 32 + 16;

const SEAL_CONTEXT: &str = "blackbox 2026 directory write caps";
const LEAF: u8 = 0;
const BRANCH: u8 = 1;

/// What an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A file (`bb:chk:` or `bb:lit:` cap).
    File,
    /// A directory (`bb:slot-ro:` cap, write cap sealed).
    Dir,
    /// A symbolic link (the cap field is the target path).
    Symlink,
}

/// One name's entry in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File, directory or symlink.
    pub kind: Kind,
    /// Read cap of the child (or a symlink's target).
    pub cap: String,
    /// The child directory's write cap, sealed with [`seal_write_cap`].
    pub sealed_write: Option<[u8; SEALED_LEN]>,
    /// Bytes of content.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
    /// POSIX permission bits.
    pub mode: u32,
    /// MIME type ("" when unknown).
    pub content_type: String,
    /// User metadata, sorted by key.
    pub metadata: Vec<(String, String)>,
}

/// A pointer from a branch to a child node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The smallest name in the child's subtree.
    pub first: String,
    /// The child node's immutable file.
    pub cap: ReadCap,
    /// Entries in the child's subtree.
    pub count: u64,
}

/// A node of a directory's B+tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Entries, sorted by name.
    Leaf(Vec<(String, Entry)>),
    /// Children, sorted by first name.
    Branch(Vec<Child>),
}

/// Why a directory node was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DirError {
    /// Truncated, extended, of an unknown version, or breaking a bound.
    #[error("malformed directory node: {0}")]
    Malformed(&'static str),
    /// Names not strictly increasing.
    #[error("malformed directory node: names out of order")]
    Order,
    /// A sealed write cap did not open with this key (or names another directory).
    #[error("this key cannot open the directory's write cap")]
    Seal,
}

impl Node {
    /// An empty directory.
    pub fn empty() -> Self {
        Node::Leaf(Vec::new())
    }

    /// Entries in this node's subtree.
    pub fn count(&self) -> u64 {
        match self {
            Node::Leaf(e) => e.len() as u64,
            Node::Branch(c) => c.iter().map(|c| c.count).sum(),
        }
    }

    /// The smallest name under this node.
    pub fn first(&self) -> Option<&str> {
        match self {
            Node::Leaf(e) => e.first().map(|(n, _)| n.as_str()),
            Node::Branch(c) => c.first().map(|c| c.first.as_str()),
        }
    }

    /// `version u8, kind u8, count u32 LE, items`; strings are `u16 LE length` then UTF-8.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(256);
        w.push(NODE_VERSION);
        match self {
            Node::Leaf(entries) => {
                w.push(LEAF);
                w.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for (name, e) in entries {
                    put_str(&mut w, name);
                    encode_entry(&mut w, e);
                }
            }
            Node::Branch(children) => {
                w.push(BRANCH);
                w.extend_from_slice(&(children.len() as u32).to_le_bytes());
                for c in children {
                    put_str(&mut w, &c.first);
                    w.extend_from_slice(&c.cap.key);
                    w.extend_from_slice(&c.cap.root);
                    w.extend_from_slice(&[c.cap.k, c.cap.n]);
                    w.extend_from_slice(&c.cap.size.to_le_bytes());
                    w.extend_from_slice(&c.count.to_le_bytes());
                }
            }
        }
        w
    }

    /// Strict decoder of [`Node::encode`]: bounds, UTF-8, strictly increasing names, no trailing bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DirError> {
        if b.len() > MAX_NODE_LEN {
            return Err(DirError::Malformed("node too long"));
        }
        let mut r = Reader(b);
        if r.u8()? != NODE_VERSION {
            return Err(DirError::Malformed("unsupported version"));
        }
        let kind = r.u8()?;
        let count = r.u32()? as usize;
        // Every item takes at least 2 bytes: a lying count cannot make us allocate much.
        if count > b.len() / 2 {
            return Err(DirError::Malformed("count"));
        }
        let node = match kind {
            LEAF => {
                let mut entries = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let name = r.name()?;
                    entries.push((name, decode_entry(&mut r)?));
                }
                in_order(entries.iter().map(|(n, _)| n))?;
                Node::Leaf(entries)
            }
            BRANCH => {
                let mut children = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    children.push(decode_child(&mut r)?);
                }
                in_order(children.iter().map(|c| &c.first))?;
                Node::Branch(children)
            }
            _ => return Err(DirError::Malformed("node kind")),
        };
        if !r.0.is_empty() {
            return Err(DirError::Malformed("trailing bytes"));
        }
        Ok(node)
    }
}

/// Checks a name: 1 to [`MAX_NAME_LEN`] bytes (any UTF-8, `/` included).
pub fn check_name(name: &str) -> Result<(), DirError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(DirError::Malformed("name must be 1 to 1024 bytes"));
    }
    Ok(())
}

/// Checks an entry against the format's bounds before it is encoded.
pub fn check_entry(e: &Entry) -> Result<(), DirError> {
    if e.cap.len() > MAX_CAP_LEN {
        return Err(DirError::Malformed("cap too long"));
    }
    if e.content_type.len() > MAX_CONTENT_TYPE_LEN {
        return Err(DirError::Malformed("content type too long"));
    }
    if e.sealed_write.is_some() && e.kind != Kind::Dir {
        return Err(DirError::Malformed("write cap on a non-directory"));
    }
    let total: usize = e.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_METADATA_LEN || e.metadata.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(DirError::Malformed("metadata too long or keys not sorted and unique"));
    }
    Ok(())
}

/// The encoded size of one leaf entry (to split leaves by size).
pub fn entry_len(name: &str, e: &Entry) -> usize {
    let mut w = Vec::new();
    put_str(&mut w, name);
    encode_entry(&mut w, e);
    w.len()
}

fn in_order<'a>(names: impl Iterator<Item = &'a String>) -> Result<(), DirError> {
    let mut last: Option<&String> = None;
    for n in names {
        if last.is_some_and(|l| l >= n) {
            return Err(DirError::Order);
        }
        last = Some(n);
    }
    Ok(())
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    w.extend_from_slice(&(s.len() as u16).to_le_bytes());
    w.extend_from_slice(s.as_bytes());
}

fn encode_entry(w: &mut Vec<u8>, e: &Entry) {
    w.push(match e.kind {
        Kind::File => 0,
        Kind::Dir => 1,
        Kind::Symlink => 2,
    });
    put_str(w, &e.cap);
    match &e.sealed_write {
        Some(s) => {
            w.push(1);
            w.extend_from_slice(s);
        }
        None => w.push(0),
    }
    w.extend_from_slice(&e.size.to_le_bytes());
    w.extend_from_slice(&e.mtime_ns.to_le_bytes());
    w.extend_from_slice(&e.mode.to_le_bytes());
    put_str(w, &e.content_type);
    w.extend_from_slice(&(e.metadata.len() as u16).to_le_bytes());
    for (k, v) in &e.metadata {
        put_str(w, k);
        put_str(w, v);
    }
}

fn decode_entry(r: &mut Reader<'_>) -> Result<Entry, DirError> {
    let kind = match r.u8()? {
        0 => Kind::File,
        1 => Kind::Dir,
        2 => Kind::Symlink,
        _ => return Err(DirError::Malformed("entry kind")),
    };
    let cap = r.string(MAX_CAP_LEN, "cap")?;
    let sealed_write = match r.u8()? {
        0 => None,
        1 => Some(r.array::<SEALED_LEN>()?),
        _ => return Err(DirError::Malformed("write cap flag")),
    };
    if sealed_write.is_some() && kind != Kind::Dir {
        return Err(DirError::Malformed("write cap on a non-directory"));
    }
    let (size, mtime_ns, mode) = (r.u64()?, r.u64()?, r.u32()?);
    let content_type = r.string(MAX_CONTENT_TYPE_LEN, "content type")?;
    let pairs = r.u16()? as usize;
    let mut metadata = Vec::with_capacity(pairs.min(64));
    let mut total = 0;
    for _ in 0..pairs {
        let (k, v) = (r.string(MAX_METADATA_LEN, "metadata")?, r.string(MAX_METADATA_LEN, "metadata")?);
        total += k.len() + v.len();
        if total > MAX_METADATA_LEN {
            return Err(DirError::Malformed("metadata too long"));
        }
        metadata.push((k, v));
    }
    in_order(metadata.iter().map(|(k, _)| k))?;
    Ok(Entry { kind, cap, sealed_write, size, mtime_ns, mode, content_type, metadata })
}

fn decode_child(r: &mut Reader<'_>) -> Result<Child, DirError> {
    let first = r.name()?;
    let (key, root): ([u8; 32], Hash) = (r.array()?, r.array()?);
    let (k, n) = (r.u8()?, r.u8()?);
    if k == 0 || k > n {
        return Err(DirError::Malformed("child k/n"));
    }
    let size = r.u64()?;
    let count = r.u64()?;
    Ok(Child { first, cap: ReadCap { key, root, k, n, size }, count })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DirError> {
        if self.0.len() < n {
            return Err(DirError::Malformed("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DirError> {
        self.take(N)?.try_into().map_err(|_| DirError::Malformed("truncated"))
    }
    fn u8(&mut self) -> Result<u8, DirError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DirError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DirError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DirError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn string(&mut self, max: usize, what: &'static str) -> Result<String, DirError> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(DirError::Malformed(what));
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DirError::Malformed(what))
    }
    fn name(&mut self) -> Result<String, DirError> {
        let name = self.string(MAX_NAME_LEN, "name")?;
        if name.is_empty() {
            return Err(DirError::Malformed("empty name"));
        }
        Ok(name)
    }
}

fn seal_key(parent: &SlotWriteCap) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&blake3::derive_key(SEAL_CONTEXT, &parent.seed).into())
}

/// Seals `child`'s write cap under `parent`'s write key (`nonce` must be random), bound to the
/// child's verifying key.
pub fn seal_write_cap(parent: &SlotWriteCap, child: &SlotWriteCap, nonce: [u8; 12]) -> [u8; SEALED_LEN] {
    let mut out = [0u8; SEALED_LEN];
    out[..12].copy_from_slice(&nonce);
    let ct = seal_key(parent)
        .encrypt(&Nonce::from(nonce), child.seed.as_slice())
        .unwrap_or_else(|_| unreachable!("32 bytes are within the AEAD limit"));
    out[12..].copy_from_slice(&ct);
    out
}

/// Opens a sealed write cap with `parent`'s write key; it must be the write cap of `child`.
pub fn open_write_cap(
    parent: &SlotWriteCap,
    sealed: &[u8; SEALED_LEN],
    child: &SlotReadCap,
) -> Result<SlotWriteCap, DirError> {
    let nonce = Nonce::from_slice(&sealed[..12]);
    let seed = seal_key(parent).decrypt(nonce, &sealed[12..]).map_err(|_| DirError::Seal)?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| DirError::Seal)?;
    let cap = SlotWriteCap { seed };
    if cap.read_cap() != *child {
        return Err(DirError::Seal);
    }
    Ok(cap)
}
