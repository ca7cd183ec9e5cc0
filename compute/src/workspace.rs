//! A job's directory on the node: `in/` with its inputs (read-only to the job) and `out/`, its
//! scratch space; removed when dropped.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{check_name, ComputeError};

/// Output files by name, with their bytes.
pub type Files = Vec<(String, Vec<u8>)>;

/// One job's private directory.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Creates a fresh, private workspace named `name` under `parent`.
    pub fn create(parent: &Path, name: &str) -> Result<Self, ComputeError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::create_dir_all(parent)?;
        let root = parent.join(name);
        if root.exists() {
            fs::remove_dir_all(&root)?;
        }
        fs::DirBuilder::new().mode(0o700).create(&root)?;
        let ws = Self { root };
        fs::create_dir(ws.inputs())?;
        fs::create_dir(ws.scratch())?;
        Ok(ws)
    }

    /// The directory of inputs (`/in` to the job).
    pub fn inputs(&self) -> PathBuf {
        self.root.join("in")
    }

    /// The scratch directory (`/out` to the job).
    pub fn scratch(&self) -> PathBuf {
        self.root.join("out")
    }

    /// Where input `name` is written; refuses names that are not plain file names, or taken.
    pub fn input_path(&self, name: &str) -> Result<PathBuf, ComputeError> {
        check_name(name)?;
        let path = self.inputs().join(name);
        if path.exists() {
            return Err(ComputeError::DuplicateName(name.to_string()));
        }
        Ok(path)
    }

    /// Writes input `name`.
    pub fn add_input(&self, name: &str, data: &[u8]) -> Result<(), ComputeError> {
        fs::write(self.input_path(name)?, data)?;
        Ok(())
    }

    /// Bytes in all regular files of the scratch directory (top level and below).
    pub fn scratch_bytes(&self) -> u64 {
        dir_bytes(&self.scratch())
    }

    /// The regular files at the top of the scratch directory, sorted by name, if together they
    /// are at most `max` bytes.
    pub fn outputs(&self, max: u64) -> Result<Option<Files>, ComputeError> {
        let mut out = Vec::new();
        let mut total = 0u64;
        for entry in fs::read_dir(self.scratch())? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if !meta.is_file() {
                continue;
            }
            total = total.saturating_add(meta.len());
            if total > max {
                return Ok(None);
            }
            out.push((name, fs::read(entry.path())?));
        }
        out.sort();
        Ok(Some(out))
    }
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut total = 0u64;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total = total.saturating_add(dir_bytes(&entry.path()));
        } else {
            total = total.saturating_add(meta.len());
        }
    }
    total
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}
