//! Share layout and the share header record every share carries.

use bytes::Bytes;

use crate::cap::ReadCap;
use crate::crypto::{FileKey, TAG_LEN};
use crate::erasure::SegmentEncoder;
use crate::hashtree;
use crate::{CoreError, EncodingParams, Hash};

/// Version of the share format: segment encryption, block layout, padding, hash trees and the
/// Reed-Solomon code of `reed-solomon-simd` 3.1.0. Bump it when any of these change.
pub const FORMAT_VERSION: u8 = 1;

/// Fixed part of an encoded header, before the share roots.
const HEADER_FIXED_LEN: usize = 16;

/// Largest possible encoded header (n = 255).
pub const MAX_HEADER_LEN: usize = HEADER_FIXED_LEN + 32 * 255;

/// Blocks are padded to a multiple of this many bytes (pinned by the format).
const BLOCK_ALIGN: usize = 64;

/// Sizes of segments and blocks of one file, derived from its parameters and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLayout {
    /// The encoding parameters.
    pub params: EncodingParams,
    /// Plaintext length in bytes.
    pub size: u64,
}

impl FileLayout {
    /// Layout of a file of `size` bytes coded with `params`.
    pub fn new(params: EncodingParams, size: u64) -> Self {
        Self { params, size }
    }

    /// Number of segments; an empty file still has one (empty) segment.
    pub fn num_segments(&self) -> u64 {
        self.size.div_ceil(self.params.segment_size() as u64).max(1)
    }

    /// Plaintext length of segment `index`.
    pub fn segment_len(&self, index: u64) -> usize {
        let seg = self.params.segment_size() as u64;
        let start = index * seg;
        (self.size.saturating_sub(start)).min(seg) as usize
    }

    /// Length of every block (of every share) of segment `index`.
    pub fn block_len(&self, index: u64) -> usize {
        let ct = self.segment_len(index) + TAG_LEN;
        ct.div_ceil(self.params.k()).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN
    }

    /// Total bytes of one share.
    pub fn share_len(&self) -> u64 {
        let last = self.num_segments() - 1;
        last * self.block_len(0) as u64 + self.block_len(last) as u64
    }

    /// Byte offset of block `index` within a share.
    pub fn block_offset(&self, index: u64) -> u64 {
        index * self.block_len(0) as u64
    }

    /// Checks that a segment index exists.
    pub fn check_segment(&self, index: u64) -> Result<(), CoreError> {
        let count = self.num_segments();
        if index >= count {
            return Err(CoreError::SegmentOutOfRange { index, count });
        }
        Ok(())
    }
}

/// What every share of a file stores besides its blocks: the parameters and all share roots.
///
/// Its hash is the file root carried by capabilities, so a reader checks it against the cap and then
/// checks each share's blocks against that share's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeader {
    /// Encoding parameters of the file.
    pub params: EncodingParams,
    /// Plaintext length.
    pub size: u64,
    /// Root of every share's hash tree, indexed by share number.
    pub share_roots: Vec<Hash>,
}

impl ShareHeader {
    /// The layout this header describes.
    pub fn layout(&self) -> FileLayout {
        FileLayout::new(self.params, self.size)
    }

    /// Encodes as `version u8, k u8, n u8, 0u8, segment_size u32 LE, size u64 LE, n × 32-byte roots`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_FIXED_LEN + 32 * self.share_roots.len());
        out.push(FORMAT_VERSION);
        out.push(self.params.k() as u8);
        out.push(self.params.n() as u8);
        out.push(0);
        out.extend_from_slice(&self.params.segment_size().to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        for root in &self.share_roots {
            out.extend_from_slice(root);
        }
        out
    }

    /// Strict decoder: exact length, known version, valid parameters, zero reserved byte.
    pub fn decode(bytes: &[u8]) -> Result<Self, CoreError> {
        if bytes.len() < HEADER_FIXED_LEN || bytes.len() > MAX_HEADER_LEN {
            return Err(CoreError::MalformedHeader("bad length"));
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(CoreError::UnsupportedVersion(bytes[0]));
        }
        let (k, n) = (bytes[1] as usize, bytes[2] as usize);
        if bytes[3] != 0 {
            return Err(CoreError::MalformedHeader("reserved byte is not zero"));
        }
        let seg = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[8..16]);
        let params = EncodingParams::new(k, n, seg).map_err(|_| CoreError::MalformedHeader("invalid parameters"))?;
        let roots = &bytes[HEADER_FIXED_LEN..];
        if roots.len() != 32 * n {
            return Err(CoreError::MalformedHeader("share root count does not match n"));
        }
        let share_roots = roots
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self { params, size: u64::from_le_bytes(size), share_roots })
    }

    /// The file root: what capabilities carry.
    pub fn root(&self) -> Hash {
        file_root(&self.encode())
    }
}

/// Hash of an encoded share header: the root that read and verify caps carry.
pub fn file_root(encoded_header: &[u8]) -> Hash {
    blake3::derive_key("blackbox 2026 file root v1", encoded_header)
}

/// Collects leaf hashes of one share as its blocks go by, then yields its share root.
#[derive(Debug, Default, Clone)]
pub struct ShareRootBuilder {
    leaves: Vec<Hash>,
}

impl ShareRootBuilder {
    /// Records the next block.
    pub fn push(&mut self, block: &[u8]) {
        self.leaves.push(hashtree::leaf(block));
    }

    /// Leaf hashes so far.
    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// Share root over the blocks pushed so far.
    pub fn root(&self) -> Hash {
        hashtree::share_root(&self.leaves)
    }
}

/// Streaming encoder of one file: feed the segments in order, get `n` blocks for each.
///
/// Memory is one segment plus 32 bytes per block of hash state.
pub struct FileEncoder {
    key: FileKey,
    layout: FileLayout,
    next: u64,
    coder: SegmentEncoder,
    shares: Vec<ShareRootBuilder>,
}

impl FileEncoder {
    /// Starts encoding a file of `size` bytes with `key`.
    pub fn new(key: FileKey, params: EncodingParams, size: u64) -> Self {
        Self {
            key,
            layout: FileLayout::new(params, size),
            next: 0,
            coder: SegmentEncoder::new(),
            shares: vec![ShareRootBuilder::default(); params.n()],
        }
    }

    /// The layout of the file being encoded.
    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    /// Index of the next segment to feed.
    pub fn next_segment(&self) -> u64 {
        self.next
    }

    /// Whether every segment has been fed.
    pub fn is_done(&self) -> bool {
        self.next >= self.layout.num_segments()
    }

    /// Encodes the next segment (exactly `layout().segment_len(next_segment())` bytes) into `n` blocks.
    pub fn encode_next(&mut self, plaintext: &[u8]) -> Result<Vec<Bytes>, CoreError> {
        if self.is_done() {
            return Err(CoreError::TooMuchData);
        }
        let blocks = self.coder.encode(&self.key, &self.layout, self.next, plaintext)?;
        for (builder, block) in self.shares.iter_mut().zip(&blocks) {
            builder.push(block);
        }
        self.next += 1;
        Ok(blocks)
    }

    /// After the last segment: the share header (all share roots) and the read cap.
    pub fn finish(self) -> Result<(ShareHeader, ReadCap), CoreError> {
        if !self.is_done() {
            return Err(CoreError::SegmentOutOfRange { index: self.next, count: self.layout.num_segments() });
        }
        let header = ShareHeader {
            params: self.layout.params,
            size: self.layout.size,
            share_roots: self.shares.iter().map(ShareRootBuilder::root).collect(),
        };
        let cap = ReadCap {
            key: self.key,
            root: header.root(),
            k: self.layout.params.k() as u8,
            n: self.layout.params.n() as u8,
            size: self.layout.size,
        };
        Ok((header, cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sizes() {
        let p = EncodingParams::new(3, 10, 4096).unwrap();
        let l = FileLayout::new(p, 10_000);
        assert_eq!(l.num_segments(), 3);
        assert_eq!(l.segment_len(0), 4096);
        assert_eq!(l.segment_len(2), 10_000 - 8192);
        assert_eq!(l.block_len(0), (4096usize + 16).div_ceil(3).div_ceil(64) * 64);
        assert_eq!(FileLayout::new(p, 0).num_segments(), 1);
        assert_eq!(FileLayout::new(p, 0).segment_len(0), 0);
        assert_eq!(FileLayout::new(p, 0).block_len(0), 64);
    }

    /// Golden bytes pin the header format.
    #[test]
    fn header_golden_bytes() {
        let h = ShareHeader {
            params: EncodingParams::new(1, 2, 4096).unwrap(),
            size: 5,
            share_roots: vec![[0xaa; 32], [0xbb; 32]],
        };
        let enc = h.encode();
        let mut want = vec![1u8, 1, 2, 0, 0x00, 0x10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0];
        want.extend([0xaa; 32]);
        want.extend([0xbb; 32]);
        assert_eq!(enc, want);
        assert_eq!(ShareHeader::decode(&enc).unwrap(), h);
        assert!(ShareHeader::decode(&enc[..enc.len() - 1]).is_err());
        let mut bad = enc.clone();
        bad[0] = 9;
        assert_eq!(ShareHeader::decode(&bad), Err(CoreError::UnsupportedVersion(9)));
        let mut bad = enc;
        bad[3] = 1;
        assert!(ShareHeader::decode(&bad).is_err());
    }
}

/// Checks blocks of one share against its leaf hashes, which are first checked against the header.
#[derive(Debug, Clone)]
pub struct ShareVerifier {
    leaves: Vec<Hash>,
}

impl ShareVerifier {
    /// Accepts `leaves` only if they hash to the root the header records for `share`.
    pub fn new(header: &ShareHeader, share: usize, leaves: Vec<Hash>) -> Option<Self> {
        let expected = header.share_roots.get(share)?;
        let right_count = leaves.len() as u64 == header.layout().num_segments();
        (right_count && hashtree::share_root(&leaves) == *expected).then_some(Self { leaves })
    }

    /// Whether `block` is the genuine block `index` of this share.
    pub fn check(&self, index: u64, block: &[u8]) -> bool {
        usize::try_from(index).ok().and_then(|i| self.leaves.get(i)).is_some_and(|leaf| hashtree::leaf(block) == *leaf)
    }

    /// The verified leaf hashes.
    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }
}
