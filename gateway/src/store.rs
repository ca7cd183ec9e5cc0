//! Buckets and objects as namespace entries: a bucket is a directory under the gateway's root,
//! an object is an entry of its bucket named by its full key, with its S3 attributes (ETag,
//! content headers, user metadata) in the entry's metadata.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use blackbox_client::namespace::{new_entry, DirCap};
use blackbox_client::{ClientError, PutOptions, Session, UploadOptions};
use blackbox_core::dir::{Entry, Kind};
use s3s::{s3_error, S3Error};

/// Entry metadata keys the gateway uses; user metadata is stored under `x-amz-meta-<name>`.
pub const ETAG: &str = "etag";
/// The directory of multipart uploads in progress, beside the buckets.
pub const UPLOADS: &str = ".multipart-uploads";
/// Prefix of user metadata keys.
pub const USER_META: &str = "x-amz-meta-";
/// Content headers kept with an object.
pub const CONTENT_HEADERS: [&str; 4] = ["cache-control", "content-disposition", "content-encoding", "content-language"];

/// The gateway's buckets over one session.
pub struct Store {
    /// The client.
    pub session: Arc<Session>,
    root: blackbox_core::SlotWriteCap,
    /// Multipart uploads in progress: a directory per upload (see `multipart.rs`).
    pub uploads: DirCap,
    buckets: Mutex<HashMap<String, DirCap>>,
    /// Object writes waiting for their bucket's next root write, by bucket directory.
    /// (whether a leader is committing them, the writes), by bucket directory.
    queued: Arc<Mutex<Queues>>,
    /// How objects are encoded.
    pub opts: UploadOptions,
}

/// Per bucket directory: whether a committer runs, and the writes waiting for it.
type Queues = HashMap<[u8; 32], (bool, Vec<Queued>)>;

/// One object write waiting to be committed with others of its bucket.
struct Queued {
    key: String,
    entry: Option<Entry>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Maps client errors to S3 errors without leaking caps or paths.
pub fn internal(e: ClientError) -> S3Error {
    match e {
        ClientError::Exists(_) => s3_error!(BucketAlreadyOwnedByYou),
        e => {
            tracing::warn!(error = %e, "grid operation failed");
            s3_error!(ServiceUnavailable, "the storage grid could not complete the request; retry")
        }
    }
}

/// Whether a bucket name follows the S3 rules (3–63 of a-z, 0-9, '.', '-', starting and ending
/// with a letter or digit).
pub fn valid_bucket(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name.chars().all(ok_char)
        && edge(name.chars().next())
        && edge(name.chars().last())
        && !name.contains("..")
}

impl Store {
    /// Opens (creating if needed) the root directory at `root` in the session's namespace.
    pub async fn open(session: Arc<Session>, root_path: &str) -> Result<Self, ClientError> {
        let dir = session.mkdir(root_path, true).await?;
        let DirCap::Write(root) = dir else { return Err(ClientError::ReadOnly(root_path.into())) };
        let opts = session.upload_options(&PutOptions::default())?;
        // Not a bucket: its name is no valid bucket name.
        let uploads = session.mkdir(&format!("{}/{UPLOADS}", root_path.trim_end_matches('/')), true).await?;
        let (buckets, queued) = (Mutex::new(HashMap::new()), Arc::default());
        Ok(Self { session, root, uploads, buckets, queued, opts })
    }

    fn cached(&self, name: &str) -> Option<DirCap> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every bucket with its creation time (ns).
    pub async fn list_buckets(&self) -> Result<Vec<(String, u64)>, S3Error> {
        let c = &self.session.client;
        let read = self.root.read_cap();
        let snap = c.dir_read(&read).await.map_err(internal)?;
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = c.dir_list(&read, &snap, after.as_deref(), 1000).await.map_err(internal)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let buckets = page.into_iter().filter(|(n, e)| e.kind == Kind::Dir && valid_bucket(n));
            out.extend(buckets.map(|(n, e)| (n, e.mtime_ns)));
        }
        Ok(out)
    }

    /// The bucket's directory, or NoSuchBucket.
    pub async fn bucket(&self, name: &str) -> Result<DirCap, S3Error> {
        if let Some(d) = self.cached(name) {
            return Ok(d);
        }
        let c = &self.session.client;
        let read = self.root.read_cap();
        let snap = c.dir_read(&read).await.map_err(internal)?;
        let entry = c.dir_get(&read, &snap, name).await.map_err(internal)?;
        let entry = entry.filter(|e| e.kind == Kind::Dir).ok_or_else(|| s3_error!(NoSuchBucket))?;
        let dir = Session::child_dir(&DirCap::Write(self.root.clone()), &entry, name).map_err(internal)?;
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).insert(name.into(), dir.clone());
        Ok(dir)
    }

    /// Creates a bucket (BucketAlreadyOwnedByYou when it exists).
    pub async fn create_bucket(&self, name: &str) -> Result<(), S3Error> {
        if !valid_bucket(name) {
            return Err(s3_error!(InvalidBucketName));
        }
        self.link_new_dir(&DirCap::Write(self.root.clone()), name).await?;
        Ok(())
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), S3Error> {
        let dir = self.bucket(name).await?;
        if !self.list(&dir, None, 1).await?.is_empty() {
            return Err(s3_error!(BucketNotEmpty));
        }
        let c = &self.session.client;
        c.dir_update(&self.root, &[name], &self.opts, |_| Ok(vec![None])).await.map_err(internal)?;
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }

    /// Makes a new directory and links it as `name` in `parent` (refused if taken).
    pub async fn link_new_dir(&self, parent: &DirCap, name: &str) -> Result<DirCap, S3Error> {
        let c = &self.session.client;
        let child = c.dir_create(&self.opts).await.map_err(internal)?;
        let entry = self.session.entry_for_cap(parent, &child.to_string()).map_err(internal)?;
        self.create(parent, name, entry).await?;
        Ok(DirCap::Write(child))
    }

    /// Sets `name` in `dir` only if absent.
    pub async fn create(&self, dir: &DirCap, name: &str, entry: Entry) -> Result<(), S3Error> {
        let w = dir.write(name).map_err(|_| s3_error!(AccessDenied))?;
        let edit = |cur: Vec<Option<Entry>>| match cur[0] {
            Some(_) => Err(ClientError::Exists(name.into())),
            None => Ok(vec![Some(entry.clone())]),
        };
        self.session.client.dir_update(w, &[name], &self.opts, edit).await.map_err(internal)?;
        Ok(())
    }

    /// Up to `limit` objects of a bucket after `after`.
    pub async fn list(&self, dir: &DirCap, after: Option<&str>, limit: usize) -> Result<Vec<(String, Entry)>, S3Error> {
        let c = &self.session.client;
        let read = dir.read();
        let snap = c.dir_read(&read).await.map_err(internal)?;
        c.dir_list(&read, &snap, after, limit).await.map_err(internal)
    }

    /// The object `key` of a bucket.
    pub async fn object(&self, dir: &DirCap, key: &str) -> Result<Entry, S3Error> {
        self.entry(dir, key).await?.filter(|e| e.kind == Kind::File).ok_or_else(|| s3_error!(NoSuchKey))
    }

    /// The entry `name` of `dir`, if any.
    pub async fn entry(&self, dir: &DirCap, name: &str) -> Result<Option<Entry>, S3Error> {
        let c = &self.session.client;
        let read = dir.read();
        let snap = c.dir_read(&read).await.map_err(internal)?;
        c.dir_get(&read, &snap, name).await.map_err(internal)
    }

    /// Sets (or with `None` removes) the object `key`. Writes to one bucket that arrive while its
    /// root is being written are committed together in the next root write (group commit), so
    /// parallel PUTs of small objects share one compare-and-swap.
    pub async fn set(&self, dir: &DirCap, key: &str, entry: Option<Entry>) -> Result<(), S3Error> {
        let w = dir.write(key).map_err(|_| s3_error!(AccessDenied))?.clone();
        let id = dir.read().verify_cap().storage_index();
        let (done, result) = tokio::sync::oneshot::channel();
        let leader = {
            let mut all = self.queued.lock().unwrap_or_else(|p| p.into_inner());
            let (active, queue) = all.entry(id).or_default();
            queue.push(Queued { key: key.to_string(), entry, done });
            !std::mem::replace(active, true)
        };
        if leader {
            // Its own task: a request that goes away must not strand the writes queued behind it.
            let (session, opts, queued) = (self.session.clone(), self.opts.clone(), self.queued.clone());
            tokio::spawn(async move { commit_queued(&session, &opts, &queued, &w, id).await });
        }
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "grid operation failed");
                Err(s3_error!(ServiceUnavailable, "the storage grid could not complete the request; retry"))
            }
            Err(_) => Err(s3_error!(InternalError)),
        }
    }
}

/// Commits the queued writes of one bucket, batch after batch, until none is left; writes
/// that queue while a batch is being written go together in the next one.
async fn commit_queued(
    session: &Session,
    opts: &UploadOptions,
    queued: &Mutex<Queues>,
    w: &blackbox_core::SlotWriteCap,
    id: [u8; 32],
) {
    loop {
        let batch: Vec<Queued> = {
            let mut all = queued.lock().unwrap_or_else(|p| p.into_inner());
            match all.get_mut(&id) {
                Some((_, queue)) if !queue.is_empty() => std::mem::take(queue),
                _ => {
                    all.remove(&id);
                    return;
                }
            }
        };
        // The last write of a key in the batch wins, as if they were applied in order.
        let mut last: BTreeMap<String, Option<Entry>> = BTreeMap::new();
        for q in &batch {
            last.insert(q.key.clone(), q.entry.clone());
        }
        let names: Vec<&str> = last.keys().map(String::as_str).collect();
        let values: Vec<Option<Entry>> = last.values().cloned().collect();
        let c = &session.client;
        let r = c.dir_update(w, &names, opts, |_| Ok(values.clone())).await;
        let r = r.map(|_| ()).map_err(|e| e.to_string());
        for q in batch {
            let _ = q.done.send(r.clone());
        }
    }
}

/// The entry of a stored object: its cap, size, content type and S3 attributes.
pub fn object_entry(cap: String, size: u64, content_type: Option<&str>, attrs: BTreeMap<String, String>) -> Entry {
    let mut e = new_entry(Kind::File, cap, size);
    e.content_type = content_type.unwrap_or("binary/octet-stream").chars().take(255).collect();
    e.metadata = attrs.into_iter().collect();
    e
}

/// An entry's metadata value.
pub fn attr<'a>(e: &'a Entry, key: &str) -> Option<&'a str> {
    e.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
