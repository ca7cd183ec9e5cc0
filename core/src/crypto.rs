use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};

use crate::CoreError;

/// Length of the AEAD tag appended to each encrypted segment.
pub const TAG_LEN: usize = 16;

/// The per-file symmetric key; whoever holds it (through a read cap) can decrypt.
pub type FileKey = [u8; 32];

/// Where a file's shares live on nodes: derived from the key, so nodes never learn the key.
pub type StorageIndex = [u8; 32];

/// Derives the storage index of a file from its key (keyed BLAKE3 in derive-key mode).
pub fn storage_index(key: &FileKey) -> StorageIndex {
    blake3::derive_key("blackbox 2026 storage index v1", key)
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_le_bytes());
    Nonce::from(n)
}

/// Encrypts `buf[..len - TAG_LEN]` in place and writes the tag into the last `TAG_LEN` bytes.
///
/// The nonce is the segment index, so one key never reuses a nonce within a file.
pub fn encrypt_segment(key: &FileKey, index: u64, buf: &mut [u8]) {
    let split = buf.len() - TAG_LEN;
    let (msg, tag_out) = buf.split_at_mut(split);
    let cipher = ChaCha20Poly1305::new(key.into());
    // Encryption only fails for messages over ~256 GiB; segments are at most 1 MiB.
    let tag = cipher
        .encrypt_in_place_detached(&nonce(index), b"", msg)
        .unwrap_or_else(|_| unreachable!("segment larger than the AEAD limit"));
    tag_out.copy_from_slice(&tag);
}

/// Decrypts a segment (ciphertext followed by its tag) in place; returns the plaintext length.
pub fn decrypt_segment(key: &FileKey, index: u64, buf: &mut [u8]) -> Result<usize, CoreError> {
    if buf.len() < TAG_LEN {
        return Err(CoreError::Decrypt(index));
    }
    let split = buf.len() - TAG_LEN;
    let (msg, tag) = buf.split_at_mut(split);
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_in_place_detached(&nonce(index), b"", msg, Tag::from_slice(tag))
        .map_err(|_| CoreError::Decrypt(index))?;
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = [7u8; 32];
        let mut buf = b"hello world\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        encrypt_segment(&key, 3, &mut buf);
        let mut copy = buf.clone();
        assert_eq!(decrypt_segment(&key, 3, &mut copy).unwrap(), 11);
        assert_eq!(&copy[..11], b"hello world");
        let mut wrong_index = buf.clone();
        assert!(decrypt_segment(&key, 4, &mut wrong_index).is_err());
        buf[0] ^= 1;
        assert!(decrypt_segment(&key, 3, &mut buf).is_err());
    }

    #[test]
    fn storage_index_is_not_the_key() {
        let key = [1u8; 32];
        assert_ne!(storage_index(&key), key);
        assert_eq!(storage_index(&key), storage_index(&key));
    }
}
