//! Ranking of candidate nodes and placement of shares over them.
//!
//! Each candidate gets a score in [0, 1] from its price, reputation, measured latency, free space
//! and age, weighted by the client config; nodes above the price ceiling are left out. Placement
//! then walks the candidates best-first, taking at most one node per network group (IPv4 /24,
//! IPv6 /48, or a region the node declares) until every group has been used, so that shares spread
//! over independent failure domains; ties break by a permutation keyed on the storage index, so
//! equal nodes share the load across files.

use std::collections::HashSet;
use std::net::IpAddr;

use blackbox_net::multiaddr::Protocol;
use blackbox_net::offer::Offer;
use serde::{Deserialize, Serialize};

use crate::NodeRef;

/// Round-trip time at which the latency score reaches zero; it falls linearly from 1 at 0 ms, so
/// sub-millisecond jitter between nearby nodes does not outweigh real price differences.
const LATENCY_ZERO_MS: f64 = 1000.0;

/// How much each criterion counts (any non-negative numbers; they are normalised).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Cheaper storage is better.
    pub price: f64,
    /// A better audit and operation record is better.
    pub reputation: f64,
    /// Lower round-trip time is better.
    pub latency: f64,
    /// More free space is better.
    pub free_space: f64,
    /// Nodes known for longer are better.
    pub age: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self { price: 4.0, reputation: 3.0, latency: 1.0, free_space: 1.0, age: 1.0 }
    }
}

/// What the client knows about one candidate node.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub node: NodeRef,
    /// Its verified offer.
    pub offer: Offer,
    /// Reputation in [0, 1] (0.5 for a node never seen before).
    pub reputation: f64,
    /// Measured round-trip time in milliseconds, if any.
    pub latency_ms: Option<f64>,
    /// Free bytes the node reports.
    pub free_bytes: u64,
    /// Seconds since the client first saw the node.
    pub age_secs: u64,
}

/// One candidate's score and its parts, for `put --explain`.
#[derive(Debug, Clone)]
pub struct Ranked {
    /// The candidate.
    pub candidate: Candidate,
    /// Weighted total in [0, 1].
    pub score: f64,
    /// Per-criterion scores in [0, 1]: price, reputation, latency, free space, age.
    pub parts: [f64; 5],
    /// The network group used for diversity.
    pub group: String,
}

/// The failure domain of a node: its declared region, else its IPv4 /24 or IPv6 /48.
pub fn network_group(node: &NodeRef, offer: &Offer) -> String {
    if !offer.region.is_empty() {
        return format!("region:{}", offer.region);
    }
    for addr in &node.addrs {
        for p in addr.iter() {
            let ip = match p {
                Protocol::Ip4(ip) => IpAddr::V4(ip),
                Protocol::Ip6(ip) => IpAddr::V6(ip),
                _ => continue,
            };
            return match ip {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
                }
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
                }
            };
        }
    }
    format!("peer:{}", node.peer)
}

/// Scores candidates, drops those above `max_price` (sat per GB-month), and orders them best
/// first, ties broken by `tiebreak(node)`.
pub fn rank(
    candidates: Vec<Candidate>,
    weights: &Weights,
    max_price: Option<u64>,
    tiebreak: impl Fn(&NodeRef) -> [u8; 32],
) -> Vec<Ranked> {
    let kept: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| max_price.is_none_or(|m| c.offer.prices.storage_sat_per_gb_month <= m))
        .collect();
    let max_of = |f: &dyn Fn(&Candidate) -> f64| kept.iter().map(f).fold(0.0f64, f64::max);
    let max_price_seen = max_of(&|c| c.offer.prices.storage_sat_per_gb_month as f64);
    let max_free = max_of(&|c| c.free_bytes as f64);
    let max_age = max_of(&|c| c.age_secs as f64);
    let ratio = |v: f64, max: f64| if max > 0.0 { v / max } else { 1.0 };
    let w = [weights.price, weights.reputation, weights.latency, weights.free_space, weights.age].map(|x| x.max(0.0));
    let total: f64 = w.iter().sum();
    let mut ranked: Vec<(Ranked, [u8; 32])> = kept
        .into_iter()
        .map(|c| {
            let parts = [
                1.0 - ratio(c.offer.prices.storage_sat_per_gb_month as f64, max_price_seen),
                c.reputation.clamp(0.0, 1.0),
                c.latency_ms.map_or(0.5, |l| (1.0 - l / LATENCY_ZERO_MS).clamp(0.0, 1.0)),
                ratio(c.free_bytes as f64, max_free),
                ratio(c.age_secs as f64, max_age),
            ];
            let score = if total > 0.0 { parts.iter().zip(&w).map(|(p, w)| p * w).sum::<f64>() / total } else { 0.0 };
            let group = network_group(&c.node, &c.offer);
            let key = tiebreak(&c.node);
            (Ranked { candidate: c, score, parts, group }, key)
        })
        .collect();
    ranked.sort_by(|(a, ka), (b, kb)| b.score.total_cmp(&a.score).then_with(|| ka.cmp(kb)));
    ranked.into_iter().map(|(r, _)| r).collect()
}

/// Orders ranked nodes for placement: best first, but one node per network group until every
/// group has one, then the rest best first. Share `i` goes to the `i`-th node that accepts it.
pub fn placement_order(ranked: &[Ranked]) -> Vec<usize> {
    let mut order = Vec::with_capacity(ranked.len());
    let mut used_groups = HashSet::new();
    for (i, r) in ranked.iter().enumerate() {
        if used_groups.insert(r.group.as_str()) {
            order.push(i);
        }
    }
    for i in 0..ranked.len() {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use blackbox_net::offer::{Availability, Prices, Resources};
    use blackbox_net::{Keypair, PeerId};

    fn cand(price: u64, ip: &str, region: &str) -> Candidate {
        let key = Keypair::generate_ed25519();
        Candidate {
            node: NodeRef {
                peer: PeerId::from(key.public()),
                addrs: vec![format!("/ip4/{ip}/tcp/1").parse().unwrap()],
            },
            offer: Offer {
                node: key.public(),
                resources: Resources::default(),
                availability: Availability::Always,
                prices: Prices { storage_sat_per_gb_month: price, ..Prices::default() },
                bitcoin_pubkey: [2; 33],
                region: region.into(),
                issued_at: 0,
                expires_at: 1,
            },
            reputation: 0.5,
            latency_ms: Some(1.0),
            free_bytes: 1 << 30,
            age_secs: 100,
        }
    }

    #[test]
    fn cheaper_first_and_ceiling_applies() {
        let cs = vec![cand(300, "10.0.0.1", ""), cand(100, "10.0.1.1", ""), cand(200, "10.0.2.1", "")];
        let r = rank(cs, &Weights::default(), Some(250), |_| [0; 32]);
        let prices: Vec<u64> = r.iter().map(|r| r.candidate.offer.prices.storage_sat_per_gb_month).collect();
        assert_eq!(prices, vec![100, 200]);
        assert!(r[0].score > r[1].score);
    }

    #[test]
    fn bad_reputation_sinks_a_cheap_node() {
        let mut cheap = cand(100, "10.0.0.1", "");
        cheap.reputation = 0.0;
        let mut fair = cand(120, "10.0.1.1", "");
        fair.reputation = 1.0;
        let r = rank(vec![cheap, fair], &Weights::default(), None, |_| [0; 32]);
        assert_eq!(r[0].candidate.offer.prices.storage_sat_per_gb_month, 120);
    }

    #[test]
    fn placement_spreads_over_groups_first() {
        // Three cheap nodes in one /24, two dearer ones elsewhere.
        let cs = vec![
            cand(100, "10.0.0.1", ""),
            cand(101, "10.0.0.2", ""),
            cand(102, "10.0.0.3", ""),
            cand(300, "10.9.0.1", ""),
            cand(300, "10.0.0.9", "moon"),
        ];
        let r = rank(cs, &Weights::default(), None, |_| [0; 32]);
        let order = placement_order(&r);
        let groups: Vec<&str> = order.iter().take(3).map(|&i| r[i].group.as_str()).collect();
        let distinct: HashSet<&&str> = groups.iter().collect();
        assert_eq!(distinct.len(), 3, "first three placements share a group: {groups:?}");
        assert_eq!(order.len(), 5);
        assert_eq!(network_group(&r[order[0]].candidate.node, &r[order[0]].candidate.offer), "10.0.0.0/24");
    }
}
