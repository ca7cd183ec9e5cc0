//! Merkle paths in a share's block tree (the tree of `blackbox_core::hashtree`: parents hash two
//! children, an odd node at the end of a level is promoted unchanged).

use blackbox_core::{hashtree, Hash};

/// Every level of a share's block tree, for answering many paths from one set of leaves.
#[derive(Debug, Clone)]
pub struct BlockTree {
    levels: Vec<Vec<Hash>>,
}

impl BlockTree {
    /// Builds the tree over `leaves` (the block hashes of one share).
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let next = levels
                .last()
                .map(|l| {
                    l.chunks(2)
                        .map(|pair| match pair {
                            [a, b] => hashtree::parent(a, b),
                            [a] => *a,
                            _ => [0u8; 32],
                        })
                        .collect()
                })
                .unwrap_or_default();
            levels.push(next);
        }
        Self { levels }
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The tree root (the value `hashtree::tree_root` gives).
    pub fn root(&self) -> Hash {
        self.levels.last().and_then(|l| l.first()).copied().unwrap_or([0u8; 32])
    }

    /// Sibling hashes from leaf `index` up to the root, bottom-up; levels where the node is
    /// promoted have no sibling.
    pub fn path(&self, index: u64) -> Vec<Hash> {
        let mut i = index as usize;
        let mut out = Vec::new();
        for level in &self.levels[..self.levels.len().saturating_sub(1)] {
            if i % 2 == 1 {
                out.push(level[i - 1]);
            } else if let Some(h) = level.get(i + 1) {
                out.push(*h);
            }
            i /= 2;
        }
        out
    }
}

/// Rebuilds the tree root from a leaf, its index, the leaf count and its path; `None` if the path
/// is too short or too long for that place in a tree of that size.
pub fn root_from_path(leaf: Hash, index: u64, count: u64, path: &[Hash]) -> Option<Hash> {
    if index >= count {
        return None;
    }
    let (mut h, mut i, mut len) = (leaf, index, count);
    let mut siblings = path.iter();
    while len > 1 {
        if i % 2 == 1 {
            h = hashtree::parent(siblings.next()?, &h);
        } else if i + 1 < len {
            h = hashtree::parent(&h, siblings.next()?);
        }
        i /= 2;
        len = len.div_ceil(2);
    }
    siblings.next().is_none().then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_rebuilds_the_root() {
        for n in 1u64..40 {
            let leaves: Vec<Hash> = (0..n).map(|i| hashtree::leaf(&i.to_le_bytes())).collect();
            let tree = BlockTree::new(leaves.clone());
            assert_eq!(tree.root(), hashtree::tree_root(&leaves));
            for i in 0..n {
                let path = tree.path(i);
                assert_eq!(root_from_path(leaves[i as usize], i, n, &path), Some(tree.root()), "n {n} i {i}");
                let mut long = path.clone();
                long.push([0u8; 32]);
                assert_eq!(root_from_path(leaves[i as usize], i, n, &long), None);
                if !path.is_empty() {
                    assert_eq!(root_from_path(leaves[i as usize], i, n, &path[1..]), None);
                }
            }
            assert_eq!(root_from_path(leaves[0], n, n, &[]), None);
        }
    }
}
