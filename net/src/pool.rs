//! Recycled receive buffers for large frames.
//!
//! Reading a frame into a fresh buffer means zeroing it first (safe Rust cannot read into
//! uninitialised memory); for block-sized frames that zeroing cost a storage node ~10% of its CPU.
//! A buffer here is zeroed once when first allocated and then reused: the `Bytes` handed out
//! returns it to the pool when the last slice of it is dropped.

use std::sync::Mutex;

use bytes::Bytes;

use crate::wire::MAX_MESSAGE;

/// Frames at least this long use a pooled buffer.
pub(crate) const POOL_MIN: usize = 64 << 10;
/// Idle buffers kept per process (each `MAX_MESSAGE` bytes).
const POOL_MAX_IDLE: usize = 16;

static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A full-size buffer of which the first `len` bytes are the frame.
pub(crate) struct PoolBuf {
    buf: Vec<u8>,
    len: usize,
}

impl PoolBuf {
    /// A buffer for a frame of `len <= MAX_MESSAGE` bytes (contents are stale, not zero).
    pub(crate) fn take(len: usize) -> Self {
        let reused = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let buf = reused.unwrap_or_else(|| vec![0u8; MAX_MESSAGE]);
        Self { buf, len: len.min(MAX_MESSAGE) }
    }

    /// The frame's bytes, to be filled by the reader.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    /// Turns the filled buffer into `Bytes` that go back to the pool when dropped.
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PoolBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.len() == MAX_MESSAGE {
            let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < POOL_MAX_IDLE {
                idle.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_sized() {
        let mut a = PoolBuf::take(100_000);
        a.as_mut().fill(7);
        let bytes = a.freeze();
        assert_eq!(bytes.len(), 100_000);
        assert!(bytes.iter().all(|&b| b == 7));
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(slice.as_ref(), &[7u8; 10]);
        drop(slice);
        let b = PoolBuf::take(5);
        assert_eq!(b.as_ref().len(), 5);
    }
}
