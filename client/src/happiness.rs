//! Servers-of-happiness: the size of a maximum matching between shares and the nodes holding them.
//!
//! If it is at least `h`, any `k <= h` of those nodes hold `k` distinct shares, so losing all but
//! `k` of them loses nothing.

use std::collections::HashMap;
use std::hash::Hash;

/// Size of a maximum matching in the bipartite graph of `(share, node)` placements.
pub fn servers_of_happiness<N: Eq + Hash + Clone>(placements: &[(u8, N)]) -> usize {
    let mut nodes: Vec<N> = Vec::new();
    let mut index: HashMap<N, usize> = HashMap::new();
    let mut adj: HashMap<u8, Vec<usize>> = HashMap::new();
    for (share, node) in placements {
        let id = *index.entry(node.clone()).or_insert_with(|| {
            nodes.push(node.clone());
            nodes.len() - 1
        });
        adj.entry(*share).or_default().push(id);
    }
    let mut owner: Vec<Option<u8>> = vec![None; nodes.len()];
    let mut shares: Vec<u8> = adj.keys().copied().collect();
    shares.sort_unstable();
    let mut matched = 0;
    for s in shares {
        let mut seen = vec![false; nodes.len()];
        if augment(s, &adj, &mut owner, &mut seen) {
            matched += 1;
        }
    }
    matched
}

fn augment(s: u8, adj: &HashMap<u8, Vec<usize>>, owner: &mut [Option<u8>], seen: &mut [bool]) -> bool {
    for &n in adj.get(&s).map(Vec::as_slice).unwrap_or(&[]) {
        if seen[n] {
            continue;
        }
        seen[n] = true;
        if owner[n].is_none_or(|other| augment(other, adj, owner, seen)) {
            owner[n] = Some(s);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert_eq!(servers_of_happiness::<u8>(&[]), 0);
        assert_eq!(servers_of_happiness(&[(0, 'a'), (1, 'b'), (2, 'c')]), 3);
        // Two shares on one node count once.
        assert_eq!(servers_of_happiness(&[(0, 'a'), (1, 'a'), (2, 'b')]), 2);
        // The same share on two nodes counts once.
        assert_eq!(servers_of_happiness(&[(0, 'a'), (0, 'b')]), 1);
        // Needs an augmenting path: share 0 on a or b, share 1 only on a.
        assert_eq!(servers_of_happiness(&[(0, 'a'), (0, 'b'), (1, 'a')]), 2);
    }
}
