//! One segment at a time: encrypt + Reed-Solomon encode, and the reverse.

use bytes::Bytes;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::crypto::{decrypt_segment, encrypt_segment, FileKey, TAG_LEN};
use crate::{CoreError, FileLayout};

fn rs_err(e: reed_solomon_simd::Error) -> CoreError {
    CoreError::ReedSolomon(e.to_string())
}

/// Turns plaintext segments into `n` blocks each; keeps the Reed-Solomon engine between segments.
#[derive(Default)]
pub struct SegmentEncoder {
    rs: Option<ReedSolomonEncoder>,
}

impl SegmentEncoder {
    /// A fresh encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encrypts segment `index` and codes it into `n` blocks (data blocks first, then recovery).
    pub fn encode(
        &mut self,
        key: &FileKey,
        layout: &FileLayout,
        index: u64,
        plaintext: &[u8],
    ) -> Result<Vec<Bytes>, CoreError> {
        layout.check_segment(index)?;
        let expected = layout.segment_len(index);
        if plaintext.len() != expected {
            return Err(CoreError::WrongSegmentLength { index, expected, got: plaintext.len() });
        }
        let (k, n) = (layout.params.k(), layout.params.n());
        let bl = layout.block_len(index);
        let ct_len = expected + TAG_LEN;
        let mut buf = vec![0u8; k * bl];
        buf[..expected].copy_from_slice(plaintext);
        encrypt_segment(key, index, &mut buf[..ct_len]);
        // Data blocks are slices of the one encrypted buffer: no copy.
        let buf = Bytes::from(buf);
        let mut blocks: Vec<Bytes> = Vec::with_capacity(n);
        blocks.extend((0..k).map(|i| buf.slice(i * bl..(i + 1) * bl)));
        let recovery = self.recovery(k, n, bl, &blocks)?;
        blocks.extend(recovery);
        Ok(blocks)
    }

    /// The `n − k` recovery blocks of `k` data blocks of length `bl`.
    fn recovery(&mut self, k: usize, n: usize, bl: usize, data: &[Bytes]) -> Result<Vec<Bytes>, CoreError> {
        if n == k {
            return Ok(Vec::new());
        }
        let rs = match &mut self.rs {
            Some(rs) => {
                rs.reset(k, n - k, bl).map_err(rs_err)?;
                rs
            }
            None => self.rs.insert(ReedSolomonEncoder::new(k, n - k, bl).map_err(rs_err)?),
        };
        for block in data {
            rs.add_original_shard(block).map_err(rs_err)?;
        }
        let result = rs.encode().map_err(rs_err)?;
        Ok(result.recovery_iter().map(Bytes::copy_from_slice).collect())
    }
}

/// Rebuilds lost shares' blocks from any `k` verified blocks of a segment, bit-identical to the
/// originals, without the file key: Reed-Solomon works on the ciphertext, so a repairer holding
/// only the verify cap can restore redundancy.
#[derive(Default)]
pub struct SegmentRebuilder {
    decoder: SegmentDecoder,
    encoder: SegmentEncoder,
}

impl SegmentRebuilder {
    /// A fresh rebuilder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Blocks of segment `index` for the shares in `want`, from `(share number, block)` pairs.
    pub fn rebuild(
        &mut self,
        layout: &FileLayout,
        index: u64,
        blocks: &[(usize, &[u8])],
        want: &[usize],
    ) -> Result<Vec<Bytes>, CoreError> {
        let (k, n) = (layout.params.k(), layout.params.n());
        if let Some(&share) = want.iter().find(|&&s| s >= n) {
            return Err(CoreError::ShareOutOfRange { share, n });
        }
        let bl = layout.block_len(index);
        let data = Bytes::from(self.decoder.data_blocks(layout, index, blocks)?);
        let originals: Vec<Bytes> = (0..k).map(|i| data.slice(i * bl..(i + 1) * bl)).collect();
        let recovery =
            if want.iter().any(|&s| s >= k) { self.encoder.recovery(k, n, bl, &originals)? } else { Vec::new() };
        Ok(want.iter().map(|&s| if s < k { originals[s].clone() } else { recovery[s - k].clone() }).collect())
    }
}

/// Rebuilds plaintext segments from any `k` verified blocks.
#[derive(Default)]
pub struct SegmentDecoder {
    rs: Option<ReedSolomonDecoder>,
}

impl SegmentDecoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes segment `index` from `(share number, block)` pairs and decrypts it.
    ///
    /// Blocks must already be verified against their share's hash tree. When the `k` data blocks
    /// are all present no Reed-Solomon decoding is done.
    pub fn decode(
        &mut self,
        key: &FileKey,
        layout: &FileLayout,
        index: u64,
        blocks: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, CoreError> {
        let mut buf = self.data_blocks(layout, index, blocks)?;
        let seg_len = layout.segment_len(index);
        buf.truncate(seg_len + TAG_LEN);
        let len = decrypt_segment(key, index, &mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }

    /// The `k` data blocks of segment `index` back to back (the padded ciphertext), restored from
    /// any `k` blocks.
    fn data_blocks(
        &mut self,
        layout: &FileLayout,
        index: u64,
        blocks: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, CoreError> {
        layout.check_segment(index)?;
        let (k, n) = (layout.params.k(), layout.params.n());
        let bl = layout.block_len(index);
        let mut originals: Vec<Option<&[u8]>> = vec![None; k];
        let mut recovery: Vec<(usize, &[u8])> = Vec::new();
        for &(share, block) in blocks {
            if share >= n {
                return Err(CoreError::ShareOutOfRange { share, n });
            }
            if block.len() != bl {
                return Err(CoreError::WrongBlockLength { share, index, expected: bl, got: block.len() });
            }
            if share < k {
                originals[share] = Some(block);
            } else if !recovery.iter().any(|&(s, _)| s == share - k) {
                recovery.push((share - k, block));
            }
        }
        let present = originals.iter().filter(|o| o.is_some()).count();
        let mut buf = Vec::with_capacity(k * bl);
        if present == k {
            for block in originals.iter().flatten() {
                buf.extend_from_slice(block);
            }
        } else {
            let have = present + recovery.len();
            if have < k {
                return Err(CoreError::NotEnoughBlocks { index, have, need: k });
            }
            let rs = match &mut self.rs {
                Some(rs) => {
                    rs.reset(k, n - k, bl).map_err(rs_err)?;
                    rs
                }
                None => self.rs.insert(ReedSolomonDecoder::new(k, n - k, bl).map_err(rs_err)?),
            };
            for (i, block) in originals.iter().enumerate() {
                if let Some(block) = block {
                    rs.add_original_shard(i, block).map_err(rs_err)?;
                }
            }
            for &(i, block) in recovery.iter().take(k - present) {
                rs.add_recovery_shard(i, block).map_err(rs_err)?;
            }
            let result = rs.decode().map_err(rs_err)?;
            let mut restored: Vec<Option<&[u8]>> = vec![None; k];
            for (i, block) in result.restored_original_iter() {
                restored[i] = Some(block);
            }
            for i in 0..k {
                let block = originals[i].or(restored[i]).ok_or(CoreError::NotEnoughBlocks { index, have, need: k })?;
                buf.extend_from_slice(block);
            }
        }
        Ok(buf)
    }
}
