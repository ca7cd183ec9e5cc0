//! Inode numbers for the entries the kernel has looked up: each names (parent inode, name) and
//! keeps the entry last read, and for a directory the cap it is reached with.

use std::collections::HashMap;

use blackbox_client::namespace::DirCap;
use blackbox_core::dir::Entry;

/// The mount's root directory.
pub const ROOT: u64 = 1;

/// What an inode stands for.
#[derive(Clone)]
pub struct Inode {
    /// The directory holding it (the root is its own parent).
    pub parent: u64,
    /// Its name there, as the kernel sees it.
    pub name: String,
    /// Its name in the namespace directory that holds it: `name` after the prefix of its parent
    /// (a folder shown for names holding `/`, as S3 keys do, has the prefix itself as key).
    pub key: String,
    /// The entry as last read or written (made up for a folder shown for a prefix).
    pub entry: Entry,
    /// For a directory: the namespace directory its entries are in, writable when its parent's is.
    pub dir: Option<DirCap>,
    /// For a directory: the prefix of its entries' names in `dir` ("" for a real directory).
    pub prefix: String,
    /// A folder shown for a prefix of names, not a directory of the namespace.
    pub prefix_only: bool,
}

/// Every inode handed to the kernel, by number and by (parent, name).
#[derive(Default)]
pub struct Inodes {
    by_ino: HashMap<u64, Inode>,
    by_name: HashMap<(u64, String), u64>,
    /// How many lookups the kernel holds of each inode (FUSE's nlookup): an inode goes only
    /// when the kernel has forgotten every one, never while a newer lookup still names it.
    lookups: HashMap<u64, u64>,
    next: u64,
}

impl Inodes {
    /// A table holding only the root.
    pub fn new(root: Inode) -> Self {
        let mut t = Self { next: ROOT + 1, ..Default::default() };
        t.by_ino.insert(ROOT, root);
        t
    }

    /// The inode `ino`.
    pub fn get(&self, ino: u64) -> Option<Inode> {
        self.by_ino.get(&ino).cloned()
    }

    /// The inode of `inode.name` in `inode.parent`, made or refreshed with what was just read.
    pub fn upsert(&mut self, inode: Inode) -> u64 {
        let key = (inode.parent, inode.name.clone());
        if let Some(&ino) = self.by_name.get(&key) {
            self.by_ino.insert(ino, inode);
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_name.insert(key, ino);
        self.by_ino.insert(ino, inode);
        ino
    }

    /// Changes the entry `ino` holds (after a write of it).
    pub fn set_entry(&mut self, ino: u64, entry: Entry) {
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.entry = entry;
        }
    }

    /// Whether `ino` is still linked under its name.
    pub fn is_linked(&self, ino: u64) -> bool {
        self.by_ino.get(&ino).is_some_and(|i| self.by_name.get(&(i.parent, i.name.clone())) == Some(&ino))
    }

    /// Forgets the name `name` in `parent` (unlinked); its inode lives on for open handles.
    pub fn unlink(&mut self, parent: u64, name: &str) {
        self.by_name.remove(&(parent, name.to_string()));
    }

    /// Moves the inode at (`parent`, `name`) to (`to`, `new_name`) with namespace name `key`;
    /// whatever was there is unlinked.
    pub fn rename(&mut self, parent: u64, name: &str, to: u64, new_name: &str, key: &str) {
        self.by_name.remove(&(to, new_name.to_string()));
        if let Some(ino) = self.by_name.remove(&(parent, name.to_string())) {
            self.by_name.insert((to, new_name.to_string()), ino);
            if let Some(i) = self.by_ino.get_mut(&ino) {
                (i.parent, i.name, i.key) = (to, new_name.to_string(), key.to_string());
            }
        }
    }

    /// Drops inode `ino` once the kernel forgot it, unless a file of it is still `open`.
    pub fn forget_if_closed(&mut self, ino: u64, open: bool) {
        if !open && self.lookups.get(&ino).is_none_or(|&n| n == 0) {
            self.forget(ino);
        }
    }

    /// The kernel was handed inode `ino` once more (an entry reply).
    pub fn looked_up(&mut self, ino: u64) {
        *self.lookups.entry(ino).or_default() += 1;
    }

    /// The kernel forgot `n` of its lookups of `ino`; the inode goes with the last one unless
    /// the file is still `open`.
    pub fn forgotten(&mut self, ino: u64, n: u64, open: bool) {
        let left = self.lookups.get(&ino).map_or(0, |&c| c.saturating_sub(n));
        if left > 0 {
            self.lookups.insert(ino, left);
            return;
        }
        self.lookups.remove(&ino);
        self.forget_if_closed(ino, open);
    }

    /// Drops inode `ino` (the root stays).
    fn forget(&mut self, ino: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(i) = self.by_ino.remove(&ino) {
            let key = (i.parent, i.name);
            if self.by_name.get(&key) == Some(&ino) {
                self.by_name.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blackbox_client::namespace::new_entry;
    use blackbox_core::dir::Kind;

    fn file() -> Entry {
        new_entry(Kind::File, "bb:lit:".into(), 0)
    }

    fn at(name: &str) -> Inode {
        Inode {
            parent: ROOT,
            name: name.into(),
            key: name.into(),
            entry: file(),
            dir: None,
            prefix: String::new(),
            prefix_only: false,
        }
    }

    #[test]
    fn names_keep_their_numbers_and_move_with_renames() {
        let mut t = Inodes::new(at(""));
        let a = t.upsert(at("a"));
        assert_eq!(t.upsert(at("a")), a);
        let b = t.upsert(at("b"));
        t.rename(ROOT, "a", ROOT, "b", "b");
        assert_eq!(t.upsert(at("b")), a);
        assert_ne!(t.upsert(at("a")), a);
        assert!(t.get(b).is_some(), "a replaced inode lives on until forgotten");
        t.forget(b);
        assert!(t.get(b).is_none() && t.get(a).is_some());
    }

    #[test]
    fn an_inode_lives_while_any_lookup_of_it_is_unforgotten() {
        let mut t = Inodes::new(at(""));
        let a = t.upsert(at("a"));
        t.looked_up(a);
        // A second lookup answered before the kernel's forget of the first one arrives.
        t.looked_up(a);
        t.forgotten(a, 1, false);
        assert!(t.get(a).is_some() && t.upsert(at("a")) == a, "still named by the second lookup");
        t.forgotten(a, 1, true);
        assert!(t.get(a).is_some(), "an open file keeps its inode");
        t.looked_up(a);
        t.unlink(ROOT, "a");
        t.forget_if_closed(a, false);
        assert!(t.get(a).is_some(), "unlinked but still looked up");
        t.forgotten(a, 1, false);
        assert!(t.get(a).is_none());
    }
}
