//! Mutable slots: capabilities and the signed version header (pure; the node checks the
//! signature, the client writes and reads versions through the immutable-file pipeline).
//!
//! Write cap `bb:slot-rw:<seed>` = an ed25519 signing seed; read cap
//! `bb:slot-ro:<read key>:<verifying key>`; verify cap `bb:slot-verify:<verifying key>`. The read
//! key and the verifying key come from the seed, the storage index from the verifying key, so
//! each cap yields the weaker ones and never the reverse. A version's content is encrypted with a
//! key derived from the read key and its sequence number.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::cap::{decode32, encode32, CapError};
use crate::{FileKey, ShareHeader, StorageIndex, MAX_HEADER_LEN};

const READ_KEY_CONTEXT: &str = "blackbox 2026 slot read key";
const SI_CONTEXT: &str = "blackbox 2026 slot storage index";
const CONTENT_KEY_CONTEXT: &str = "blackbox 2026 slot content key";
const VERSION_INDEX_CONTEXT: &str = "blackbox 2026 slot version index";

/// Where a version of the slot at `storage_index` keeps its shares: named by its sequence and
/// its content's file root, so two writers racing with one sequence never share storage. Each
/// version's shares are stored like an immutable file's: read, audited and repaired the same way.
pub fn version_index(storage_index: &StorageIndex, sequence: u64, content_root: &crate::Hash) -> StorageIndex {
    let mut input = storage_index.to_vec();
    input.extend_from_slice(&sequence.to_le_bytes());
    input.extend_from_slice(content_root);
    blake3::derive_key(VERSION_INDEX_CONTEXT, &input)
}
const SIGNING_CONTEXT: &[u8] = b"blackbox slot header v1";

/// Format version of an encoded [`SignedSlotHeader`].
pub const SLOT_HEADER_VERSION: u8 = 1;
/// Longest encoded [`SignedSlotHeader`].
pub const MAX_SLOT_HEADER_LEN: usize = 1 + 32 + 8 + 4 + MAX_HEADER_LEN + 64;

/// The write capability of a slot: whoever holds it can publish new versions.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotWriteCap {
    /// The ed25519 signing seed.
    pub seed: [u8; 32],
}

/// The read capability of a slot: find, verify and decrypt its versions.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotReadCap {
    /// Derives each version's content key.
    pub read_key: [u8; 32],
    /// The slot's verifying key (checks every version's signature).
    pub verifying_key: [u8; 32],
}

/// The verify capability of a slot: find and verify versions (audit, renew, repair), not read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SlotVerifyCap {
    /// The slot's verifying key.
    pub verifying_key: [u8; 32],
}

impl SlotWriteCap {
    const PREFIX: &'static str = "bb:slot-rw:";

    /// The signing key.
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.seed)
    }

    /// The read cap this write cap implies.
    pub fn read_cap(&self) -> SlotReadCap {
        SlotReadCap {
            read_key: blake3::derive_key(READ_KEY_CONTEXT, &self.seed),
            verifying_key: self.signing_key().verifying_key().to_bytes(),
        }
    }

    /// Signs a version header.
    pub fn sign(&self, header: SlotHeader) -> SignedSlotHeader {
        let signature = self.signing_key().sign(&header.signed_bytes()).to_bytes();
        SignedSlotHeader { header, signature }
    }
}

impl SlotReadCap {
    const PREFIX: &'static str = "bb:slot-ro:";

    /// The verify cap this read cap implies.
    pub fn verify_cap(&self) -> SlotVerifyCap {
        SlotVerifyCap { verifying_key: self.verifying_key }
    }

    /// The key that encrypts version `sequence`'s content.
    pub fn content_key(&self, sequence: u64) -> FileKey {
        let mut input = self.read_key.to_vec();
        input.extend_from_slice(&sequence.to_le_bytes());
        blake3::derive_key(CONTENT_KEY_CONTEXT, &input)
    }
}

impl SlotVerifyCap {
    const PREFIX: &'static str = "bb:slot-verify:";

    /// Where the slot's shares live.
    pub fn storage_index(&self) -> StorageIndex {
        blake3::derive_key(SI_CONTEXT, &self.verifying_key)
    }
}

fn one_field<'a>(s: &'a str, prefix: &'static str, fields: usize) -> Result<Vec<&'a str>, CapError> {
    let rest = s.strip_prefix(prefix).ok_or(CapError::Prefix(prefix))?;
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != fields {
        return Err(CapError::FieldCount { got: parts.len() + 2, expected: fields + 2 });
    }
    Ok(parts)
}

/// The bytes of an ed25519 verifying key, checked to be a valid curve point.
fn verifying_key(s: &str) -> Result<[u8; 32], CapError> {
    let bytes = decode32(s, "verifying key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| CapError::Base32("verifying key"))?;
    Ok(bytes)
}

impl FromStr for SlotWriteCap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, CapError> {
        let f = one_field(s, Self::PREFIX, 1)?;
        Ok(Self { seed: decode32(f[0], "seed")? })
    }
}

impl FromStr for SlotReadCap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, CapError> {
        let f = one_field(s, Self::PREFIX, 2)?;
        Ok(Self { read_key: decode32(f[0], "read key")?, verifying_key: verifying_key(f[1])? })
    }
}

impl FromStr for SlotVerifyCap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, CapError> {
        let f = one_field(s, Self::PREFIX, 1)?;
        Ok(Self { verifying_key: verifying_key(f[0])? })
    }
}

impl fmt::Display for SlotWriteCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, encode32(&self.seed))
    }
}

impl fmt::Display for SlotReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}:{}", Self::PREFIX, encode32(&self.read_key), encode32(&self.verifying_key))
    }
}

impl fmt::Display for SlotVerifyCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, encode32(&self.verifying_key))
    }
}

impl fmt::Debug for SlotWriteCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets in debug output.
        write!(f, "SlotWriteCap({})", self.read_cap().verify_cap())
    }
}

impl fmt::Debug for SlotReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlotReadCap({})", self.verify_cap())
    }
}

impl fmt::Debug for SlotVerifyCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One version of a slot: its sequence number and the share header of its encrypted content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotHeader {
    /// The slot's storage index.
    pub storage_index: StorageIndex,
    /// Version number; a new version must have a higher one.
    pub sequence: u64,
    /// Parameters, size and share roots of the version's content.
    pub share_header: ShareHeader,
}

impl SlotHeader {
    /// Where this version's shares are stored ([`version_index`]).
    pub fn version_index(&self) -> StorageIndex {
        version_index(&self.storage_index, self.sequence, &self.share_header.root())
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        m.extend_from_slice(&self.storage_index);
        m.extend_from_slice(&self.sequence.to_le_bytes());
        m.extend_from_slice(&self.share_header.encode());
        m
    }
}

/// A slot version header with the slot key's signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSlotHeader {
    /// The header.
    pub header: SlotHeader,
    /// ed25519 signature by the slot's signing key.
    pub signature: [u8; 64],
}

/// Why a slot header was refused.
#[derive(Debug, PartialEq, Eq, Error)]
pub enum SlotError {
    /// Truncated, extended, too long, or of an unknown version.
    #[error("malformed slot header: {0}")]
    Malformed(&'static str),
    /// The share header inside does not decode.
    #[error("malformed slot header: {0}")]
    Share(#[from] crate::CoreError),
    /// The verifying key does not name this storage index.
    #[error("slot key does not match the storage index")]
    WrongSlot,
    /// The signature is not the slot key's.
    #[error("slot header signature does not verify")]
    BadSignature,
}

impl SignedSlotHeader {
    /// `version u8, si [32], sequence u64 LE, header length u32 LE, share header, signature [64]`.
    pub fn encode(&self) -> Vec<u8> {
        let share = self.header.share_header.encode();
        let mut out = Vec::with_capacity(1 + 32 + 8 + 4 + share.len() + 64);
        out.push(SLOT_HEADER_VERSION);
        out.extend_from_slice(&self.header.storage_index);
        out.extend_from_slice(&self.header.sequence.to_le_bytes());
        out.extend_from_slice(&(share.len() as u32).to_le_bytes());
        out.extend_from_slice(&share);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Strict decoder of [`SignedSlotHeader::encode`] (the signature is not checked here).
    pub fn decode(b: &[u8]) -> Result<Self, SlotError> {
        if b.len() > MAX_SLOT_HEADER_LEN || b.len() < 1 + 32 + 8 + 4 + 64 {
            return Err(SlotError::Malformed("length"));
        }
        if b[0] != SLOT_HEADER_VERSION {
            return Err(SlotError::Malformed("unsupported version"));
        }
        let storage_index: StorageIndex = b[1..33].try_into().map_err(|_| SlotError::Malformed("storage index"))?;
        let sequence = u64::from_le_bytes(b[33..41].try_into().map_err(|_| SlotError::Malformed("sequence"))?);
        let len = u32::from_le_bytes(b[41..45].try_into().map_err(|_| SlotError::Malformed("length"))?) as usize;
        if b.len() != 45 + len + 64 {
            return Err(SlotError::Malformed("length"));
        }
        let share_header = ShareHeader::decode(&b[45..45 + len])?;
        let signature: [u8; 64] = b[45 + len..].try_into().map_err(|_| SlotError::Malformed("signature"))?;
        Ok(Self { header: SlotHeader { storage_index, sequence, share_header }, signature })
    }

    /// Checks that `cap`'s key names this header's storage index and signed it.
    pub fn verify(&self, cap: &SlotVerifyCap) -> Result<(), SlotError> {
        if cap.storage_index() != self.header.storage_index {
            return Err(SlotError::WrongSlot);
        }
        let key = VerifyingKey::from_bytes(&cap.verifying_key).map_err(|_| SlotError::BadSignature)?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.header.signed_bytes(), &sig).map_err(|_| SlotError::BadSignature)
    }
}
