//! Multi-part files: a file made of parts that are files themselves (S3 multipart uploads), named
//! by `bb:multi:<manifest cap>`; the manifest lists each part's size and cap, in order.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::{CapError, LiteralCap, ReadCap};

/// Most parts in one file (S3's limit).
pub const MAX_PARTS: usize = 10_000;
/// Format version of an encoded [`Manifest`].
pub const MANIFEST_VERSION: u8 = 1;
/// Longest cap of one part.
/// (A literal part of 1 KiB has a cap of 1,646 characters.)
const MAX_PART_CAP: usize = 2048;

/// One part: its size and its cap (`bb:chk:` or `bb:lit:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Bytes.
    pub size: u64,
    /// The part's read cap text.
    pub cap: String,
}

/// The parts of a multi-part file, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Parts.
    pub parts: Vec<Part>,
}

/// Why a manifest was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Truncated, extended, of an unknown version, or breaking a bound.
    #[error("malformed manifest: {0}")]
    Malformed(&'static str),
    /// A part's cap is not a file cap, or disagrees with its size.
    #[error("malformed manifest: part {0} has a bad cap")]
    BadPart(usize),
}

/// The size a file cap says its file has.
pub fn cap_size(cap: &str) -> Option<u64> {
    if let Ok(r) = cap.parse::<ReadCap>() {
        return Some(r.size);
    }
    cap.parse::<LiteralCap>().ok().map(|l| l.data.len() as u64)
}

impl Manifest {
    /// The file's size.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }

    /// `version u8, count u32 LE, then per part: size u64 LE, cap length u16 LE, cap`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = vec![MANIFEST_VERSION];
        w.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for p in &self.parts {
            w.extend_from_slice(&p.size.to_le_bytes());
            w.extend_from_slice(&(p.cap.len() as u16).to_le_bytes());
            w.extend_from_slice(p.cap.as_bytes());
        }
        w
    }

    /// Strict decoder of [`Manifest::encode`]: every cap must be a file cap of its part's size.
    pub fn decode(b: &[u8]) -> Result<Self, ManifestError> {
        let bad = ManifestError::Malformed;
        let (&version, rest) = b.split_first().ok_or(bad("empty"))?;
        if version != MANIFEST_VERSION {
            return Err(bad("unsupported version"));
        }
        let count = u32::from_le_bytes(rest.get(..4).ok_or(bad("truncated"))?.try_into().map_err(|_| bad("count"))?);
        let count = count as usize;
        if count == 0 || count > MAX_PARTS {
            return Err(bad("part count"));
        }
        let mut at = &rest[4..];
        let mut parts = Vec::with_capacity(count.min(1024));
        for i in 0..count {
            let size = u64::from_le_bytes(at.get(..8).ok_or(bad("truncated"))?.try_into().map_err(|_| bad("size"))?);
            let len = u16::from_le_bytes(at.get(8..10).ok_or(bad("truncated"))?.try_into().map_err(|_| bad("cap"))?);
            let len = len as usize;
            if len > MAX_PART_CAP {
                return Err(bad("cap too long"));
            }
            let cap = at.get(10..10 + len).ok_or(bad("truncated"))?;
            let cap = String::from_utf8(cap.to_vec()).map_err(|_| ManifestError::BadPart(i))?;
            if cap_size(&cap) != Some(size) || cap.starts_with(MultiCap::PREFIX) {
                return Err(ManifestError::BadPart(i));
            }
            parts.push(Part { size, cap });
            at = &at[10 + len..];
        }
        if !at.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self { parts })
    }
}

/// The cap of a multi-part file: the cap of its manifest (itself a `bb:chk:` or `bb:lit:` file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiCap {
    /// The manifest's cap text.
    pub manifest: String,
}

impl MultiCap {
    const PREFIX: &'static str = "bb:multi:";
}

impl FromStr for MultiCap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, CapError> {
        let inner = s.strip_prefix(Self::PREFIX).ok_or(CapError::Prefix(Self::PREFIX))?;
        if cap_size(inner).is_none() {
            return Err(CapError::Base32("manifest cap"));
        }
        Ok(Self { manifest: inner.to_string() })
    }
}

impl fmt::Display for MultiCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_refuse_garbage() {
        let lit = LiteralCap { data: b"abc".to_vec() }.to_string();
        let chk = ReadCap { key: [1; 32], root: [2; 32], k: 3, n: 10, size: 5 << 20 }.to_string();
        let m = Manifest { parts: vec![Part { size: 5 << 20, cap: chk }, Part { size: 3, cap: lit.clone() }] };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(m.size(), (5 << 20) + 3);
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Manifest::decode(&extra).is_err());
        let wrong_size = Manifest { parts: vec![Part { size: 4, cap: lit.clone() }] };
        assert_eq!(Manifest::decode(&wrong_size.encode()), Err(ManifestError::BadPart(0)));
        assert!(Manifest::decode(&Manifest::default().encode()).is_err(), "no parts");
        let multi = MultiCap { manifest: lit };
        assert_eq!(multi.to_string().parse::<MultiCap>().unwrap(), multi);
        assert!("bb:multi:bb:nope".parse::<MultiCap>().is_err());
    }
}
