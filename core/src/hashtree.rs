//! BLAKE3 hash trees over the blocks of one share.
//!
//! Leaves are the hashes of the blocks; parents hash their two children; an odd node at the end of a
//! level is promoted unchanged. The share root binds the tree root and the leaf count, so a tree over
//! a prefix of the blocks cannot pass for the whole share.

use crate::Hash;

/// BLAKE3 derive-key context of block hashes; proofs over parts of a block hash in the same mode.
pub const LEAF_CONTEXT: &str = "blackbox 2026 block v1";
const NODE_CONTEXT: &str = "blackbox 2026 tree node v1";
const SHARE_ROOT_CONTEXT: &str = "blackbox 2026 share root v1";

/// Hash of one block: a leaf of its share's tree.
pub fn leaf(block: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(LEAF_CONTEXT);
    h.update(block);
    *h.finalize().as_bytes()
}

/// Hash of an inner node from its two children.
pub fn parent(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(NODE_CONTEXT);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// Root of the tree over `leaves` (all zeros for no leaves).
pub fn tree_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return [0u8; 32];
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => parent(l, r),
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
    }
    level[0]
}

/// Root of a share: commits to the tree root and the number of blocks.
pub fn share_root(leaves: &[Hash]) -> Hash {
    share_root_from(leaves.len() as u64, &tree_root(leaves))
}

/// Root of a share of `count` blocks whose tree root is `tree_root` (for proofs that rebuild the
/// tree root from one leaf and its path).
pub fn share_root_from(count: u64, tree_root: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(SHARE_ROOT_CONTEXT);
    h.update(&count.to_le_bytes());
    h.update(tree_root);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_shapes() {
        let l: Vec<Hash> = (0u8..5).map(|i| leaf(&[i])).collect();
        assert_eq!(tree_root(&l[..1]), l[0]);
        assert_eq!(tree_root(&l[..2]), parent(&l[0], &l[1]));
        let p01 = parent(&l[0], &l[1]);
        let p23 = parent(&l[2], &l[3]);
        assert_eq!(tree_root(&l[..3]), parent(&p01, &l[2]));
        assert_eq!(tree_root(&l), parent(&parent(&p01, &p23), &l[4]));
        assert_ne!(share_root(&l[..4]), share_root(&l));
    }
}
