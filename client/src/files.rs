//! Storing and fetching files through a [`Session`]: every operation records what it saw of the
//! nodes in the reputation file, and a put adds the file to the watch list (verify cap and
//! placements only) for audits, renewals and repair.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blackbox_core::{EncodingParams, ReadCap, VerifyCap};
use blackbox_util::{now_secs, AtomicFile};

use crate::watch::WatchList;
use crate::{CheckReport, ClientError, Session, UploadOptions, UploadReport, VerifyReport};

/// What a user may override of the config's encoding for one put.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// Shares needed to rebuild (k).
    pub needed: Option<usize>,
    /// Shares made (n).
    pub total: Option<usize>,
    /// Distinct nodes that must hold shares (capped at n, at least k).
    pub happy: Option<usize>,
    /// Plaintext bytes per segment.
    pub segment_size: Option<u64>,
}

/// A read or verify cap, as the verify cap (what audits, checks and repairs need).
pub fn parse_any_cap(s: &str) -> Result<VerifyCap, ClientError> {
    if let Ok(read) = s.parse::<ReadCap>() {
        return Ok(read.verify_cap());
    }
    Ok(s.parse::<VerifyCap>()?)
}

impl Session {
    /// The upload options of the config with `o`'s overrides.
    pub fn upload_options(&self, o: &PutOptions) -> Result<UploadOptions, ClientError> {
        let cfg = &self.cfg;
        let n = o.total.unwrap_or(cfg.total);
        let seg = o.segment_size.unwrap_or(u64::from(cfg.segment_size));
        let seg = u32::try_from(seg).unwrap_or(u32::MAX);
        let params = EncodingParams::new(o.needed.unwrap_or(cfg.needed), n, seg)?;
        let happy = o.happy.unwrap_or(cfg.happy.min(n)).max(params.k());
        Ok(UploadOptions { params, happy, key: None, lease_secs: cfg.lease_secs })
    }

    /// Stores `size` bytes read from `open()` (called again if shares must be re-sent), counting
    /// plaintext bytes encoded into `progress`; the file is added to the watch list.
    pub async fn put<R, F>(
        &self,
        open: F,
        size: u64,
        opts: &UploadOptions,
        progress: Arc<AtomicU64>,
    ) -> Result<UploadReport, ClientError>
    where
        F: Fn() -> std::io::Result<R> + Send + Sync + 'static,
        R: Read + Send + 'static,
    {
        let report = self.recorded(self.client.upload(open, size, opts, progress)).await?;
        let lease_expires = now_secs() + u64::from(opts.lease_secs);
        let watched = WatchList::update(&self.cfg.data_dir, |list| {
            let entry = list.entry(&report.cap.verify_cap());
            entry.set_placements(&report.placements);
            entry.lease_expires = lease_expires;
        });
        if let Err(e) = watched {
            tracing::warn!(error = %e, "cannot save the watch list");
        }
        Ok(report)
    }

    /// Stores `data` with the config's encoding.
    pub async fn put_bytes(&self, data: Vec<u8>) -> Result<UploadReport, ClientError> {
        let opts = self.upload_options(&PutOptions::default())?;
        let (size, data) = (data.len() as u64, Arc::new(data));
        let open = move || Ok(std::io::Cursor::new(data.as_ref().clone()));
        self.put(open, size, &opts, Arc::default()).await
    }

    /// Writes the file (or `range` = (offset, length) of it) to `out`, every block verified;
    /// counts bytes written into `progress`. Returns the bytes written.
    pub async fn get<W: Write>(
        &self,
        cap: &ReadCap,
        range: Option<(u64, u64)>,
        mut out: W,
        progress: Arc<AtomicU64>,
    ) -> Result<u64, ClientError> {
        let sink = |b: &[u8]| {
            progress.fetch_add(b.len() as u64, Ordering::Relaxed);
            out.write_all(b)
        };
        self.recorded(self.client.download(cap, range, sink)).await
    }

    /// Like [`Session::get`] into `path`, which appears (durably, atomically) only when the whole
    /// download verified: a failed get leaves any earlier file there untouched.
    pub async fn get_to_file(
        &self,
        cap: &ReadCap,
        range: Option<(u64, u64)>,
        path: &Path,
        progress: Arc<AtomicU64>,
    ) -> Result<u64, ClientError> {
        let file = AtomicFile::create(path)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let n = self.get(cap, range, &mut w, progress).await?;
        w.into_inner().map_err(|e| e.into_error())?.commit()?;
        Ok(n)
    }

    /// Every share's node and lease expiry (Unix seconds).
    pub async fn leases(&self, cap: &VerifyCap) -> Vec<(u8, blackbox_net::PeerId, u64)> {
        self.client.leases(cap).await
    }

    /// Where the file's shares are; with `verify`, every share is also downloaded and every block
    /// checked (no decryption).
    pub async fn check(
        &self,
        cap: &VerifyCap,
        verify: bool,
    ) -> Result<(CheckReport, Option<VerifyReport>), ClientError> {
        let report = self.client.check(cap).await;
        if !verify || report.distinct() == 0 {
            return Ok((report, None));
        }
        let v = self.recorded(self.client.verify(cap)).await?;
        Ok((report, Some(v)))
    }
}
