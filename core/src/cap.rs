//! Capability strings: the only keys to data.
//!
//! Read cap: `bb:chk:<key>:<root>:<k>:<n>:<size>`; verify cap:
//! `bb:chk-verify:<storage index>:<root>:<k>:<n>:<size>`. 32-byte values are lowercase RFC 4648
//! base32 without padding (52 characters).

use std::fmt;
use std::str::FromStr;

use data_encoding::{Encoding, Specification};
use thiserror::Error;

use crate::crypto::{storage_index, FileKey, StorageIndex};
use crate::{EncodingParams, Hash};

/// Why a capability string was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CapError {
    /// Not of the form `bb:chk:...` / `bb:chk-verify:...`.
    #[error("not a blackbox capability: expected it to start with `{0}`")]
    Prefix(&'static str),
    /// Wrong number of `:`-separated fields.
    #[error("capability has {got} fields, expected {expected}")]
    FieldCount { got: usize, expected: usize },
    /// A 32-byte field is not 52 characters of lowercase base32.
    #[error("capability field `{0}` is not a 52-character canonical lowercase base32 value")]
    Base32(&'static str),
    /// A number field is not a plain decimal number in range.
    #[error("capability field `{0}` is not a valid decimal number")]
    Number(&'static str),
    /// k and n violate `1 <= k <= n <= 255`.
    #[error("capability has invalid encoding k={k}, n={n} (need 1 <= k <= n <= 255)")]
    Kn { k: u64, n: u64 },
}

pub(crate) fn base32() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.encoding().unwrap_or_else(|_| unreachable!("static base32 specification is valid"))
}

pub(crate) fn encode32(bytes: &[u8; 32]) -> String {
    base32().encode(bytes)
}

pub(crate) fn decode32(s: &str, field: &'static str) -> Result<[u8; 32], CapError> {
    if s.len() != 52 {
        return Err(CapError::Base32(field));
    }
    let v = base32().decode(s.as_bytes()).map_err(|_| CapError::Base32(field))?;
    // Reject non-canonical encodings (non-zero trailing bits) so each cap has one spelling.
    let out: [u8; 32] = v.try_into().map_err(|_| CapError::Base32(field))?;
    if encode32(&out) != s {
        return Err(CapError::Base32(field));
    }
    Ok(out)
}

fn number(s: &str, field: &'static str, max: u64) -> Result<u64, CapError> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(CapError::Number(field));
    }
    let v: u64 = s.parse().map_err(|_| CapError::Number(field))?;
    if v > max {
        return Err(CapError::Number(field));
    }
    Ok(v)
}

/// Parses the shared tail `<32 bytes>:<root>:<k>:<n>:<size>` of both cap kinds.
fn parse_fields(s: &str, prefix: &'static str, first: &'static str) -> Result<([u8; 32], Hash, u8, u8, u64), CapError> {
    let rest = s.strip_prefix(prefix).ok_or(CapError::Prefix(prefix))?;
    let fields: Vec<&str> = rest.split(':').collect();
    if fields.len() != 5 {
        return Err(CapError::FieldCount { got: fields.len() + 2, expected: 7 });
    }
    let a = decode32(fields[0], first)?;
    let root = decode32(fields[1], "root")?;
    let k = number(fields[2], "k", 255)?;
    let n = number(fields[3], "n", 255)?;
    if k == 0 || k > n {
        return Err(CapError::Kn { k, n });
    }
    let size = number(fields[4], "size", u64::MAX)?;
    Ok((a, root, k as u8, n as u8, size))
}

/// Read capability of an immutable file: enough to find, verify and decrypt it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadCap {
    /// Symmetric file key.
    pub key: FileKey,
    /// File root (hash of the share header).
    pub root: Hash,
    /// Shares needed.
    pub k: u8,
    /// Shares made.
    pub n: u8,
    /// Plaintext length.
    pub size: u64,
}

impl ReadCap {
    const PREFIX: &'static str = "bb:chk:";

    /// Where the shares live.
    pub fn storage_index(&self) -> StorageIndex {
        storage_index(&self.key)
    }

    /// The verify cap this read cap implies (the reverse is impossible).
    pub fn verify_cap(&self) -> VerifyCap {
        VerifyCap { storage_index: self.storage_index(), root: self.root, k: self.k, n: self.n, size: self.size }
    }
}

impl fmt::Display for ReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}:{}:{}:{}:{}",
            Self::PREFIX,
            encode32(&self.key),
            encode32(&self.root),
            self.k,
            self.n,
            self.size
        )
    }
}

impl fmt::Debug for ReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key in debug output.
        write!(f, "ReadCap({})", self.verify_cap())
    }
}

impl FromStr for ReadCap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, CapError> {
        let (key, root, k, n, size) = parse_fields(s.trim(), Self::PREFIX, "key")?;
        Ok(Self { key, root, k, n, size })
    }
}

/// Verify capability: check and rebuild shares without being able to decrypt.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifyCap {
    /// Where the shares live.
    pub storage_index: StorageIndex,
    /// File root (hash of the share header).
    pub root: Hash,
    /// Shares needed.
    pub k: u8,
    /// Shares made.
    pub n: u8,
    /// Plaintext length.
    pub size: u64,
}

impl VerifyCap {
    const PREFIX: &'static str = "bb:chk-verify:";

    /// Whether `params` agree with the k and n this cap names.
    pub fn matches(&self, params: &EncodingParams) -> bool {
        params.k() == self.k as usize && params.n() == self.n as usize
    }
}

impl fmt::Display for VerifyCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}:{}:{}:{}:{}",
            Self::PREFIX,
            encode32(&self.storage_index),
            encode32(&self.root),
            self.k,
            self.n,
            self.size
        )
    }
}

impl FromStr for VerifyCap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, CapError> {
        let (storage_index, root, k, n, size) = parse_fields(s.trim(), Self::PREFIX, "storage index")?;
        Ok(Self { storage_index, root, k, n, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cap() -> ReadCap {
        ReadCap { key: [1; 32], root: [2; 32], k: 3, n: 10, size: 12345 }
    }

    #[test]
    fn text_round_trip() {
        let c = cap();
        let s = c.to_string();
        assert!(s.starts_with("bb:chk:"));
        assert_eq!(s.parse::<ReadCap>().unwrap(), c);
        let v = c.verify_cap();
        assert_eq!(v.to_string().parse::<VerifyCap>().unwrap(), v);
        assert!(v.to_string().parse::<ReadCap>().is_err());
        assert!(!format!("{c:?}").contains(&encode32(&c.key)));
    }

    #[test]
    fn rejects_malformed() {
        let good = cap().to_string();
        let bad = [
            "".to_string(),
            "bb:chk:".to_string(),
            good.replace("bb:chk:", "bb:chx:"),
            format!("{good}:1"),
            good.replace(":3:10:", ":0:10:"),
            good.replace(":3:10:", ":11:10:"),
            good.replace(":3:10:", ":3:256:"),
            good.replace(":3:10:", ":03:10:"),
            good.replace(":3:10:", ":+3:10:"),
            good.replacen('a', "A", 1),
            good.replace(":12345", ":-1"),
            good.replace(":12345", ":99999999999999999999999"),
        ];
        for b in bad {
            assert!(b.parse::<ReadCap>().is_err(), "accepted {b:?}");
        }
    }

    proptest! {
        #[test]
        fn any_cap_round_trips(key: [u8; 32], root: [u8; 32], k in 1u8..=255, extra in 0u8..=255, size: u64) {
            let n = k.saturating_add(extra);
            let c = ReadCap { key, root, k, n, size };
            prop_assert_eq!(c.to_string().parse::<ReadCap>().unwrap(), c);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,200}") {
            let _ = s.parse::<ReadCap>();
            let _ = s.parse::<VerifyCap>();
        }
    }
}
