//! The node's secret keys in its data dir, created on first start with mode 0600 from the first
//! byte: the libp2p identity (its peer id, which signs offers) and the bitcoin payment key.

use std::path::{Path, PathBuf};

use blackbox_net::Keypair;
use blackbox_util::load_or_create_secret;
use thiserror::Error;

const KEY_FILE: &str = "identity.key";
const PAYMENT_KEY_FILE: &str = "payment.key";

/// A key file that cannot be used.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The file could not be read or created.
    #[error("cannot read or create {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file holds no valid key.
    #[error("key {path} is unreadable: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

fn secret(path: &Path, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, KeyError> {
    load_or_create_secret(path, make).map_err(|source| KeyError::Io { path: path.into(), source })
}

/// Loads the node's ed25519 identity from its data dir, creating it on first start.
pub fn load_or_create_identity(dir: &Path) -> Result<Keypair, KeyError> {
    let path = dir.join(KEY_FILE);
    let unreadable = |reason: String| KeyError::Unreadable { path: path.clone(), reason };
    let fresh = Keypair::generate_ed25519().to_protobuf_encoding().map_err(|e| unreadable(e.to_string()))?;
    let bytes = secret(&path, || fresh)?;
    Keypair::from_protobuf_encoding(&bytes).map_err(|e| unreadable(e.to_string()))
}

/// The node's payment secret key (created on first use); it signs channel closes.
pub fn load_payment_secret(dir: &Path) -> Result<secp256k1::SecretKey, KeyError> {
    let path = dir.join(PAYMENT_KEY_FILE);
    let bytes =
        secret(&path, || secp256k1::SecretKey::new(&mut secp256k1::rand::thread_rng()).secret_bytes().to_vec())?;
    secp256k1::SecretKey::from_slice(&bytes).map_err(|e| KeyError::Unreadable { path, reason: e.to_string() })
}

/// The compressed public half of the payment key, which offers carry so clients can pay the node.
pub fn payment_public_key(secret: &secp256k1::SecretKey) -> [u8; 33] {
    secp256k1::PublicKey::from_secret_key(&secp256k1::Secp256k1::signing_only(), secret).serialize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_identity(dir.path()).unwrap();
        let b = load_or_create_identity(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let p = load_payment_secret(dir.path()).unwrap();
        assert_eq!(p, load_payment_secret(dir.path()).unwrap());
        for f in [KEY_FILE, PAYMENT_KEY_FILE] {
            let mode = std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        std::fs::write(dir.path().join(PAYMENT_KEY_FILE), b"short").unwrap();
        assert!(matches!(load_payment_secret(dir.path()), Err(KeyError::Unreadable { .. })));
    }
}
