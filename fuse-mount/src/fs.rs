//! The FUSE entry points: each parses its arguments, calls the drive's operation and replies.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blackbox_client::namespace::{new_entry, now_ns};
use blackbox_client::ClientError;
use blackbox_core::dir::{Entry, Kind};
use blackbox_core::SlotReadCap;
use fuser::{
    Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    Request, TimeOrNow, WriteFlags,
};

use crate::ops::{errno, name_of};
use crate::{lock, Drive};

/// How long the kernel may keep names and attributes before asking again.
const TTL: Duration = Duration::from_secs(1);
/// Entries read from the grid per page of a listing.
const PAGE: usize = 512;

/// An open directory listing: the snapshot it reads and where the next page starts.
pub struct Listing {
    ino: u64,
    parent: u64,
    cap: SlotReadCap,
    snap: std::sync::Arc<blackbox_client::dir::DirSnapshot>,
    /// The prefix of the names shown (a folder for names with `/`), "" for a whole directory.
    prefix: String,
    /// The offset of the next entry to hand out, and the name before it.
    pos: u64,
    after: Option<String>,
    page: std::collections::VecDeque<(String, Entry)>,
    done: bool,
    /// The next entry to show, once found: its name and type.
    next: Option<(String, FileType)>,
}

/// Past every name that goes on after `prefix` (names are at most 1,024 bytes).
fn past(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX.to_string().repeat(260))
}

fn kind_of(e: &Entry) -> FileType {
    match e.kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

/// A stable inode number to show in a listing for a name not looked up yet.
fn listed_ino(parent: u64, name: &str) -> u64 {
    let h = blake3::hash(format!("{parent}/{name}").as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([1; 8])) | (1 << 63)
}

fn ns_of(t: TimeOrNow) -> u64 {
    match t {
        TimeOrNow::Now => now_ns(),
        TimeOrNow::SpecificTime(t) => t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    }
}

impl Drive {
    fn reply_entry(&self, r: Result<(u64, crate::inodes::Inode), Errno>, reply: ReplyEntry) {
        match r {
            Ok((ino, i)) => {
                lock(&self.inodes).looked_up(ino);
                reply.entry(&TTL, &self.attr(ino, &i), Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn listing(&self, ino: u64) -> Result<Listing, Errno> {
        let i = self.inode(ino)?;
        let dir = i.dir.ok_or(Errno::ENOTDIR)?;
        let cap = dir.read();
        // The read the lookups that follow a listing (`ls -l`) share.
        let snap = self.snapshot(&dir)?;
        let after = (!i.prefix.is_empty()).then(|| i.prefix.clone());
        Ok(Listing {
            ino,
            parent: i.parent,
            cap,
            snap,
            after: after.clone(),
            prefix: i.prefix,
            pos: 0,
            page: Default::default(),
            done: false,
            next: None,
        })
    }

    /// The next raw entry of a listing's directory, reading the next page when needed.
    fn raw_next(&self, l: &mut Listing) -> Result<Option<(String, Entry)>, Errno> {
        if l.page.is_empty() && !l.done {
            let c = &self.session().client;
            let page = self.block(c.dir_list(&l.cap, &l.snap, l.after.as_deref(), PAGE)).map_err(errno)?;
            l.done = page.len() < PAGE;
            if let Some((n, _)) = page.last() {
                l.after = Some(n.clone());
            }
            l.page.extend(page);
        }
        Ok(l.page.pop_front())
    }

    /// The next entry to show (left in place): an entry after the prefix, or one folder for all
    /// the names that go on with the same `part/`.
    fn peek(&self, l: &mut Listing) -> Result<Option<(String, FileType)>, Errno> {
        while l.next.is_none() {
            let Some((name, e)) = self.raw_next(l)? else { return Ok(None) };
            let Some(rest) = name.strip_prefix(&l.prefix) else {
                (l.done, l.page) = (true, Default::default());
                return Ok(None);
            };
            match rest.split_once('/') {
                None => l.next = Some((rest.to_string(), kind_of(&e))),
                Some(("", _)) => {}
                Some((part, _)) => {
                    l.next = Some((part.to_string(), FileType::Directory));
                    // Skip the rest of that folder's names.
                    (l.after, l.done) = (Some(past(&format!("{}{part}/", l.prefix))), false);
                    l.page.clear();
                }
            }
        }
        Ok(l.next.clone())
    }

    /// Adds entries from `offset` on until the reply is full; the offset of an entry is its
    /// position + 1 ("." and ".." first), so a program that reads on continues where it stopped.
    fn fill(&self, l: &mut Listing, offset: u64, reply: &mut ReplyDirectory) -> Result<(), Errno> {
        if offset < l.pos {
            // The program went back: read again from the start of this snapshot.
            (l.pos, l.done, l.next) = (0, false, None);
            l.after = (!l.prefix.is_empty()).then(|| l.prefix.clone());
            l.page.clear();
        }
        while l.pos < offset {
            if l.pos >= 2 {
                if self.peek(l)?.is_none() {
                    return Ok(());
                }
                l.next = None;
            }
            l.pos += 1;
        }
        loop {
            let (ino, kind, name) = match l.pos {
                0 => (l.ino, FileType::Directory, ".".to_string()),
                1 => (l.parent, FileType::Directory, "..".to_string()),
                _ => match self.peek(l)? {
                    None => return Ok(()),
                    Some((name, kind)) => (listed_ino(l.ino, &name), kind, name),
                },
            };
            if reply.add(INodeNo(ino), l.pos + 1, kind, &name) {
                return Ok(());
            }
            if l.pos >= 2 {
                l.next = None;
            }
            l.pos += 1;
        }
    }

    fn unlink_name(&self, parent: u64, name: &str, dir: bool) -> Result<(), Errno> {
        let (ino, i) = self.lookup_name(parent, name)?;
        match (dir, i.entry.kind == Kind::Dir) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) => {
                let d = i.dir.clone().ok_or(Errno::EIO)?;
                let c = &self.session().client;
                let snap = self.block(c.dir_read(&d.read())).map_err(errno)?;
                if self.has_children(&d, &snap, &i.prefix)? {
                    return Err(Errno::ENOTEMPTY);
                }
            }
            (false, false) => {}
        }
        // (A folder for a prefix goes with its marker entry `prefix/`, if there is one.)
        let cap = i.entry.cap.clone();
        let prefix_only = i.prefix_only;
        self.edit(parent, &[&i.key], |cur| match &cur[0] {
            Some(e) if prefix_only || e.cap == cap => Ok(vec![None]),
            Some(_) => Ok(vec![cur[0].clone()]),
            None if prefix_only => Ok(vec![None]),
            None => Err(ClientError::NotFound(name.into())),
        })?;
        let open = lock(&self.files).contains_key(&ino);
        let mut t = lock(&self.inodes);
        t.unlink(parent, name);
        t.forget_if_closed(ino, open);
        Ok(())
    }

    fn rename_names(&self, from: (u64, &str), to: (u64, &str), flags: RenameFlags) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let (src_ino, src) = self.lookup_name(from.0, from.1)?;
        if src.prefix_only {
            // A folder for a prefix is every name under it: programs copy it instead.
            return Err(Errno::EXDEV);
        }
        match self.lookup_name(to.0, to.1) {
            Ok(_) if noreplace => return Err(Errno::EEXIST),
            Ok((_, dst)) if dst.entry.kind == Kind::Dir && src.entry.kind != Kind::Dir => return Err(Errno::EISDIR),
            Ok((_, dst)) if dst.entry.kind != Kind::Dir && src.entry.kind == Kind::Dir => return Err(Errno::ENOTDIR),
            Ok((ino, dst)) if dst.entry.kind == Kind::Dir => {
                if ino == src_ino {
                    return Ok(());
                }
                self.unlink_name(to.0, to.1, true)?;
            }
            Ok((ino, _)) if ino == src_ino => return Ok(()),
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let cap = src.entry.cap.clone();
        let (skey, dkey) = (src.key.clone(), self.key_in(to.0, to.1)?);
        let (sdir, ddir) = (self.dir(from.0)?, self.dir(to.0)?);
        if sdir.read() == ddir.read() {
            // One namespace directory (also between folders of a prefix): one atomic change.
            self.edit(from.0, &[&skey, &dkey], |cur| match &cur[0] {
                Some(e) if e.cap == cap => Ok(vec![None, Some(e.clone())]),
                _ => Err(ClientError::NotFound(from.1.into())),
            })?;
        } else {
            let moved = self.session().resealed(&sdir, &ddir, src.entry.clone()).map_err(errno)?;
            let moved = Entry { mode: src.entry.mode, mtime_ns: src.entry.mtime_ns, ..moved };
            self.edit(to.0, &[&dkey], |_| Ok(vec![Some(moved.clone())]))?;
            self.edit(from.0, &[&skey], |cur| match &cur[0] {
                Some(e) if e.cap == cap => Ok(vec![None]),
                _ => Ok(vec![cur[0].clone()]),
            })?;
        }
        lock(&self.inodes).rename(from.0, from.1, to.0, to.1, &dkey);
        // A file open for writing is stored under its new name.
        let open = lock(&self.files).get(&src_ino).cloned();
        if let (Some(f), Ok(w)) = (open, self.wdir(to.0)) {
            if let Some(b) = lock(&f).back.as_ref() {
                b.moved(&w, &dkey).map_err(|_| Errno::EIO)?;
            }
        }
        if src.entry.kind == Kind::Dir {
            // Its cap may have been resealed: read it afresh under the new parent.
            self.lookup_name(to.0, to.1)?;
        }
        Ok(())
    }
}

impl Filesystem for Drive {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Writes and reads of up to 1 MiB per request (the kernel's default is 128 KiB or less);
        // a kernel that refuses keeps its own sizes.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_BIG_WRITES | fuser::InitFlags::FUSE_MAX_PAGES);
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn destroy(&mut self) {
        let open: Vec<u64> = lock(&self.files).keys().copied().collect();
        for ino in open {
            if let Err(e) = self.flush(ino) {
                tracing::warn!(ino, errno = ?e, "a file open at unmount could not be stored; it stays in the cache");
            }
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = name_of(name).and_then(|n| self.lookup_name(parent.0, n));
        self.reply_entry(r, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let open = lock(&self.files).contains_key(&ino.0);
        lock(&self.inodes).forgotten(ino.0, nlookup, open);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inode(ino.0) {
            Ok(i) => reply.attr(&TTL, &self.attr(ino.0, &i)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.setattr(ino.0, size, mode, mtime.map(ns_of)) {
            Ok(i) => reply.attr(&TTL, &self.attr(ino.0, &i)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inode(ino.0) {
            Ok(i) if i.entry.kind == Kind::Symlink => reply.data(i.entry.cap.as_bytes()),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let r = name_of(name).and_then(|n| self.mkdir(parent.0, n, mode & !umask));
        self.reply_entry(r, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match name_of(name).and_then(|n| self.unlink_name(parent.0, n, false)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match name_of(name).and_then(|n| self.unlink_name(parent.0, n, true)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let r = name_of(link_name).and_then(|n| {
            let target = target.to_str().ok_or(Errno::EINVAL)?;
            self.create_entry(parent.0, n, new_entry(Kind::Symlink, target.to_string(), target.len() as u64))
        });
        self.reply_entry(r, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = name_of(name)
            .and_then(|a| Ok((a, name_of(newname)?)))
            .and_then(|(a, b)| self.rename_names((parent.0, a), (newparent.0, b), flags));
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        match self.open(ino.0, write, write && flags.0 & libc::O_TRUNC != 0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match name_of(name).and_then(|n| self.create(parent.0, n, mode & !umask)) {
            Ok((ino, i, fh)) => {
                lock(&self.inodes).looked_up(ino);
                reply.created(&TTL, &self.attr(ino, &i), Generation(0), FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        match Drive::flush(self, ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match Drive::flush(self, ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match Drive::release(self, fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing(ino.0) {
            Ok(l) => {
                let fh = self.next_fh.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                lock(&self.dirs).insert(fh, l);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        // The listing is taken out while pages are read, so other listings are not held up.
        let Some(mut l) = lock(&self.dirs).remove(&fh.0) else { return reply.error(Errno::EBADF) };
        let r = self.fill(&mut l, offset, &mut reply);
        lock(&self.dirs).insert(fh.0, l);
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directory changes are in the grid when their call returns.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (total, free) = self.space();
        let bsize = 1u64 << 17;
        reply.statfs(total / bsize, free / bsize, free / bsize, 1 << 40, 1 << 40, bsize as u32, 1024, bsize as u32);
    }

    // Extended attributes are not kept: ENOTSUP, which programs (cp -a, rsync -X) take as "none".
    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOTSUP);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOTSUP);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match self.inode(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
