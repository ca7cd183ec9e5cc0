//! Little-endian field encoding shared by the wire messages and signed offers.

use bytes::Bytes;

use crate::wire::{WireError, WIRE_VERSION};

/// Appends little-endian fields to a buffer.
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    /// A wire message: version byte, then `kind`.
    pub(crate) fn new(kind: u8) -> Self {
        Writer(vec![WIRE_VERSION, kind])
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32).raw(v)
    }
}

/// Reads little-endian fields from a buffer, failing on truncation.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, WireError> {
        if self.buf.len() - self.pos < n {
            return Err(WireError::Truncated);
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn bytes(&mut self) -> Result<Bytes, WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// A byte string of at most `max` bytes.
    pub(crate) fn bounded(&mut self, max: u32) -> Result<Bytes, WireError> {
        let len = self.count(max)? as usize;
        self.take(len)
    }
    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        out
    }
    pub(crate) fn count(&mut self, max: u32) -> Result<u32, WireError> {
        let c = self.u32()?;
        if c > max {
            return Err(WireError::Count(c as u64));
        }
        Ok(c)
    }
    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.pos != self.buf.len() {
            return Err(WireError::Trailing);
        }
        Ok(())
    }
}
