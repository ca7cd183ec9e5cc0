//! The files a client looks after: verify caps, where each share was last seen healthy, and when
//! the leases run out. Kept in `watch.toml` in the client's data dir; holds no read caps, so it
//! can be handed to an auditor that must not read the files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use blackbox_core::VerifyCap;
use blackbox_net::PeerId;

use crate::config::{load_versioned, locked, save_toml};

const FILE: &str = "watch.toml";
const VERSION: u32 = 1;

/// Where one share is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Share number.
    pub share: u8,
    /// Node holding it.
    pub peer: String,
}

/// One watched file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watched {
    /// Its verify cap (text form).
    pub cap: String,
    /// Shares and their nodes, as last placed or proved.
    pub placements: Vec<Placement>,
    /// Earliest lease expiry known (Unix seconds); 0 if unknown.
    pub lease_expires: u64,
}

impl Watched {
    /// The verify cap, parsed.
    pub fn verify_cap(&self) -> Result<VerifyCap, blackbox_core::CapError> {
        self.cap.parse()
    }

    /// Placements with parsed peer ids (unparsable entries are skipped).
    pub fn expected(&self) -> Vec<(u8, PeerId)> {
        self.placements.iter().filter_map(|p| p.peer.parse().ok().map(|peer| (p.share, peer))).collect()
    }

    /// Replaces the placements.
    pub fn set_placements(&mut self, placements: &[(u8, PeerId)]) {
        let mut v: Vec<Placement> =
            placements.iter().map(|(share, peer)| Placement { share: *share, peer: peer.to_string() }).collect();
        v.sort_by(|a, b| (a.share, &a.peer).cmp(&(b.share, &b.peer)));
        v.dedup();
        self.placements = v;
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    files: Vec<Watched>,
}

/// The watch list of a client.
pub struct WatchList {
    path: PathBuf,
    /// The watched files.
    pub files: Vec<Watched>,
}

impl WatchList {
    /// Loads `watch.toml` from `dir`; missing counts as empty.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(FILE);
        let files = load_versioned::<Record>(&path, VERSION, |r| r.version).map(|r| r.files).unwrap_or_default();
        Self { path, files }
    }

    /// The entry of `cap`, added if new.
    pub fn entry(&mut self, cap: &VerifyCap) -> &mut Watched {
        let text = cap.to_string();
        let i = match self.files.iter().position(|f| f.cap == text) {
            Some(i) => i,
            None => {
                self.files.push(Watched { cap: text, placements: Vec::new(), lease_expires: 0 });
                self.files.len() - 1
            }
        };
        &mut self.files[i]
    }

    /// The entry of `cap`, if watched.
    pub fn get(&self, cap: &VerifyCap) -> Option<&Watched> {
        let text = cap.to_string();
        self.files.iter().find(|f| f.cap == text)
    }

    /// Writes the list durably (atomic replace).
    pub fn save(&self) -> std::io::Result<()> {
        save_toml(&self.path, &Record { version: VERSION, files: self.files.clone() })
    }

    /// Loads the list, applies `f` and saves it, all under the list's lock: concurrent commands
    /// and workers sharing the data dir each see the others' changes.
    pub fn update<R>(dir: &Path, f: impl FnOnce(&mut WatchList) -> R) -> std::io::Result<R> {
        locked(&dir.join(FILE), || {
            let mut list = WatchList::load(dir);
            let out = f(&mut list);
            list.save().map(|()| out)
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        let cap: VerifyCap = blackbox_core::ReadCap { key: [1; 32], root: [2; 32], k: 3, n: 10, size: 5 }.verify_cap();
        let peer = PeerId::random();
        let mut w = WatchList::load(dir.path());
        w.entry(&cap).set_placements(&[(1, peer), (0, peer), (1, peer)]);
        w.entry(&cap).lease_expires = 99;
        w.save().unwrap();
        let w = WatchList::load(dir.path());
        assert_eq!(w.files.len(), 1);
        let e = w.get(&cap).unwrap();
        assert_eq!(e.expected(), vec![(0, peer), (1, peer)]);
        assert_eq!(e.lease_expires, 99);
        assert_eq!(e.verify_cap().unwrap(), cap);
    }
}
