//! Paths: `/a/b` under the user's root directory (`root.cap` in the data dir, created on first
//! use) or `CAP/a/b` under any directory cap. Write caps of subdirectories are opened from their
//! parent's entry only when the parent was reached with its write cap.

use std::path::Path;

use blackbox_core::dir::{check_name, open_write_cap, seal_write_cap, Entry, Kind, Node};
use blackbox_core::{LiteralCap, ReadCap, SlotReadCap, SlotWriteCap, MAX_LITERAL_LEN};
use blackbox_util::load_or_create_secret;
use rand::RngCore;

use crate::dir::new_write_cap;
use crate::slot::SlotState;
use crate::{ClientError, PutOptions, Session};

/// A directory reached by a path: writable or read-only.
#[derive(Debug, Clone)]
pub enum DirCap {
    /// Reached with the write cap.
    Write(SlotWriteCap),
    /// Reached with a read cap only.
    Read(SlotReadCap),
}

impl DirCap {
    /// The read cap.
    pub fn read(&self) -> SlotReadCap {
        match self {
            DirCap::Write(w) => w.read_cap(),
            DirCap::Read(r) => r.clone(),
        }
    }

    /// The write cap, or a read-only error naming `path`.
    pub fn write(&self, path: &str) -> Result<&SlotWriteCap, ClientError> {
        match self {
            DirCap::Write(w) => Ok(w),
            DirCap::Read(_) => Err(ClientError::ReadOnly(path.to_string())),
        }
    }
}

/// What a path names.
#[derive(Debug, Clone)]
pub enum Stat {
    /// A directory (the path's end, or a cap with no components).
    Dir(DirCap),
    /// An entry of a directory.
    Entry(Entry),
}

/// Which cap `cap PATH` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapKind {
    /// The strongest the path was reached with.
    Best,
    /// The read cap.
    Read,
    /// The verify cap.
    Verify,
}

/// A path split into where it starts and its components.
struct ParsedPath<'a> {
    start: Option<&'a str>,
    parts: Vec<&'a str>,
}

fn parse_path(path: &str) -> Result<ParsedPath<'_>, ClientError> {
    let bad = |why| ClientError::BadPath { path: path.to_string(), why };
    let (start, rest) = if let Some(rest) = path.strip_prefix('/') {
        (None, rest)
    } else if path.starts_with("bb:slot-rw:") || path.starts_with("bb:slot-ro:") {
        match path.split_once('/') {
            Some((cap, rest)) => (Some(cap), rest),
            None => (Some(path), ""),
        }
    } else {
        return Err(bad("a path starts with / (your root) or with a directory cap"));
    };
    let mut parts = Vec::new();
    for p in rest.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(bad("`..` is not supported")),
            p => {
                check_name(p)?;
                parts.push(p);
            }
        }
    }
    Ok(ParsedPath { start, parts })
}

/// Whether `inner` is `outer` or below it (same start, `outer`'s components a prefix of its own).
pub(crate) fn is_within(inner: &str, outer: &str) -> Result<bool, ClientError> {
    let (i, o) = (parse_path(inner)?, parse_path(outer)?);
    Ok(i.start == o.start && !o.parts.is_empty() && i.parts.starts_with(&o.parts))
}

/// Now, in nanoseconds since the Unix epoch (entry times: S3 clients compare them to file times).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A new entry for `cap` of this kind, stamped now.
pub fn new_entry(kind: Kind, cap: String, size: u64) -> Entry {
    let mode = match kind {
        Kind::Dir => 0o755,
        Kind::File => 0o644,
        Kind::Symlink => 0o777,
    };
    Entry {
        kind,
        cap,
        sealed_write: None,
        size,
        mtime_ns: now_ns(),
        mode,
        content_type: String::new(),
        metadata: Vec::new(),
    }
}

impl Session {
    /// The user's root directory write cap (`root.cap` in the data dir, 0600), created on first use.
    pub async fn root_cap(&self) -> Result<SlotWriteCap, ClientError> {
        let path = self.cfg.data_dir.join("root.cap");
        let text = load_or_create_secret(&path, || new_write_cap().to_string().into_bytes())
            .map_err(|source| ClientError::State { what: "root.cap", source })?;
        let text = String::from_utf8_lossy(&text);
        let cap: SlotWriteCap = text.trim().parse()?;
        Ok(cap)
    }

    /// Reads a directory; the user's own root is created here if it has no version yet.
    async fn read_dir(&self, dir: &DirCap, root: bool) -> Result<crate::dir::DirSnapshot, ClientError> {
        match self.client.dir_read(&dir.read()).await {
            // A new root: no node knows any version. With fewer than `happy` nodes answering,
            // absence proves nothing, and the root is not made (a read error instead).
            Err(ClientError::SlotUnreadable { highest: 0, found }) if root && found >= self.cfg.happy => {
                let DirCap::Write(w) = dir else { unreachable!("the root is reached with its write cap") };
                let opts = self.upload_options(&PutOptions::default())?;
                match self.client.write_slot(w, &SlotState::default(), &Node::empty().encode(), &opts).await {
                    Err(e) if !e.is_conflict() => return Err(e),
                    _ => {}
                }
                self.client.dir_read(&dir.read()).await
            }
            other => other,
        }
    }

    async fn start_of(&self, p: &ParsedPath<'_>) -> Result<DirCap, ClientError> {
        Ok(match p.start {
            None => DirCap::Write(self.root_cap().await?),
            Some(s) if s.starts_with("bb:slot-rw:") => DirCap::Write(s.parse()?),
            Some(s) => DirCap::Read(s.parse()?),
        })
    }

    /// The subdirectory an entry names, writable when `parent` is.
    pub fn child_dir(parent: &DirCap, entry: &Entry, path: &str) -> Result<DirCap, ClientError> {
        if entry.kind != Kind::Dir {
            return Err(ClientError::NotADirectory(path.to_string()));
        }
        let read: SlotReadCap = entry.cap.parse()?;
        Ok(match (parent, &entry.sealed_write) {
            (DirCap::Write(w), Some(sealed)) => DirCap::Write(open_write_cap(w, sealed, &read)?),
            _ => DirCap::Read(read),
        })
    }

    /// Walks `parts` from `dir` (every part a directory).
    async fn walk(&self, mut dir: DirCap, parts: &[&str], root: bool, path: &str) -> Result<DirCap, ClientError> {
        for (i, part) in parts.iter().enumerate() {
            let snap = self.read_dir(&dir, root && i == 0).await?;
            let entry = self.client.dir_get(&dir.read(), &snap, part).await?;
            let entry = entry.ok_or_else(|| ClientError::NotFound(path.to_string()))?;
            dir = Self::child_dir(&dir, &entry, path)?;
        }
        Ok(dir)
    }

    /// The directory `path` names.
    pub async fn resolve_dir(&self, path: &str) -> Result<DirCap, ClientError> {
        let p = parse_path(path)?;
        let start = self.start_of(&p).await?;
        self.walk(start, &p.parts, p.start.is_none(), path).await
    }

    /// The directory holding `path`'s last component, and that name.
    pub async fn resolve_parent(&self, path: &str) -> Result<(DirCap, String), ClientError> {
        let p = parse_path(path)?;
        let Some((last, parents)) = p.parts.split_last() else {
            return Err(ClientError::BadPath { path: path.to_string(), why: "names a root, not an entry" });
        };
        let start = self.start_of(&p).await?;
        if parents.is_empty() && p.start.is_none() {
            // An entry right under the user's root: the root is made here on first use.
            self.read_dir(&start, true).await?;
        }
        let dir = self.walk(start, parents, p.start.is_none(), path).await?;
        Ok((dir, last.to_string()))
    }

    /// What `path` names.
    pub async fn stat(&self, path: &str) -> Result<Stat, ClientError> {
        let p = parse_path(path)?;
        if p.parts.is_empty() {
            let dir = self.start_of(&p).await?;
            self.read_dir(&dir, p.start.is_none()).await?;
            return Ok(Stat::Dir(dir));
        }
        let (dir, name) = self.resolve_parent(path).await?;
        let snap = self.read_dir(&dir, false).await?;
        let entry = self.client.dir_get(&dir.read(), &snap, &name).await?;
        let entry = entry.ok_or_else(|| ClientError::NotFound(path.to_string()))?;
        if entry.kind == Kind::Dir {
            return Ok(Stat::Dir(Self::child_dir(&dir, &entry, path)?));
        }
        Ok(Stat::Entry(entry))
    }

    /// Sets entry `name` of the directory holding `path` (refused if taken, unless `force`).
    pub async fn link(&self, path: &str, entry: Entry, force: bool) -> Result<(), ClientError> {
        let (dir, name) = self.resolve_parent(path).await?;
        self.link_in(&dir, &name, entry, force, path).await
    }

    /// Sets entry `name` of `dir` (`path` names it in errors).
    async fn link_in(
        &self,
        dir: &DirCap,
        name: &str,
        entry: Entry,
        force: bool,
        path: &str,
    ) -> Result<(), ClientError> {
        let w = dir.write(path)?;
        let opts = self.upload_options(&PutOptions::default())?;
        self.recorded(self.client.dir_update(w, &[name], &opts, |cur| match &cur[0] {
            Some(_) if !force => Err(ClientError::Exists(path.to_string())),
            _ => Ok(vec![Some(entry.clone())]),
        }))
        .await?;
        Ok(())
    }

    /// The entry for a cap given by the user (`ln CAP PATH`): files, literal files and
    /// directories (a directory write cap is sealed into the entry when `parent` is writable).
    pub fn entry_for_cap(&self, parent: &DirCap, cap: &str) -> Result<Entry, ClientError> {
        if let Ok(r) = cap.parse::<ReadCap>() {
            return Ok(new_entry(Kind::File, cap.to_string(), r.size));
        }
        if let Ok(l) = cap.parse::<LiteralCap>() {
            return Ok(new_entry(Kind::File, cap.to_string(), l.data.len() as u64));
        }
        if let Ok(w) = cap.parse::<SlotWriteCap>() {
            return Ok(self.dir_entry(parent, &w));
        }
        let r: SlotReadCap = cap.parse()?;
        Ok(new_entry(Kind::Dir, r.to_string(), 0))
    }

    fn dir_entry(&self, parent: &DirCap, child: &SlotWriteCap) -> Entry {
        let mut e = new_entry(Kind::Dir, child.read_cap().to_string(), 0);
        if let DirCap::Write(w) = parent {
            let mut nonce = [0u8; 12];
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            e.sealed_write = Some(seal_write_cap(w, child, nonce));
        }
        e
    }

    /// Stores the local file `local` and links it at `path`: files of at most 1 KiB live in the
    /// entry (a literal cap), larger ones are uploaded.
    pub async fn put_path(
        &self,
        local: &Path,
        path: &str,
        opts: &PutOptions,
        force: bool,
    ) -> Result<Entry, ClientError> {
        let size = std::fs::metadata(local)?.len();
        let (dir, name) = self.resolve_parent(path).await?;
        dir.write(path)?;
        let literal = size as usize <= MAX_LITERAL_LEN;
        // Fail before uploading if the name is taken (the link checks again, atomically).
        if !literal && !force {
            let snap = self.read_dir(&dir, false).await?;
            if self.client.dir_get(&dir.read(), &snap, &name).await?.is_some() {
                return Err(ClientError::Exists(path.to_string()));
            }
        }
        let uopts = self.upload_options(opts)?;
        let local = local.to_path_buf();
        let open = move || std::fs::File::open(&local).map(std::io::BufReader::new);
        let cap = self.recorded(self.client.store_content(open, size, &uopts)).await?;
        let mut entry = new_entry(Kind::File, cap, size);
        entry.content_type = guess_type(&name).to_string();
        self.link_in(&dir, &name, entry.clone(), force, path).await?;
        Ok(entry)
    }

    /// Up to `limit` entries of the directory at `path` after `start_after`.
    pub async fn list(
        &self,
        dir: &DirCap,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Entry)>, ClientError> {
        let snap = self.read_dir(dir, false).await?;
        self.client.dir_list(&dir.read(), &snap, start_after, limit).await
    }

    /// Creates a directory at `path`; with `parents`, also every missing parent, and an existing
    /// directory is fine.
    pub async fn mkdir(&self, path: &str, parents: bool) -> Result<DirCap, ClientError> {
        let p = parse_path(path)?;
        if p.parts.is_empty() {
            return Err(ClientError::Exists(path.to_string()));
        }
        let mut dir = self.start_of(&p).await?;
        let opts = self.upload_options(&PutOptions::default())?;
        for (i, part) in p.parts.iter().enumerate() {
            let last = i + 1 == p.parts.len();
            let snap = self.read_dir(&dir, i == 0 && p.start.is_none()).await?;
            if let Some(e) = self.client.dir_get(&dir.read(), &snap, part).await? {
                if last && !parents {
                    return Err(ClientError::Exists(path.to_string()));
                }
                dir = Self::child_dir(&dir, &e, path)?;
                continue;
            }
            if !last && !parents {
                return Err(ClientError::NotFound(path.to_string()));
            }
            let w = dir.write(path)?.clone();
            let child = self.recorded(self.client.dir_create(&opts)).await?;
            let entry = self.dir_entry(&dir, &child);
            // Another process may create the same name meanwhile: then use theirs.
            let winner = std::sync::Mutex::new(None);
            self.recorded(self.client.dir_update(&w, &[part], &opts, |cur| {
                let mut won = winner.lock().unwrap_or_else(|p| p.into_inner());
                *won = cur[0].clone();
                match &cur[0] {
                    Some(_) => Ok(cur.clone()),
                    None => Ok(vec![Some(entry.clone())]),
                }
            }))
            .await?;
            dir = match winner.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(_) if last && !parents => return Err(ClientError::Exists(path.to_string())),
                Some(e) => Self::child_dir(&dir, &e, path)?,
                None => DirCap::Write(child),
            };
        }
        Ok(dir)
    }
}

/// A content type from a file name's extension ("" when unknown).
pub fn guess_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "txt" | "md" => "text/plain",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "pdf" => "application/pdf",
        "tar" => "application/x-tar",
        "gz" => "application/gzip",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_strictly() {
        let p = parse_path("/a//b/./c/").unwrap();
        assert_eq!((p.start, p.parts), (None, vec!["a", "b", "c"]));
        assert!(parse_path("a/b").is_err());
        assert!(parse_path("/a/../b").is_err());
        let cap = format!("{}/x", new_write_cap());
        assert_eq!(parse_path(&cap).unwrap().parts, vec!["x"]);
        assert!(parse_path(&format!("/{}", "n".repeat(1025))).is_err());
        assert!(is_within("/a/b/c", "/a").unwrap());
        assert!(is_within("/a", "/a").unwrap());
        assert!(!is_within("/ab", "/a").unwrap());
        assert!(!is_within("/a", "/a/b").unwrap());
    }
}
