//! Pure data pipeline of blackbox: no I/O happens here.
//!
//! A file is cut into segments; each segment is encrypted with ChaCha20-Poly1305 under the file key
//! (nonce = segment index), Reed-Solomon coded into `n` blocks of which any `k` rebuild it, and block
//! `j` of every segment goes to share `j`. Every share carries a BLAKE3 hash tree over its blocks; the
//! roots of all shares hash (with the encoding parameters) into the file root that capabilities carry.

mod cap;
mod crypto;
pub mod dir;
mod erasure;
mod error;
pub mod hashtree;
mod lit;
pub mod multi;
mod params;
mod prices;
mod share;
pub mod slot;

pub use cap::{CapError, ReadCap, VerifyCap};
pub use crypto::{decrypt_segment, encrypt_segment, storage_index, FileKey, StorageIndex};
pub use erasure::{SegmentDecoder, SegmentEncoder, SegmentRebuilder};
pub use error::CoreError;
pub use lit::{LiteralCap, MAX_LITERAL_LEN};
pub use multi::{Manifest, MultiCap};
pub use params::{EncodingParams, DEFAULT_LEASE_SECS, DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE};
pub use prices::Prices;
pub use share::{
    file_root, FileEncoder, FileLayout, ShareHeader, ShareRootBuilder, ShareVerifier, FORMAT_VERSION, MAX_HEADER_LEN,
};
pub use slot::{SignedSlotHeader, SlotError, SlotHeader, SlotReadCap, SlotVerifyCap, SlotWriteCap};

/// A 32-byte BLAKE3 digest.
pub type Hash = [u8; 32];
