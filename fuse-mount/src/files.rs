//! Open files: reads through a window of verified bytes with the next window fetched ahead when
//! reading is sequential; writes into a private write-back file beside a journal naming where it
//! belongs, uploaded as the file's new version on flush/fsync/close.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blackbox_client::{ClientError, FileReader, Session, UploadOptions};
use blackbox_core::{LiteralCap, SlotWriteCap, MAX_LITERAL_LEN};
use tokio::task::JoinHandle;

/// Bytes fetched from the grid at a time (and prefetched ahead of a sequential reader).
pub const WINDOW: u64 = 8 << 20;
/// First line of a journal file.
const JOURNAL_MAGIC: &str = "blackbox-dirty 1";
/// Longest journal accepted (a cap and a name).
const JOURNAL_MAX: u64 = 8 << 10;

/// A window of a file's bytes being fetched.
type Pending = JoinHandle<Result<Vec<u8>, ClientError>>;

/// What is open of one file (shared by all its handles, behind the file's own lock).
#[derive(Default)]
pub struct FileState {
    /// The reader of the stored version, and the cap it reads.
    reader: Option<(String, Arc<FileReader>)>,
    /// The window last fetched: where it starts, and its bytes.
    window: Option<(u64, Arc<Vec<u8>>)>,
    /// The next window, being fetched.
    ahead: Option<(u64, Pending)>,
    /// Local content being written, when the file is open for writing.
    pub back: Option<WriteBack>,
    /// Handles open on the file.
    pub handles: usize,
}

/// A file's content being written: the local copy and its journal.
pub struct WriteBack {
    file: File,
    data: PathBuf,
    journal: PathBuf,
    /// Bytes in the local copy.
    pub size: u64,
    /// Whether it differs from the stored version.
    pub dirty: bool,
}

impl WriteBack {
    /// A new, empty local copy in `cache_dir` for the file `name` of the directory `parent`;
    /// the journal (0600, durable) says where it belongs if the mount dies before it is stored.
    pub fn create(cache_dir: &Path, parent: &SlotWriteCap, name: &str) -> std::io::Result<Self> {
        let id = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 12]>());
        let data = cache_dir.join(format!("{id}.data"));
        let journal = cache_dir.join(format!("{id}.journal"));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&data)?;
        blackbox_util::write_secret(&journal, format!("{JOURNAL_MAGIC}\n{parent}\n{name}\n").as_bytes())?;
        Ok(Self { file, data, journal, size: 0, dirty: false })
    }

    /// Writes `bytes` at `offset`.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(bytes, offset)?;
        self.size = self.size.max(offset + bytes.len() as u64);
        self.dirty = true;
        Ok(())
    }

    /// Cuts or extends the copy to `size` bytes.
    pub fn set_len(&mut self, size: u64) -> std::io::Result<()> {
        self.file.set_len(size)?;
        self.size = size;
        self.dirty = true;
        Ok(())
    }

    /// Up to `len` bytes at `offset`.
    pub fn read_at(&self, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Points the journal at a new place (the file was renamed while open).
    pub fn moved(&self, parent: &SlotWriteCap, name: &str) -> std::io::Result<()> {
        blackbox_util::write_secret(&self.journal, format!("{JOURNAL_MAGIC}\n{parent}\n{name}\n").as_bytes())
    }
}

impl Drop for WriteBack {
    fn drop(&mut self) {
        // Only a stored (clean) copy is removed: a dirty one stays for the next mount to store.
        if !self.dirty {
            let _ = std::fs::remove_file(&self.journal);
            let _ = std::fs::remove_file(&self.data);
        }
    }
}

/// Stores the local copy `back` and returns its cap: inline when small, uploaded otherwise.
pub async fn store(session: &Session, opts: &UploadOptions, back: &WriteBack) -> Result<String, ClientError> {
    back.file.sync_data()?;
    store_file(session, opts, &back.data, back.size).await
}

async fn store_file(session: &Session, opts: &UploadOptions, path: &Path, size: u64) -> Result<String, ClientError> {
    if size as usize <= MAX_LITERAL_LEN {
        let mut data = Vec::with_capacity(size as usize);
        File::open(path)?.take(size).read_to_end(&mut data)?;
        return Ok(LiteralCap { data }.to_string());
    }
    let path = path.to_path_buf();
    let open = move || File::open(&path).map(|f| std::io::BufReader::with_capacity(1 << 20, f.take(size)));
    Ok(session.client.upload(open, size, opts, Default::default()).await?.cap.to_string())
}

impl FileState {
    /// Up to `len` bytes at `offset` of the stored version `cap` (of `size` bytes).
    pub fn read_stored(
        &mut self,
        session: &Arc<Session>,
        rt: &tokio::runtime::Handle,
        cap: &str,
        (offset, len): (u64, u32),
    ) -> Result<Vec<u8>, ClientError> {
        if self.reader.as_ref().is_none_or(|(c, _)| c != cap) {
            let r = rt.block_on(session.client.open_reader(cap))?;
            (self.reader, self.window, self.ahead) = (Some((cap.to_string(), Arc::new(r))), None, None);
        }
        let reader = self.reader.as_ref().map(|(_, r)| r.clone()).ok_or(ClientError::Cancelled)?;
        let end = offset.saturating_add(u64::from(len)).min(reader.size());
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let start = at - at % WINDOW;
            let window = self.window(session, rt, &reader, start)?;
            let from = (at - start) as usize;
            let to = ((end - start) as usize).min(window.len());
            if from >= to {
                break;
            }
            out.extend_from_slice(&window[from..to]);
            at = start + to as u64;
        }
        Ok(out)
    }

    /// The window starting at `start`, fetched (or taken from the prefetch); a read into a new
    /// window right after the last one starts fetching the one after it.
    fn window(
        &mut self,
        session: &Arc<Session>,
        rt: &tokio::runtime::Handle,
        reader: &Arc<FileReader>,
        start: u64,
    ) -> Result<Arc<Vec<u8>>, ClientError> {
        if let Some((s, w)) = &self.window {
            if *s == start {
                return Ok(w.clone());
            }
        }
        let sequential = self.window.as_ref().is_some_and(|(s, _)| s + WINDOW == start);
        let bytes = match self.ahead.take() {
            Some((s, pending)) if s == start => rt.block_on(pending).map_err(|_| ClientError::Cancelled)??,
            other => {
                if let Some((_, p)) = other {
                    p.abort();
                }
                rt.block_on(session.client.read_at(reader, start, WINDOW))?
            }
        };
        let bytes = Arc::new(bytes);
        self.window = Some((start, bytes.clone()));
        let next = start + WINDOW;
        if (sequential || start == 0) && next < reader.size() {
            let (session, reader) = (session.clone(), reader.clone());
            let task = rt.spawn(async move { session.client.read_at(&reader, next, WINDOW).await });
            self.ahead = Some((next, task));
        }
        Ok(bytes)
    }

    /// Forgets what was read of the stored version (a new one was written).
    pub fn stored_changed(&mut self) {
        if let Some((_, p)) = self.ahead.take() {
            p.abort();
        }
        (self.reader, self.window) = (None, None);
    }
}

/// A dirty copy a mount left behind: where it belongs and its bytes.
pub struct Leftover {
    /// The directory it belongs in.
    pub parent: SlotWriteCap,
    /// Its name there.
    pub name: String,
    /// The local copy.
    pub data: PathBuf,
    /// Its journal.
    pub journal: PathBuf,
}

/// The dirty copies left in `cache_dir` by a mount that did not end cleanly.
pub fn leftovers(cache_dir: &Path) -> Vec<Leftover> {
    let Ok(dir) = std::fs::read_dir(cache_dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let journal = e.path();
        if journal.extension().is_none_or(|x| x != "journal") {
            continue;
        }
        let data = journal.with_extension("data");
        match parse_journal(&journal) {
            Some((parent, name)) if data.exists() => out.push(Leftover { parent, name, data, journal }),
            _ => tracing::warn!(journal = %journal.display(), "unreadable write-back journal left as it is"),
        }
    }
    out
}

fn parse_journal(path: &Path) -> Option<(SlotWriteCap, String)> {
    let mut text = String::new();
    File::open(path).ok()?.take(JOURNAL_MAX).read_to_string(&mut text).ok()?;
    let mut lines = text.lines();
    if lines.next()? != JOURNAL_MAGIC {
        return None;
    }
    let parent = lines.next()?.parse().ok()?;
    let name = lines.next()?.to_string();
    Some((parent, name))
}

/// Stores a leftover copy and links it where its journal says (replacing the entry there).
pub async fn recover(session: &Session, opts: &UploadOptions, l: &Leftover) -> Result<(), ClientError> {
    let size = std::fs::metadata(&l.data)?.len();
    let cap = store_file(session, opts, &l.data, size).await?;
    let fresh = blackbox_client::namespace::new_entry(blackbox_core::dir::Kind::File, cap, size);
    session
        .client
        .dir_update(&l.parent, &[&l.name], opts, |cur| {
            let mut e = cur[0].clone().filter(|e| e.kind == blackbox_core::dir::Kind::File).unwrap_or(fresh.clone());
            (e.cap, e.size, e.mtime_ns) = (fresh.cap.clone(), size, fresh.mtime_ns);
            Ok(vec![Some(e)])
        })
        .await?;
    std::fs::remove_file(&l.journal)?;
    std::fs::remove_file(&l.data)?;
    Ok(())
}
