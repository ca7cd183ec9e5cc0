//! Literal caps: a small file's bytes carried in the capability itself (`bb:lit:<base32>`), so
//! it needs no shares, no nodes and no lease.

use std::fmt;
use std::str::FromStr;

use crate::cap::{base32, CapError};

/// Largest file stored as a literal cap.
pub const MAX_LITERAL_LEN: usize = 1024;

/// A file whose whole content is in its cap.
#[derive(Clone, PartialEq, Eq)]
pub struct LiteralCap {
    /// The file's bytes (at most [`MAX_LITERAL_LEN`]).
    pub data: Vec<u8>,
}

impl LiteralCap {
    const PREFIX: &'static str = "bb:lit:";
}

impl FromStr for LiteralCap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, CapError> {
        let rest = s.strip_prefix(Self::PREFIX).ok_or(CapError::Prefix(Self::PREFIX))?;
        if rest.len() > MAX_LITERAL_LEN * 8 / 5 + 1 {
            return Err(CapError::Base32("data"));
        }
        let data = base32().decode(rest.as_bytes()).map_err(|_| CapError::Base32("data"))?;
        // One spelling per file: reject non-canonical trailing bits.
        if data.len() > MAX_LITERAL_LEN || base32().encode(&data) != rest {
            return Err(CapError::Base32("data"));
        }
        Ok(Self { data })
    }
}

impl fmt::Display for LiteralCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, base32().encode(&self.data))
    }
}

impl fmt::Debug for LiteralCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LiteralCap({} bytes)", self.data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_caps_round_trip_strictly() {
        for len in [0usize, 1, 5, 31, 1024] {
            let cap = LiteralCap { data: (0..len).map(|i| i as u8).collect() };
            assert_eq!(cap.to_string().parse::<LiteralCap>().unwrap(), cap);
        }
        assert_eq!(LiteralCap { data: b"hi".to_vec() }.to_string(), "bb:lit:nbuq");
        assert!("bb:lit:nbur".parse::<LiteralCap>().is_err(), "non-canonical tail bits");
        assert!("bb:lit:NBUQ".parse::<LiteralCap>().is_err());
        assert!("bb:chk:nbuq".parse::<LiteralCap>().is_err());
        let long = LiteralCap { data: vec![0; 1025] };
        assert!(long.to_string().parse::<LiteralCap>().is_err());
    }
}
