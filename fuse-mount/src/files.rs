//! Open files: reads through a window of verified bytes with the next window fetched ahead when
//! reading is sequential; writes into a private write-back file beside a journal naming where it
//! belongs, uploaded as the file's new version on flush/fsync/close.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blackbox_client::{ClientError, FileReader, Session, UploadOptions};
use blackbox_core::multi::Part;
use blackbox_core::SlotWriteCap;
use tokio::task::JoinHandle;

/// Bytes fetched from the grid at a time (and prefetched ahead of a sequential reader).
pub const WINDOW: u64 = 8 << 20;
/// Windows fetched ahead of a sequential reader.
const AHEAD: u64 = 2;
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
    /// The next windows, being fetched, in order.
    ahead: std::collections::VecDeque<(u64, Pending)>,
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
    /// Chunks of a large file already stored or being stored, by index; a write into a chunk
    /// drops it from here (it is stored again at the next flush).
    chunks: BTreeMap<u64, Chunk>,
}

/// A chunk of the local copy stored as one part of a multi-part file.
enum Chunk {
    Storing(JoinHandle<Result<String, ClientError>>),
    Stored(String),
}

/// Bytes per part of a file larger than one chunk: parts are stored while the writer goes on.
pub const CHUNK: u64 = 64 << 20;

impl WriteBack {
    /// A new, empty local copy in `cache_dir` for the file `name` of the directory `parent`;
    /// the journal (0600, durable) says where it belongs if the mount dies before it is stored.
    pub fn create(cache_dir: &Path, parent: &SlotWriteCap, name: &str) -> std::io::Result<Self> {
        let id = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 12]>());
        let data = cache_dir.join(format!("{id}.data"));
        let journal = cache_dir.join(format!("{id}.journal"));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&data)?;
        write_journal(&journal, parent, name)?;
        Ok(Self { file, data, journal, size: 0, dirty: false, chunks: BTreeMap::new() })
    }

    /// Writes `bytes` at `offset`; returns the chunk this write completed (its end passed), which
    /// may be stored now while the writer goes on.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<Option<u64>> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let end = offset + bytes.len() as u64;
        self.changed(offset / CHUNK..=(end - 1) / CHUNK);
        self.file.write_all_at(bytes, offset)?;
        self.size = self.size.max(end);
        self.dirty = true;
        let last_full = (end / CHUNK).checked_sub(1);
        Ok(last_full.filter(|&c| (c + 1) * CHUNK > offset && !self.chunks.contains_key(&c)))
    }

    /// Forgets the stored chunks in `range` (their bytes change).
    fn changed(&mut self, range: std::ops::RangeInclusive<u64>) {
        let hit: Vec<u64> = self.chunks.range(range).map(|(&c, _)| c).collect();
        for c in hit {
            if let Some(Chunk::Storing(task)) = self.chunks.remove(&c) {
                task.abort();
            }
        }
    }

    /// Starts storing chunk `c` (its bytes are final unless written again).
    pub fn store_chunk(&mut self, c: u64, task: impl FnOnce(PathBuf, u64) -> JoinHandle<Result<String, ClientError>>) {
        self.chunks.insert(c, Chunk::Storing(task(self.data.clone(), c * CHUNK)));
    }

    /// Cuts or extends the copy to `size` bytes.
    pub fn set_len(&mut self, size: u64) -> std::io::Result<()> {
        self.changed(size / CHUNK..=u64::MAX);
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
        write_journal(&self.journal, parent, name)
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

/// Stores the local copy `back` and returns its cap: inline when small, uploaded otherwise; a
/// copy larger than one chunk as a multi-part file of its chunks (those stored already reused).
/// (The copy is not synced to the local disk first: once stored in the grid it is not needed, and
/// until then a crash of the machine may lose what was never fsync'd, as on any filesystem.)
pub async fn store(session: &Session, opts: &UploadOptions, back: &mut WriteBack) -> Result<String, ClientError> {
    if back.size <= CHUNK {
        back.changed(0..=u64::MAX);
        return store_range(session, opts, &back.data, 0, back.size).await;
    }
    let mut parts = Vec::new();
    for c in 0..back.size.div_ceil(CHUNK) {
        let len = CHUNK.min(back.size - c * CHUNK);
        let cap = match back.chunks.remove(&c) {
            Some(Chunk::Stored(cap)) if len == CHUNK => cap,
            Some(Chunk::Storing(task)) if len == CHUNK => task.await.map_err(|_| ClientError::Cancelled)??,
            _ => store_range(session, opts, &back.data, c * CHUNK, len).await?,
        };
        back.chunks.insert(c, Chunk::Stored(cap.clone()));
        parts.push(Part { size: len, cap });
    }
    session.client.store_multi(parts, opts).await
}

/// Stores bytes `offset..offset+len` of the file at `path`; returns the cap.
pub async fn store_range(
    session: &Session,
    opts: &UploadOptions,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<String, ClientError> {
    let path = path.to_path_buf();
    let open = move || -> std::io::Result<_> {
        let mut f = File::open(&path)?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))?;
        Ok(std::io::BufReader::with_capacity(1 << 20, f.take(len)))
    };
    session.client.store_content(open, len, opts).await
}

impl FileState {
    /// Up to `len` bytes at `offset` of the stored version `cap`.
    pub fn read_stored(
        &mut self,
        session: &Arc<Session>,
        rt: &tokio::runtime::Handle,
        cap: &str,
        (offset, len): (u64, u32),
    ) -> Result<Vec<u8>, ClientError> {
        if self.reader.as_ref().is_none_or(|(c, _)| c != cap) {
            let r = rt.block_on(session.client.open_reader(cap))?;
            self.stored_changed();
            self.reader = Some((cap.to_string(), Arc::new(r)));
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
        // Fetches queued for other windows are of no use to a reader that moved elsewhere.
        while self.ahead.front().is_some_and(|(s, _)| *s != start) {
            if let Some((_, p)) = self.ahead.pop_front() {
                p.abort();
            }
        }
        let bytes = match self.ahead.pop_front() {
            Some((_, pending)) => rt.block_on(pending).map_err(|_| ClientError::Cancelled)??,
            None => rt.block_on(session.client.read_at(reader, start, WINDOW))?,
        };
        let bytes = Arc::new(bytes);
        self.window = Some((start, bytes.clone()));
        if sequential || start == 0 {
            let mut next = self.ahead.back().map_or(start, |(s, _)| *s) + WINDOW;
            while next < reader.size() && (self.ahead.len() as u64) < AHEAD {
                let (session, reader) = (session.clone(), reader.clone());
                let task = rt.spawn(async move { session.client.read_at(&reader, next, WINDOW).await });
                self.ahead.push_back((next, task));
                next += WINDOW;
            }
        }
        Ok(bytes)
    }

    /// Forgets what was read of the stored version (a new one was written).
    pub fn stored_changed(&mut self) {
        for (_, p) in self.ahead.drain(..) {
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

/// Writes (0600, durably) the journal saying a copy belongs at `name` of the directory `parent`.
fn write_journal(path: &Path, parent: &SlotWriteCap, name: &str) -> std::io::Result<()> {
    blackbox_util::write_secret(path, format!("{JOURNAL_MAGIC}\n{parent}\n{name}\n").as_bytes())
}

fn parse_journal(path: &Path) -> Option<(SlotWriteCap, String)> {
    let mut text = String::new();
    File::open(path).ok()?.take(JOURNAL_MAX).read_to_string(&mut text).ok()?;
    parse_journal_text(&text)
}

/// A journal's text: where its copy belongs (the directory's write cap and the name), if valid.
pub fn parse_journal_text(text: &str) -> Option<(SlotWriteCap, String)> {
    let mut lines = text.lines();
    if lines.next()? != JOURNAL_MAGIC {
        return None;
    }
    let parent = lines.next()?.parse().ok()?;
    let name = lines.next()?.to_string();
    if name.is_empty() || name.len() > blackbox_core::dir::MAX_NAME_LEN || lines.next().is_some() {
        return None;
    }
    Some((parent, name))
}

/// Stores a leftover copy and links it where its journal says (replacing the entry there).
pub async fn recover(session: &Session, opts: &UploadOptions, l: &Leftover) -> Result<(), ClientError> {
    let size = std::fs::metadata(&l.data)?.len();
    let cap = store_range(session, opts, &l.data, 0, size).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journals_round_trip_and_junk_is_refused() {
        let cap = blackbox_client::dir::new_write_cap();
        let text = format!("{JOURNAL_MAGIC}\n{cap}\nphotos/a b.txt\n");
        let (parent, name) = parse_journal_text(&text).unwrap();
        assert_eq!((parent.to_string(), name.as_str()), (cap.to_string(), "photos/a b.txt"));
        for bad in ["", "blackbox-dirty 2\nx\ny\n", &format!("{JOURNAL_MAGIC}\nbb:slot-rw:zz\nn\n")] {
            assert!(parse_journal_text(bad).is_none(), "{bad:?}");
        }
        assert!(parse_journal_text(&format!("{JOURNAL_MAGIC}\n{cap}\n\n")).is_none(), "an empty name");
    }
}
