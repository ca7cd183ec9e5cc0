//! The one durable writer: every file blackbox replaces goes through [`AtomicFile`], which writes
//! a uniquely named temporary file beside the target, fsyncs it, renames it over the target and
//! fsyncs the directory, so a crash leaves either the old or the new file, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of ordinary state files (before the umask).
const PUBLIC_MODE: u32 = 0o644;
/// Mode of secret files, from their first byte.
const SECRET_MODE: u32 = 0o600;

/// A file being written that replaces `target` only when committed; dropped uncommitted, it
/// leaves nothing behind.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
}

fn temp_name(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory, so that a rename or a new entry in it survives a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl AtomicFile {
    /// Starts a replacement of `target` with mode 0644 (less the umask); creates the directory.
    pub fn create(target: &Path) -> io::Result<Self> {
        Self::with_mode(target, PUBLIC_MODE)
    }

    /// Starts a replacement of `target` readable by its owner only (0600 from the first byte).
    pub fn create_secret(target: &Path) -> io::Result<Self> {
        Self::with_mode(target, SECRET_MODE)
    }

    fn with_mode(target: &Path, mode: u32) -> io::Result<Self> {
        std::fs::create_dir_all(parent(target))?;
        let tmp = temp_name(target);
        let file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        Ok(Self { file: Some(file), tmp, target: target.to_path_buf() })
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file.as_mut().ok_or_else(|| io::Error::other("atomic file already committed"))
    }

    /// Makes the new contents durable and puts them in place of the target.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file()?;
        file.flush()?;
        file.sync_all()?;
        self.file = None;
        std::fs::rename(&self.tmp, &self.target)?;
        sync_dir(parent(&self.target))
    }

    /// Makes the new contents durable and puts them at the target only if no file is there yet;
    /// returns false (and discards them) when one is.
    pub fn commit_new(mut self) -> io::Result<bool> {
        let file = self.file()?;
        file.flush()?;
        file.sync_all()?;
        self.file = None;
        // A hard link never replaces an existing file: the first of two racing creators wins.
        let linked = match std::fs::hard_link(&self.tmp, &self.target) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        std::fs::remove_file(&self.tmp)?;
        sync_dir(parent(&self.target))?;
        Ok(linked)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `path` with `bytes` durably and atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Replaces `path` with secret `bytes` (mode 0600 from the first byte), durably and atomically.
pub fn write_secret(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create_secret(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Reads a secret file, or creates it (mode 0600, durably) with `make()` if it does not exist.
/// Two processes creating it at once agree on one secret: the second reads the first's.
pub fn load_or_create_secret(path: &Path, make: impl FnOnce() -> Vec<u8>) -> io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = AtomicFile::create_secret(path)?;
    f.write_all(&make())?;
    f.commit_new()?;
    std::fs::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn leftovers(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    }

    #[test]
    fn replaces_atomically_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.toml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"three").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"two", "uncommitted writes change nothing");
        assert_eq!(leftovers(path.parent().unwrap()), 0);
    }

    #[test]
    fn secrets_are_private_and_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        let a = load_or_create_secret(&path, || vec![1; 32]).unwrap();
        let b = load_or_create_secret(&path, || vec![2; 32]).unwrap();
        assert_eq!(a, vec![1; 32]);
        assert_eq!(a, b);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_secret(&path, b"x").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(leftovers(dir.path()), 0);
    }

    #[test]
    fn racing_creators_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || load_or_create_secret(&path, || vec![i; 16]).unwrap())
            })
            .collect();
        let got: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(got.iter().all(|g| *g == got[0]));
    }
}

/// An exclusive advisory lock on a file (`flock`), held until dropped: serialises the
/// read-modify-write of a state file shared by several processes of one user.
pub struct FileLock {
    _file: File,
}

/// Blocks until this process holds the exclusive lock on `path` (created if missing).
pub fn lock(path: &Path) -> io::Result<FileLock> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(parent(path))?;
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(PUBLIC_MODE).open(path)?;
    loop {
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(FileLock { _file: file });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn lock_serialises_read_modify_write() {
        let dir = tempfile::tempdir().unwrap();
        let (counter, lockfile) = (dir.path().join("n"), dir.path().join("n.lock"));
        write_atomic(&counter, b"0").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (counter, lockfile) = (counter.clone(), lockfile.clone());
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let _l = lock(&lockfile).unwrap();
                        let n: u32 = std::fs::read_to_string(&counter).unwrap().parse().unwrap();
                        write_atomic(&counter, (n + 1).to_string().as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&counter).unwrap(), "200");
    }
}

/// Space on the filesystem holding `path`: bytes free to unprivileged users, bytes in all, and
/// the filesystem's name when known (`ext4`, `xfs`, `tmpfs`…).
pub fn disk_space(path: &Path) -> io::Result<(u64, u64, &'static str)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid C string and `st` a plain struct the call fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bsize = st.f_bsize as u64;
    let name = match st.f_type as u64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x2FC1_2FC1 => "zfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlay",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0x4d44 => "vfat",
        _ => "other",
    };
    Ok((st.f_bavail as u64 * bsize, st.f_blocks as u64 * bsize, name))
}
