use crate::CoreError;

/// Default segment size: 1 MiB of plaintext.
pub const DEFAULT_SEGMENT_SIZE: u32 = 1 << 20;
/// Lease of a stored share when none is asked for, in seconds (31 days): the one default that
/// nodes grant, clients ask for and the auditor renews to.
pub const DEFAULT_LEASE_SECS: u32 = 31 * 86_400;
/// Smallest accepted segment size.
pub const MIN_SEGMENT_SIZE: u32 = 4096;
/// Largest accepted segment size; keeps every block under the wire message limit.
pub const MAX_SEGMENT_SIZE: u32 = 1 << 20;

/// How a file is coded: any `k` of `n` shares rebuild it; plaintext is cut in `segment_size` pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingParams {
    k: u8,
    n: u8,
    segment_size: u32,
}

impl EncodingParams {
    /// Checks `1 <= k <= n <= 255` and the segment size range.
    pub fn new(k: usize, n: usize, segment_size: u32) -> Result<Self, CoreError> {
        if k == 0 || k > n || n > 255 {
            return Err(CoreError::InvalidKn { k, n });
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) || !segment_size.is_multiple_of(64) {
            return Err(CoreError::InvalidSegmentSize(segment_size));
        }
        Ok(Self { k: k as u8, n: n as u8, segment_size })
    }

    /// Shares needed to rebuild the file.
    pub fn k(&self) -> usize {
        self.k as usize
    }

    /// Total shares produced.
    pub fn n(&self) -> usize {
        self.n as usize
    }

    /// Plaintext bytes per segment (the last one may be shorter).
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }
}

impl Default for EncodingParams {
    fn default() -> Self {
        Self { k: 3, n: 10, segment_size: DEFAULT_SEGMENT_SIZE }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range() {
        assert!(EncodingParams::new(0, 10, DEFAULT_SEGMENT_SIZE).is_err());
        assert!(EncodingParams::new(11, 10, DEFAULT_SEGMENT_SIZE).is_err());
        assert!(EncodingParams::new(3, 256, DEFAULT_SEGMENT_SIZE).is_err());
        assert!(EncodingParams::new(3, 10, 100).is_err());
        assert!(EncodingParams::new(3, 10, MAX_SEGMENT_SIZE * 2).is_err());
        assert!(EncodingParams::new(255, 255, DEFAULT_SEGMENT_SIZE).is_ok());
        assert!(EncodingParams::new(1, 1, MIN_SEGMENT_SIZE).is_ok());
    }
}
