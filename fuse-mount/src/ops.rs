//! The drive's operations as methods returning errnos: names resolved through the inode table,
//! directories read and edited through the client, open files through their own locks.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use blackbox_client::dir::DirSnapshot;
use blackbox_client::namespace::{new_entry, now_ns, DirCap};
use blackbox_client::{ClientError, Session};
use blackbox_core::dir::{Entry, Kind};
use blackbox_core::{LiteralCap, SlotWriteCap};
use fuser::{Errno, FileAttr, FileType, INodeNo};

use crate::files::{FileState, WriteBack};
use crate::inodes::Inode;
use crate::{lock, Drive};

/// How long a directory read serves lookups (the kernel's entry TTL is as long).
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

/// Maps a client error to the errno a program expects; unexpected ones are logged as EIO.
pub fn errno(e: ClientError) -> Errno {
    match e {
        ClientError::NotFound(_) => Errno::ENOENT,
        ClientError::Exists(_) => Errno::EEXIST,
        ClientError::NotADirectory(_) => Errno::ENOTDIR,
        ClientError::IsADirectory(_) => Errno::EISDIR,
        ClientError::NotEmpty(_) => Errno::ENOTEMPTY,
        ClientError::ReadOnly(_) => Errno::EROFS,
        e => {
            tracing::warn!(error = %e, "grid operation failed");
            Errno::EIO
        }
    }
}

fn io(e: std::io::Error) -> Errno {
    tracing::warn!(error = %e, "write-back cache I/O failed");
    Errno::EIO
}

/// A name as the namespace takes it (UTF-8, at most 1,024 bytes), or EINVAL / ENAMETOOLONG.
pub fn name_of(name: &std::ffi::OsStr) -> Result<&str, Errno> {
    if name.len() > blackbox_core::dir::MAX_NAME_LEN {
        return Err(Errno::ENAMETOOLONG);
    }
    name.to_str().ok_or(Errno::EINVAL)
}

fn time_of(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl Drive {
    pub(crate) fn inode(&self, ino: u64) -> Result<Inode, Errno> {
        lock(&self.inodes).get(ino).ok_or(Errno::ENOENT)
    }

    pub(crate) fn dir(&self, ino: u64) -> Result<DirCap, Errno> {
        self.inode(ino)?.dir.ok_or(Errno::ENOTDIR)
    }

    /// The write cap of directory `ino`, or EROFS.
    pub(crate) fn wdir(&self, ino: u64) -> Result<SlotWriteCap, Errno> {
        match self.dir(ino)? {
            DirCap::Write(w) if !self.read_only => Ok(w),
            _ => Err(Errno::EROFS),
        }
    }

    pub(crate) fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The attributes of `ino` (an open file's size is that of its local copy).
    pub(crate) fn attr(&self, ino: u64, i: &Inode) -> FileAttr {
        let e = &i.entry;
        let mut size = e.size;
        // (The map's lock is let go before the file's: a file being stored holds its own lock.)
        let open = lock(&self.files).get(&ino).cloned();
        if let Some(f) = open {
            if let Some(b) = lock(&f).back.as_ref() {
                size = b.size;
            }
        }
        let (kind, nlink) = match e.kind {
            Kind::Dir => (FileType::Directory, 2),
            Kind::File => (FileType::RegularFile, 1),
            Kind::Symlink => (FileType::Symlink, 1),
        };
        if e.kind == Kind::Symlink {
            size = e.cap.len() as u64;
        }
        let t = time_of(e.mtime_ns);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm: (e.mode & 0o7777) as u16,
            nlink,
            uid: self.owner.0,
            gid: self.owner.1,
            rdev: 0,
            flags: 0,
            blksize: 1 << 17,
        }
    }

    /// A directory as read at most [`SNAPSHOT_TTL`] ago (the kernel keeps names as long),
    /// so the lookups of a listing share one read of the directory.
    pub(crate) fn snapshot(&self, dir: &DirCap) -> Result<Arc<DirSnapshot>, Errno> {
        let id = dir.read().verify_cap().storage_index();
        if let Some((at, snap)) = lock(&self.snaps).get(&id) {
            if at.elapsed() < SNAPSHOT_TTL {
                return Ok(snap.clone());
            }
        }
        let edits = self.edits.load(Ordering::SeqCst);
        let snap = Arc::new(self.block(self.session.client.dir_read(&dir.read())).map_err(errno)?);
        let mut snaps = lock(&self.snaps);
        // An edit while this read was on its way may have made it stale: use it once, keep it not.
        if self.edits.load(Ordering::SeqCst) == edits {
            snaps.insert(id, (Instant::now(), snap.clone()));
        }
        Ok(snap)
    }

    /// Reads `name` of directory `parent` from the grid and gives it an inode: an entry of that
    /// name, else a folder for the names that go on with `name/`.
    pub(crate) fn lookup_name(&self, parent: u64, name: &str) -> Result<(u64, Inode), Errno> {
        let p = self.inode(parent)?;
        let dir = p.dir.clone().ok_or(Errno::ENOTDIR)?;
        let snap = self.snapshot(&dir)?;
        let c = &self.session.client;
        let key = format!("{}{name}", p.prefix);
        if let Some(entry) = self.block(c.dir_get(&dir.read(), &snap, &key)).map_err(errno)? {
            return Ok(self.adopt(parent, name, &key, &dir, entry));
        }
        let prefix = format!("{key}/");
        let marker = self.block(c.dir_get(&dir.read(), &snap, &prefix)).map_err(errno)?.is_some();
        if name.contains('/') || !(marker || self.has_children(&dir, &snap, &prefix)?) {
            return Err(Errno::ENOENT);
        }
        let mut entry = new_entry(Kind::Dir, String::new(), 0);
        entry.mtime_ns = p.entry.mtime_ns;
        let inode = Inode {
            parent,
            name: name.to_string(),
            key: prefix.clone(),
            entry,
            dir: Some(dir),
            prefix,
            prefix_only: true,
        };
        let mut t = lock(&self.inodes);
        let ino = t.upsert(inode);
        Ok((ino, t.get(ino).ok_or(Errno::EIO)?))
    }

    /// Whether any name of `dir` goes on after `prefix`.
    pub(crate) fn has_children(&self, dir: &DirCap, snap: &DirSnapshot, prefix: &str) -> Result<bool, Errno> {
        let next = self.block(self.session.client.dir_list(&dir.read(), snap, Some(prefix), 1)).map_err(errno)?;
        Ok(next.first().is_some_and(|(n, _)| n.starts_with(prefix)))
    }

    /// Gives the entry `key` of `dir`, shown as `name` in inode `parent`, its inode.
    pub(crate) fn adopt(&self, parent: u64, name: &str, key: &str, dir: &DirCap, entry: Entry) -> (u64, Inode) {
        let child = (entry.kind == Kind::Dir).then(|| Session::child_dir(dir, &entry, key).ok()).flatten();
        let inode = Inode {
            parent,
            name: name.to_string(),
            key: key.to_string(),
            entry,
            dir: child,
            prefix: String::new(),
            prefix_only: false,
        };
        let mut t = lock(&self.inodes);
        let ino = t.upsert(inode);
        let inode = t.get(ino).unwrap_or_else(|| unreachable!("just inserted"));
        (ino, inode)
    }

    /// The namespace name of `name` in directory `parent` (after the folder's prefix).
    pub(crate) fn key_in(&self, parent: u64, name: &str) -> Result<String, Errno> {
        Ok(format!("{}{name}", self.inode(parent)?.prefix))
    }

    /// Edits the entries `names` of directory `parent` atomically.
    pub(crate) fn edit<F>(&self, parent: u64, names: &[&str], edit: F) -> Result<(), Errno>
    where
        F: Fn(Vec<Option<Entry>>) -> Result<Vec<Option<Entry>>, ClientError>,
    {
        let w = self.wdir(parent)?;
        let r = self.block(self.session.client.dir_update(&w, names, &self.opts, edit));
        let mut snaps = lock(&self.snaps);
        self.edits.fetch_add(1, Ordering::SeqCst);
        snaps.remove(&w.read_cap().verify_cap().storage_index());
        drop(snaps);
        r.map_err(errno)?;
        Ok(())
    }

    /// Links a new entry `name` in `parent` (EEXIST when taken) and gives it an inode.
    pub(crate) fn create_entry(&self, parent: u64, name: &str, entry: Entry) -> Result<(u64, Inode), Errno> {
        let key = self.key_in(parent, name)?;
        self.edit(parent, &[&key], |cur| match cur[0] {
            Some(_) => Err(ClientError::Exists(key.clone())),
            None => Ok(vec![Some(entry.clone())]),
        })?;
        let dir = self.dir(parent)?;
        Ok(self.adopt(parent, name, &key, &dir, entry))
    }

    /// Makes a directory `name` in `parent`.
    pub(crate) fn mkdir(&self, parent: u64, name: &str, mode: u32) -> Result<(u64, Inode), Errno> {
        let pdir = DirCap::Write(self.wdir(parent)?);
        let child = self.block(self.session.client.dir_create(&self.opts)).map_err(errno)?;
        let mut entry = self.session.entry_for_cap(&pdir, &child.to_string()).map_err(errno)?;
        entry.mode = mode & 0o7777;
        self.create_entry(parent, name, entry)
    }

    /// Makes an empty file `name` in `parent`, open for writing.
    pub(crate) fn create(&self, parent: u64, name: &str, mode: u32) -> Result<(u64, Inode, u64), Errno> {
        let mut entry = new_entry(Kind::File, LiteralCap { data: Vec::new() }.to_string(), 0);
        entry.mode = mode & 0o7777;
        let (ino, inode) = self.create_entry(parent, name, entry)?;
        let w = self.wdir(parent)?;
        let fh = self.open_handle(ino);
        let f = self.file(ino);
        let mut st = lock(&f);
        if st.back.is_none() {
            st.back = Some(WriteBack::create(&self.cache_dir, &w, &inode.key).map_err(io)?);
        }
        Ok((ino, inode, fh))
    }

    /// The open state of file `ino`.
    pub(crate) fn file(&self, ino: u64) -> Arc<Mutex<FileState>> {
        lock(&self.files).entry(ino).or_default().clone()
    }

    /// A new handle on `ino`.
    pub(crate) fn open_handle(&self, ino: u64) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, ino);
        let f = self.file(ino);
        lock(&f).handles += 1;
        fh
    }

    /// Opens file `ino`; `truncate` empties it.
    pub(crate) fn open(&self, ino: u64, write: bool, truncate: bool) -> Result<u64, Errno> {
        let i = self.inode(ino)?;
        if i.entry.kind != Kind::File {
            return Err(if i.entry.kind == Kind::Dir { Errno::EISDIR } else { Errno::EINVAL });
        }
        if write {
            self.wdir(i.parent)?;
        }
        let fh = self.open_handle(ino);
        if truncate {
            let f = self.file(ino);
            let mut st = lock(&f);
            if let Err(e) = self.writable(&mut st, &i).and_then(|b| b.set_len(0).map_err(io)) {
                drop(st);
                let _ = self.release(fh);
                return Err(e);
            }
        }
        Ok(fh)
    }

    /// The local copy of open file `i`, made (with the stored content) on the first change.
    fn writable<'a>(&self, st: &'a mut FileState, i: &Inode) -> Result<&'a mut WriteBack, Errno> {
        if st.back.is_none() {
            let w = self.wdir(i.parent)?;
            let mut back = WriteBack::create(&self.cache_dir, &w, &i.key).map_err(io)?;
            let mut at = 0u64;
            while at < i.entry.size {
                let chunk = st.read_stored(&self.session, &self.rt, &i.entry.cap, (at, 1 << 20)).map_err(errno)?;
                if chunk.is_empty() {
                    return Err(Errno::EIO);
                }
                let _ = back.write_at(at, &chunk).map_err(io)?;
                at += chunk.len() as u64;
            }
            back.dirty = false;
            st.back = Some(back);
        }
        st.back.as_mut().ok_or(Errno::EIO)
    }

    /// Reads `len` bytes at `offset` of file `ino`.
    pub(crate) fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        let i = self.inode(ino)?;
        let f = self.file(ino);
        let mut st = lock(&f);
        if let Some(b) = st.back.as_ref() {
            return b.read_at(offset, len).map_err(io);
        }
        st.read_stored(&self.session, &self.rt, &i.entry.cap, (offset, len)).map_err(errno)
    }

    /// Writes `data` at `offset` of file `ino`.
    pub(crate) fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let i = self.inode(ino)?;
        let f = self.file(ino);
        let mut st = lock(&f);
        let back = self.writable(&mut st, &i)?;
        if let Some(chunk) = back.write_at(offset, data).map_err(io)? {
            // A chunk the writer is done with is stored while it goes on (a bounded few at once).
            let (session, opts, turns) = (self.session.clone(), self.opts.clone(), self.chunk_uploads.clone());
            back.store_chunk(chunk, |path, at| {
                self.rt.spawn(async move {
                    let _turn = turns.acquire_owned().await.map_err(|_| ClientError::Cancelled)?;
                    crate::files::store_range(&session, &opts, &path, at, crate::files::CHUNK).await
                })
            });
        }
        Ok(data.len() as u32)
    }

    /// Stores file `ino`'s local copy if it changed, and points its entry at the new version;
    /// returns once the version is in the grid and the entry written.
    pub(crate) fn flush(&self, ino: u64) -> Result<(), Errno> {
        let Some(f) = lock(&self.files).get(&ino).cloned() else { return Ok(()) };
        let mut st = lock(&f);
        let Some(back) = st.back.as_mut().filter(|b| b.dirty) else { return Ok(()) };
        let cap = self.block(crate::files::store(&self.session, &self.opts, back)).map_err(errno)?;
        let size = back.size;
        let i = self.inode(ino)?;
        let linked = lock(&self.inodes).is_linked(ino);
        if linked {
            let mut entry = i.entry.clone();
            (entry.cap, entry.size, entry.mtime_ns, entry.kind) = (cap, size, now_ns(), Kind::File);
            self.edit(i.parent, &[&i.key], |_| Ok(vec![Some(entry.clone())]))?;
            lock(&self.inodes).set_entry(ino, entry);
        }
        if let Some(b) = st.back.as_mut() {
            b.dirty = false;
        }
        st.stored_changed();
        Ok(())
    }

    /// Closes handle `fh`: the last handle of a file stores it and drops its local copy.
    pub(crate) fn release(&self, fh: u64) -> Result<(), Errno> {
        let Some(ino) = lock(&self.handles).remove(&fh) else { return Ok(()) };
        let last = {
            let f = self.file(ino);
            let mut st = lock(&f);
            st.handles = st.handles.saturating_sub(1);
            st.handles == 0
        };
        if !last {
            return Ok(());
        }
        let stored = self.flush(ino);
        let f = self.file(ino);
        let mut st = lock(&f);
        if st.handles == 0 {
            // A copy still dirty (its upload failed) stays in the cache for the next mount.
            st.back = None;
            lock(&self.files).remove(&ino);
        }
        drop(st);
        stored
    }

    /// Sets the size (truncate), mode and times of `ino`.
    pub(crate) fn setattr(
        &self,
        ino: u64,
        size: Option<u64>,
        mode: Option<u32>,
        mtime: Option<u64>,
    ) -> Result<Inode, Errno> {
        let i = self.inode(ino)?;
        if let Some(size) = size {
            if i.entry.kind != Kind::File {
                return Err(Errno::EISDIR);
            }
            let fh = self.open_handle(ino);
            let r = {
                let f = self.file(ino);
                let mut st = lock(&f);
                self.writable(&mut st, &i).and_then(|b| b.set_len(size).map_err(io))
            };
            let released = self.release(fh);
            r.and(released)?;
        }
        if mode.is_some() || mtime.is_some() {
            let i = self.inode(ino)?;
            if ino == crate::inodes::ROOT || i.prefix_only {
                return Err(Errno::EPERM);
            }
            let name = i.key.clone();
            let edited = Mutex::new(None);
            self.edit(i.parent, &[&name], |cur| {
                let mut e = cur[0].clone().ok_or_else(|| ClientError::NotFound(name.clone()))?;
                if let Some(m) = mode {
                    e.mode = m & 0o7777;
                }
                if let Some(t) = mtime {
                    e.mtime_ns = t;
                }
                *lock(&edited) = Some(e.clone());
                Ok(vec![Some(e)])
            })?;
            let edited = lock(&edited).take();
            if let Some(e) = edited {
                lock(&self.inodes).set_entry(ino, e);
            }
        }
        self.inode(ino)
    }
}

impl Drive {
    /// Bytes the grid offers this client and how many are free, as file content: the nodes'
    /// offered storage over the erasure code's expansion (n/k).
    pub(crate) fn space(&self) -> (u64, u64) {
        let offered: u64 = self
            .session
            .offers
            .iter()
            .filter_map(|(_, o)| o.as_ref().ok())
            .map(|o| o.offer.resources.storage_bytes)
            .fold(0u64, u64::saturating_add);
        let (k, n) = (self.opts.params.k() as u64, self.opts.params.n() as u64);
        let total = if offered == 0 { 1 << 40 } else { offered / n.max(1) * k };
        (total, total)
    }
}
