//! Reading any file cap as a stream: immutable (`bb:chk:`), literal (`bb:lit:`) and multi-part
//! (`bb:multi:`, whose manifest lists part caps) files, any byte range, verified as it goes.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;

use blackbox_core::{LiteralCap, Manifest, MultiCap, ReadCap};
use blackbox_net::Transport;

use crate::{Client, ClientError};

/// Bytes of manifests kept in memory (a 1 GiB object of 8 MiB parts has a ~20 KiB manifest).
pub(crate) const MANIFEST_CACHE_BYTES: usize = 16 << 20;

/// Where a streamed read sends its pieces; a failure is the last item.
pub type Chunks = mpsc::Sender<Result<Bytes, ClientError>>;

impl<T: Transport> Client<T> {
    /// The manifest of a multi-part file.
    pub async fn manifest(&self, m: &MultiCap) -> Result<Arc<Manifest>, ClientError> {
        if let Ok(l) = m.manifest.parse::<LiteralCap>() {
            return Ok(Arc::new(Manifest::decode(&l.data)?));
        }
        let cap: ReadCap = m.manifest.parse()?;
        if let Some(m) = self.manifests.get(&cap.root) {
            return Ok(m);
        }
        let mut out = Vec::with_capacity(cap.size.min(1 << 20) as usize);
        self.download_small(&cap, &mut out).await?;
        let manifest = Arc::new(Manifest::decode(&out)?);
        self.manifests.put(cap.root, &manifest, out.len());
        Ok(manifest)
    }

    /// Stores a manifest of `parts` (inline when it is small) and returns the multi-part file's cap.
    pub async fn store_multi(
        &self,
        parts: Vec<blackbox_core::multi::Part>,
        opts: &crate::UploadOptions,
    ) -> Result<String, ClientError> {
        let manifest = Manifest { parts }.encode();
        let size = manifest.len() as u64;
        let cap = self.store_content(move || Ok(std::io::Cursor::new(manifest.clone())), size, opts).await?;
        Ok(MultiCap { manifest: cap }.to_string())
    }

    /// Streams bytes `offset..offset+len` of the file `cap` names into `tx`.
    pub async fn read_into(&self, cap: &str, range: (u64, u64), tx: Chunks) {
        if let Err(e) = self.read_chunks(cap, range, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    fn read_chunks<'a>(
        &'a self,
        cap: &'a str,
        (offset, len): (u64, u64),
        tx: &'a Chunks,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        async move {
            if let Ok(l) = cap.parse::<LiteralCap>() {
                let end = offset.checked_add(len).filter(|&e| e <= l.data.len() as u64);
                let end = end.ok_or(ClientError::RangeOutside { offset, len, size: l.data.len() as u64 })?;
                let piece = Bytes::copy_from_slice(&l.data[offset as usize..end as usize]);
                return tx.send(Ok(piece)).await.map_err(|_| ClientError::Cancelled);
            }
            if let Ok(r) = cap.parse::<ReadCap>() {
                return self.chunks_into(&r, (offset, len), tx).await.map(|_| ());
            }
            let m: MultiCap = cap.parse()?;
            let manifest = self.manifest(&m).await?;
            let (end, mut at) = (offset.saturating_add(len), 0u64);
            if end > manifest.size() {
                return Err(ClientError::RangeOutside { offset, len, size: manifest.size() });
            }
            for part in &manifest.parts {
                let (from, to) = (offset.max(at), end.min(at + part.size));
                if from < to {
                    self.read_chunks(&part.cap, (from - at, to - from), tx).await?;
                }
                at += part.size;
            }
            Ok(())
        }
        .boxed()
    }
}
