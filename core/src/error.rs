use thiserror::Error;

/// Errors of the pure pipeline: bad parameters, undecodable segments, malformed records.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    /// The k-of-n parameters are out of range.
    #[error("invalid encoding: need 1 <= k <= n <= 255, got k={k}, n={n}")]
    InvalidKn { k: usize, n: usize },
    /// The segment size is out of range or not a multiple of 64.
    #[error("invalid segment size {0}: must be a multiple of 64 between {min} and {max}", min = crate::MIN_SEGMENT_SIZE, max = crate::MAX_SEGMENT_SIZE)]
    InvalidSegmentSize(u32),
    /// A segment index is past the end of the file.
    #[error("segment {index} is out of range (file has {count} segments)")]
    SegmentOutOfRange { index: u64, count: u64 },
    /// The plaintext handed to the encoder has the wrong length for its segment.
    #[error("segment {index} should be {expected} bytes, got {got}")]
    WrongSegmentLength { index: u64, expected: usize, got: usize },
    /// A block has the wrong length for its segment.
    #[error("block of share {share} in segment {index} should be {expected} bytes, got {got}")]
    WrongBlockLength { share: usize, index: u64, expected: usize, got: usize },
    /// Fewer than k distinct blocks were supplied to decode a segment.
    #[error("segment {index}: have {have} distinct blocks, need {need}")]
    NotEnoughBlocks { index: u64, have: usize, need: usize },
    /// A share number is not below n.
    #[error("share number {share} is out of range for n={n}")]
    ShareOutOfRange { share: usize, n: usize },
    /// AEAD authentication failed: wrong key or corrupted ciphertext.
    #[error("segment {0} failed authentication (wrong key or corrupted data)")]
    Decrypt(u64),
    /// Reed-Solomon coding failed.
    #[error("reed-solomon: {0}")]
    ReedSolomon(String),
    /// A share header could not be decoded.
    #[error("malformed share header: {0}")]
    MalformedHeader(&'static str),
    /// A share header has a format version this build does not know.
    #[error("unsupported share format version {0}")]
    UnsupportedVersion(u8),
    /// More segments were fed to an encoder than the file has.
    #[error("encoder received more data than the declared file size")]
    TooMuchData,
}
