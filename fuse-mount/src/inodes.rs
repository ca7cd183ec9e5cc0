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
    /// Its name there.
    pub name: String,
    /// The entry as last read or written.
    pub entry: Entry,
    /// For a directory: its cap, writable when its parent's is.
    pub dir: Option<DirCap>,
}

/// Every inode handed to the kernel, by number and by (parent, name).
#[derive(Default)]
pub struct Inodes {
    by_ino: HashMap<u64, Inode>,
    by_name: HashMap<(u64, String), u64>,
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

    /// The inode of `name` in `parent`, made or refreshed with what was just read.
    pub fn upsert(&mut self, parent: u64, name: &str, entry: Entry, dir: Option<DirCap>) -> u64 {
        let key = (parent, name.to_string());
        let inode = Inode { parent, name: name.to_string(), entry, dir };
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

    /// Moves the inode at (`parent`, `name`) to (`to`, `new_name`); whatever was there is unlinked.
    pub fn rename(&mut self, parent: u64, name: &str, to: u64, new_name: &str) {
        self.by_name.remove(&(to, new_name.to_string()));
        if let Some(ino) = self.by_name.remove(&(parent, name.to_string())) {
            self.by_name.insert((to, new_name.to_string()), ino);
            if let Some(i) = self.by_ino.get_mut(&ino) {
                (i.parent, i.name) = (to, new_name.to_string());
            }
        }
    }

    /// Drops inode `ino` once the kernel forgot it, unless a file of it is still `open`.
    pub fn forget_if_closed(&mut self, ino: u64, open: bool) {
        if !open {
            self.forget(ino);
        }
    }

    /// Drops inode `ino` (the root stays).
    pub fn forget(&mut self, ino: u64) {
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

    #[test]
    fn names_keep_their_numbers_and_move_with_renames() {
        let mut t = Inodes::new(Inode { parent: ROOT, name: String::new(), entry: file(), dir: None });
        let a = t.upsert(ROOT, "a", file(), None);
        assert_eq!(t.upsert(ROOT, "a", file(), None), a);
        let b = t.upsert(ROOT, "b", file(), None);
        t.rename(ROOT, "a", ROOT, "b");
        assert_eq!(t.upsert(ROOT, "b", file(), None), a);
        assert_ne!(t.upsert(ROOT, "a", file(), None), a);
        assert!(t.get(b).is_some(), "a replaced inode lives on until forgotten");
        t.forget(b);
        assert!(t.get(b).is_none() && t.get(a).is_some());
    }
}
