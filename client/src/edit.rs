//! Path operations over the namespace: read a file, move, remove, and print caps.

use std::io::Write;
use std::sync::Arc;

use blackbox_core::dir::{Entry, Kind};
use blackbox_core::{LiteralCap, ReadCap};

use crate::namespace::{CapKind, DirCap, Stat};
use crate::{ClientError, PutOptions, Session};

impl Session {
    /// Writes the file at `path` to `out`, every block verified; returns the bytes written.
    pub async fn read_path<W: Write>(&self, path: &str, mut out: W) -> Result<u64, ClientError> {
        let entry = match self.stat(path).await? {
            Stat::Dir(_) => return Err(ClientError::IsADirectory(path.to_string())),
            Stat::Entry(e) => e,
        };
        if entry.kind == Kind::Symlink {
            return Err(ClientError::BadPath { path: path.to_string(), why: "is a symbolic link" });
        }
        if let Ok(l) = entry.cap.parse::<LiteralCap>() {
            out.write_all(&l.data)?;
            return Ok(l.data.len() as u64);
        }
        if let Ok(cap) = entry.cap.parse::<ReadCap>() {
            return self.get(&cap, None, out, Arc::default()).await;
        }
        // A multi-part file: its parts in order, streamed.
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let reading = self.client.read_into(&entry.cap, (0, entry.size), tx);
        let writing = async {
            let mut n = 0u64;
            while let Some(piece) = rx.recv().await {
                let piece = piece?;
                out.write_all(&piece)?;
                n += piece.len() as u64;
            }
            Ok::<u64, ClientError>(n)
        };
        let ((), written) = tokio::join!(self.recorded(reading), writing);
        written
    }

    /// Moves `src` to `dst` (into `dst` when it is a directory). Within one directory this is
    /// one atomic change; across directories the entry is linked at `dst` before it is removed
    /// from `src`, so a crash leaves it in both places, never in none.
    pub async fn rename(&self, src: &str, dst: &str, force: bool) -> Result<(), ClientError> {
        if crate::namespace::is_within(dst, src)? {
            return Err(ClientError::BadPath { path: dst.to_string(), why: "cannot move a directory into itself" });
        }
        let (sdir, sname) = self.resolve_parent(src).await?;
        let sw = sdir.write(src)?.clone();
        let (ddir, dname) = match self.stat(dst).await {
            Ok(Stat::Dir(d)) if !dst.trim_end_matches('/').is_empty() => (d, sname.clone()),
            Ok(_) | Err(ClientError::NotFound(_)) => self.resolve_parent(dst).await?,
            Err(e) => return Err(e),
        };
        let dw = ddir.write(dst)?.clone();
        let opts = self.upload_options(&PutOptions::default())?;
        let missing = || ClientError::NotFound(src.to_string());
        if sw.read_cap() == dw.read_cap() {
            if sname == dname {
                return Ok(());
            }
            let edit = |cur: Vec<Option<Entry>>| {
                let entry = cur[0].clone().ok_or_else(missing)?;
                if cur[1].is_some() && !force {
                    return Err(ClientError::Exists(dst.to_string()));
                }
                Ok(vec![None, Some(entry)])
            };
            self.recorded(self.client.dir_update(&sw, &[&sname, &dname], &opts, edit)).await?;
            return Ok(());
        }
        let snap = self.client.dir_read(&sw.read_cap()).await?;
        let entry = self.client.dir_get(&sw.read_cap(), &snap, &sname).await?.ok_or_else(missing)?;
        // A subdirectory's write cap is sealed to its parent: reseal it for the new parent.
        let entry = self.resealed(&sdir, &ddir, entry)?;
        self.recorded(self.client.dir_update(&dw, &[&dname], &opts, |cur| match &cur[0] {
            Some(_) if !force => Err(ClientError::Exists(dst.to_string())),
            _ => Ok(vec![Some(entry.clone())]),
        }))
        .await?;
        self.recorded(self.client.dir_update(&sw, &[&sname], &opts, |_| Ok(vec![None]))).await?;
        Ok(())
    }

    /// `entry` moved from directory `from` to `to`: a subdirectory's sealed write cap resealed for `to`.
    pub fn resealed(&self, from: &DirCap, to: &DirCap, mut entry: Entry) -> Result<Entry, ClientError> {
        if entry.kind != Kind::Dir || entry.sealed_write.is_none() {
            return Ok(entry);
        }
        let read = entry.cap.parse()?;
        if let (DirCap::Write(f), Some(sealed)) = (from, &entry.sealed_write) {
            let child = blackbox_core::dir::open_write_cap(f, sealed, &read)?;
            entry = self.entry_for_cap(to, &child.to_string())?;
        }
        Ok(entry)
    }

    /// Removes the entry at `path`; a non-empty directory only with `recursive` (its content
    /// is unlinked with it and expires with its leases).
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<(), ClientError> {
        let (dir, name) = self.resolve_parent(path).await?;
        let w = dir.write(path)?.clone();
        if !recursive {
            if let Stat::Dir(d) = self.stat(path).await? {
                if !self.list(&d, None, 1).await?.is_empty() {
                    return Err(ClientError::NotEmpty(path.to_string()));
                }
            }
        }
        let opts = self.upload_options(&PutOptions::default())?;
        self.recorded(self.client.dir_update(&w, &[&name], &opts, |cur| match &cur[0] {
            None => Err(ClientError::NotFound(path.to_string())),
            Some(_) => Ok(vec![None]),
        }))
        .await?;
        Ok(())
    }

    /// The cap of `path`: the strongest it was reached with, or its read or verify cap.
    pub async fn cap_of(&self, path: &str, kind: CapKind) -> Result<String, ClientError> {
        match self.stat(path).await? {
            Stat::Dir(d) => Ok(match (kind, &d) {
                (CapKind::Best, DirCap::Write(w)) => w.to_string(),
                (CapKind::Verify, _) => d.read().verify_cap().to_string(),
                _ => d.read().to_string(),
            }),
            Stat::Entry(e) if kind == CapKind::Verify => match e.cap.parse::<ReadCap>() {
                Ok(r) => Ok(r.verify_cap().to_string()),
                Err(_) => Err(ClientError::BadPath {
                    path: path.to_string(),
                    why: "is stored inline (a literal cap): there is nothing on the grid to verify",
                }),
            },
            Stat::Entry(e) => Ok(e.cap),
        }
    }
}
