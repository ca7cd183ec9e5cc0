//! Byte counts as users write them: `123`, `64KiB`, `1.5 GB`, `10gib`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A byte count written as an integer or a string like `"10 GiB"` / `"500MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    /// The number part is not a number.
    #[error("invalid size `{0}`")]
    Number(String),
    /// The unit is not one of B, KiB, MiB, GiB, TiB, KB, MB, GB, TB.
    #[error("unknown unit in size `{0}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")]
    Unit(String),
    /// Negative or more than 2^64 - 1 bytes.
    #[error("size `{0}` out of range")]
    Range(String),
}

impl ByteSize {
    /// Parses `123`, `64KiB`, `1.5 GB`, `10gib`…
    pub fn parse(s: &str) -> Result<Self, SizeError> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = (&s[..split], s[split..].trim().to_ascii_lowercase());
        let value: f64 = num.parse().map_err(|_| SizeError::Number(s.into()))?;
        let mult: u64 = match unit.as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => return Err(SizeError::Unit(s.into())),
        };
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(SizeError::Range(s.into()));
        }
        Ok(Self(bytes as u64))
    }
}

impl std::str::FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, SizeError> {
        Self::parse(s)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, size) in units {
            if self.0 >= size {
                return write!(f, "{:.1} {name}", self.0 as f64 / size as f64);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(v) => Ok(ByteSize(v)),
            Raw::Text(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("123").unwrap().0, 123);
        assert_eq!(ByteSize::parse("64KiB").unwrap().0, 65536);
        assert_eq!(ByteSize::parse("1.5 GB").unwrap().0, 1_500_000_000);
        assert_eq!(ByteSize::parse("10gib").unwrap().0, 10 << 30);
        assert_eq!(ByteSize::parse("ten"), Err(SizeError::Number("ten".into())));
        assert!(matches!(ByteSize::parse("5 parsecs"), Err(SizeError::Unit(_))));
        assert_eq!(ByteSize(3 << 30).to_string(), "3.0 GiB");
    }
}
