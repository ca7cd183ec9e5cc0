//! The byte form of a proof (version 1), as carried inside a wire response:
//! `version u8 | count u16 | count × (block u64 | chunk u32 | len u16 | data | inner u8 | inner × 32 |
//! outer u8 | outer × 32)`, little-endian. Decoding checks every length against the limits.

use bytes::Bytes;

use crate::{Position, Proof, ProofError, Sample, CHUNK_LEN, MAX_COUNT};
use blackbox_core::Hash;

/// Version byte of the proof encoding.
pub const PROOF_VERSION: u8 = 1;
/// Most inner (within-block) path entries: a 1 MiB block has 1,025 chunks, depth 11.
pub const MAX_INNER: usize = 16;
/// Most outer (block tree) path entries.
pub const MAX_OUTER: usize = 64;
/// Largest valid encoded proof (fits one wire message).
pub const MAX_PROOF_LEN: usize =
    3 + MAX_COUNT as usize * (8 + 4 + 2 + CHUNK_LEN + 1 + 32 * MAX_INNER + 1 + 32 * MAX_OUTER);

impl Proof {
    /// Encodes the proof.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.samples.len() * (CHUNK_LEN + 400));
        out.push(PROOF_VERSION);
        out.extend_from_slice(&(self.samples.len() as u16).to_le_bytes());
        for s in &self.samples {
            out.extend_from_slice(&s.position.block.to_le_bytes());
            out.extend_from_slice(&s.position.chunk.to_le_bytes());
            out.extend_from_slice(&(s.data.len() as u16).to_le_bytes());
            out.extend_from_slice(&s.data);
            for list in [&s.inner, &s.outer] {
                out.push(list.len() as u8);
                for h in list {
                    out.extend_from_slice(h);
                }
            }
        }
        out
    }

    /// Decodes a proof, refusing anything malformed, oversized or with trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProofError> {
        if bytes.len() > MAX_PROOF_LEN {
            return Err(ProofError::Malformed("too long"));
        }
        let mut r = Cursor { bytes, pos: 0 };
        if r.take(1)?[0] != PROOF_VERSION {
            return Err(ProofError::Malformed("unknown version"));
        }
        let count = r.u16()?;
        if count > MAX_COUNT {
            return Err(ProofError::Malformed("too many samples"));
        }
        let mut samples = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let block = u64::from_le_bytes(r.array()?);
            let chunk = u32::from_le_bytes(r.array()?);
            let len = r.u16()? as usize;
            if len == 0 || len > CHUNK_LEN {
                return Err(ProofError::Malformed("chunk length"));
            }
            let data = Bytes::copy_from_slice(r.take(len)?);
            let inner = r.hashes(MAX_INNER)?;
            let outer = r.hashes(MAX_OUTER)?;
            samples.push(Sample { position: Position { block, chunk }, data, inner, outer });
        }
        if r.pos != bytes.len() {
            return Err(ProofError::Malformed("trailing bytes"));
        }
        Ok(Proof { samples })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProofError> {
        let end =
            self.pos.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or(ProofError::Malformed("truncated"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProofError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, ProofError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn hashes(&mut self, max: usize) -> Result<Vec<Hash>, ProofError> {
        let n = self.take(1)?[0] as usize;
        if n > max {
            return Err(ProofError::Malformed("path too long"));
        }
        (0..n).map(|_| self.array()).collect()
    }
}
