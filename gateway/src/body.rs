//! Request and response bodies: a request body is held until it is stored (in memory when small
//! and the memory budget allows, else in a private spool file, hashed as it arrives), then fed to
//! the upload pipeline, which may read it again to re-send shares; an object is streamed out as it
//! is read and verified.

use std::io::{Read, Write};
use std::sync::Arc;

use blackbox_core::dir::Entry;
use blackbox_core::{LiteralCap, MAX_LITERAL_LEN};
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use s3s::{s3_error, S3Error, S3Result};
use tokio::sync::OwnedSemaphorePermit;

use crate::ops::Gateway;
use crate::store::internal;

/// Bodies up to this long are held in memory (an `aws s3 cp` part is 8 MiB).
pub(crate) const MEMORY_BODY_MAX: u64 = 16 << 20;
/// Memory all bodies held at once may take, in MiB; a body that finds it spent goes to a file.
pub(crate) const MEMORY_BUDGET_MIB: usize = 128;

/// Where a body is kept until it is stored.
enum Held {
    /// The chunks as they arrived, with the share of the memory budget they take (none when empty).
    Memory { chunks: Arc<Vec<Bytes>>, _budget: Option<OwnedSemaphorePermit> },
    /// A private file in the spool directory, removed when dropped.
    File(tempfile::NamedTempFile),
}

/// A received body: where it is kept, its length and its MD5 (the S3 ETag).
pub(crate) struct Spooled {
    held: Held,
    /// Bytes received.
    pub size: u64,
    /// Lower-case hex MD5 of the bytes.
    pub etag: String,
}

/// A local I/O failure (spool file): logged here, answered without details.
fn local(e: std::io::Error) -> S3Error {
    tracing::warn!(error = %e, "gateway spool I/O failed");
    s3_error!(InternalError, "the gateway could not buffer the request body")
}

/// Reads chunks held in memory in order.
struct ChunkReader {
    chunks: Arc<Vec<Bytes>>,
    at: usize,
    offset: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(chunk) = self.chunks.get(self.at) {
            if self.offset < chunk.len() {
                let n = buf.len().min(chunk.len() - self.offset);
                buf[..n].copy_from_slice(&chunk[self.offset..self.offset + n]);
                self.offset += n;
                return Ok(n);
            }
            (self.at, self.offset) = (self.at + 1, 0);
        }
        Ok(0)
    }
}

impl Gateway {
    /// Receives a body of about `hint` bytes, hashing it; refuses bodies over the object limit.
    pub(crate) async fn spool_body(&self, body: Option<StreamingBlob>, hint: Option<u64>) -> S3Result<Spooled> {
        let mib = hint.filter(|&h| h <= MEMORY_BODY_MAX).map(|h| h.div_ceil(1 << 20).max(1) as u32);
        let permit = mib.and_then(|m| self.memory.clone().try_acquire_many_owned(m).ok());
        let reserved = permit.as_ref().map_or(0, |p| (p.num_permits() as u64) << 20);
        let (mut md5, mut size) = (Md5::new(), 0u64);
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut file: Option<std::io::BufWriter<tempfile::NamedTempFile>> = None;
        if let Some(mut body) = body {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|_| s3_error!(IncompleteBody))?;
                size += chunk.len() as u64;
                if size > self.max_object_size {
                    return Err(s3_error!(EntityTooLarge));
                }
                md5.update(&chunk);
                if file.is_none() && size > reserved {
                    // Longer than its memory share: everything so far, and the rest, go to a file.
                    let f = tempfile::NamedTempFile::new_in(&self.spool).map_err(local)?;
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                    for c in chunks.drain(..) {
                        w.write_all(&c).map_err(local)?;
                    }
                    file = Some(w);
                }
                match file.as_mut() {
                    Some(w) => w.write_all(&chunk).map_err(local)?,
                    None => chunks.push(chunk),
                }
            }
        }
        let etag = data_encoding::HEXLOWER.encode(&md5.finalize());
        let held = match file {
            Some(w) => Held::File(w.into_inner().map_err(|e| local(e.into_error()))?),
            // Within its reservation (an empty body needs none).
            None => Held::Memory { chunks: Arc::new(chunks), _budget: permit },
        };
        Ok(Spooled { held, size, etag })
    }

    /// Stores a received body: inline when small, uploaded otherwise; returns its cap.
    pub(crate) async fn store_body(&self, body: &Spooled) -> S3Result<String> {
        let size = body.size;
        if size as usize <= MAX_LITERAL_LEN {
            let mut data = Vec::with_capacity(size as usize);
            open(&body.held)?.read_to_end(&mut data).map_err(local)?;
            return Ok(LiteralCap { data }.to_string());
        }
        let client = &self.store.session.client;
        let _turn = self.uploads.acquire().await.map_err(|_| s3_error!(InternalError))?;
        let report = match &body.held {
            Held::Memory { chunks, .. } => {
                let chunks = chunks.clone();
                let open = move || Ok(ChunkReader { chunks: chunks.clone(), at: 0, offset: 0 });
                client.upload(open, size, &self.store.opts, Default::default()).await
            }
            Held::File(f) => {
                let path = f.path().to_path_buf();
                let open = move || std::fs::File::open(&path).map(|f| std::io::BufReader::with_capacity(1 << 20, f));
                client.upload(open, size, &self.store.opts, Default::default()).await
            }
        };
        Ok(report.map_err(internal)?.cap.to_string())
    }

    /// The body of `e`, bytes `range` of it, streamed as it is read and verified.
    pub(crate) fn body(&self, e: &Entry, range: std::ops::Range<u64>) -> StreamingBlob {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (session, cap) = (self.store.session.clone(), e.cap.clone());
        tokio::spawn(async move {
            session.client.read_into(&cap, (range.start, range.end - range.start), tx).await;
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        let stream = stream.map(|r| {
            r.map_err(|e| {
                tracing::warn!(error = %e, "reading an object failed part-way");
                std::io::Error::other("the object could not be read from the grid")
            })
        });
        StreamingBlob::wrap(stream)
    }
}

/// A reader over a held body, from its start.
fn open(held: &Held) -> S3Result<Box<dyn Read + '_>> {
    Ok(match held {
        Held::Memory { chunks, .. } => Box::new(ChunkReader { chunks: chunks.clone(), at: 0, offset: 0 }),
        Held::File(f) => Box::new(std::fs::File::open(f.path()).map_err(local)?),
    })
}

/// Bytes of a refused body read and dropped before answering.
const DRAIN_MAX: u64 = 16 << 20;

/// Reads and drops a request body the answer refuses (a client that sent `Expect: 100-continue`
/// may send it anyway, and its bytes must not be read as the next request); returns `e`. A body
/// longer than [`DRAIN_MAX`] is not read at all: the answer goes out and the connection closes.
pub(crate) async fn drain(body: Option<StreamingBlob>, e: S3Error) -> S3Error {
    use s3s::stream::ByteStream;
    let Some(mut body) = body else { return e };
    if body.remaining_length().exact().is_some_and(|n| n as u64 > DRAIN_MAX) {
        return e;
    }
    let mut left = DRAIN_MAX;
    while let Some(Ok(chunk)) = body.next().await {
        left = left.saturating_sub(chunk.len() as u64);
        if left == 0 {
            break;
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_reader_reads_all_chunks_in_order() {
        let chunks: Vec<Bytes> = vec![Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"cde")];
        let mut r = ChunkReader { chunks: Arc::new(chunks), at: 0, offset: 0 };
        let mut small = [0u8; 2];
        assert_eq!(r.read(&mut small).unwrap(), 2);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!((&small[..], &rest[..]), (&b"ab"[..], &b"cde"[..]));
    }
}
