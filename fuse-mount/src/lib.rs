//! blackbox drive: a directory of the namespace mounted as an ordinary folder with FUSE. Every
//! operation is a thin layer over the client library: directories are read and edited as
//! namespace directories, files read through verified windows and written back on close/fsync.

mod files;
mod fs;
mod inodes;
mod ops;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use blackbox_client::namespace::{new_entry, DirCap};
use blackbox_client::{ClientError, PutOptions, Session, UploadOptions};
use blackbox_core::dir::Kind;
use thiserror::Error;
use tracing::{info, warn};

pub use files::parse_journal_text;
use files::FileState;
use inodes::{Inode, Inodes};

/// Why a mount could not start.
#[derive(Debug, Error)]
pub enum MountError {
    /// The client failed (options, or storing dirty files left by an earlier mount).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The cache directory or the mount itself failed.
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// Refuse every change (also implied by a read-only dircap).
    pub read_only: bool,
    /// Where write-back copies and their journals live (0700).
    pub cache_dir: PathBuf,
    /// FUSE worker threads.
    pub threads: usize,
}

/// A directory as read, and when.
type Snapshot = (std::time::Instant, Arc<blackbox_client::dir::DirSnapshot>);

/// The mounted filesystem's state; every lock is per inode or held only briefly.
pub struct Drive {
    session: Arc<Session>,
    rt: tokio::runtime::Handle,
    opts: UploadOptions,
    cache_dir: PathBuf,
    read_only: bool,
    owner: (u32, u32),
    inodes: Mutex<Inodes>,
    /// Open files by inode, each behind its own lock.
    files: Mutex<HashMap<u64, Arc<Mutex<FileState>>>>,
    /// Open file handles: which inode each is of.
    handles: Mutex<HashMap<u64, u64>>,
    /// Open directory listings.
    dirs: Mutex<HashMap<u64, fs::Listing>>,
    /// Directories read lately, by storage index, with when.
    snaps: Mutex<HashMap<[u8; 32], Snapshot>>,
    /// Edits made by this mount: a directory read that an edit overtook is not kept.
    edits: AtomicU64,
    next_fh: AtomicU64,
    /// Chunks of large files being stored at once (each holds its encoding buffers).
    chunk_uploads: Arc<tokio::sync::Semaphore>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drive {
    /// A drive over `root`, storing what earlier mounts left dirty in the cache first.
    pub fn new(
        session: Arc<Session>,
        rt: tokio::runtime::Handle,
        root: DirCap,
        cfg: &MountConfig,
    ) -> Result<Self, MountError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.cache_dir)
            .map_err(|source| MountError::Io { what: "cannot make the cache dir", source })?;
        let opts = session.upload_options(&PutOptions::default())?;
        for l in files::leftovers(&cfg.cache_dir) {
            match rt.block_on(files::recover(&session, &opts, &l)) {
                Ok(()) => info!(name = %l.name, "stored a file an earlier mount left unsaved"),
                Err(e) => {
                    warn!(name = %l.name, error = %e, "a file an earlier mount left unsaved is kept in the cache")
                }
            }
        }
        let read_only = cfg.read_only || matches!(root, DirCap::Read(_));
        let mut entry = new_entry(Kind::Dir, String::new(), 0);
        entry.mode = 0o755;
        let inodes = Inodes::new(Inode {
            parent: inodes::ROOT,
            name: String::new(),
            key: String::new(),
            entry,
            dir: Some(root),
            prefix: String::new(),
            prefix_only: false,
        });
        // SAFETY: getuid/getgid have no preconditions.
        let owner = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(Self {
            session,
            rt,
            opts,
            cache_dir: cfg.cache_dir.clone(),
            read_only,
            owner,
            inodes: Mutex::new(inodes),
            files: Mutex::default(),
            handles: Mutex::default(),
            dirs: Mutex::default(),
            snaps: Mutex::default(),
            edits: AtomicU64::new(0),
            next_fh: AtomicU64::new(1),
            chunk_uploads: Arc::new(tokio::sync::Semaphore::new(2)),
        })
    }
}

/// Mounts `drive` at `mountpoint` in the background; dropping (or `umount_and_join`) unmounts.
pub fn mount(drive: Drive, mountpoint: &Path, cfg: &MountConfig) -> Result<fuser::BackgroundSession, MountError> {
    let mut config = fuser::Config::default();
    config.mount_options.push(fuser::MountOption::FSName("blackbox".into()));
    config.mount_options.push(fuser::MountOption::Subtype("blackbox".into()));
    config.mount_options.push(fuser::MountOption::DefaultPermissions);
    if drive.read_only {
        config.mount_options.push(fuser::MountOption::RO);
    }
    config.n_threads = Some(cfg.threads.max(1));
    fuser::spawn_mount(drive, mountpoint, &config).map_err(|source| MountError::Io { what: "cannot mount", source })
}
