//! Per-node reputation, kept in the client's data dir: decayed counts of good and bad outcomes.
//!
//! A node's score is `(good + 1) / (good + bad + 2)` (0.5 for a stranger), with both counts halving
//! every week, so old behaviour fades. Bad blocks weigh far more than ordinary failures, since
//! they can only come from a lying or broken node. Nodes scoring below [`AVOID_BELOW`] get no new
//! shares (they are still asked for the shares they hold).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use blackbox_net::PeerId;

use crate::config::{load_versioned, save_toml};
use serde::{Deserialize, Serialize};

const FILE: &str = "reputation.toml";
const VERSION: u32 = 1;
/// Counts halve over this many seconds.
pub const HALF_LIFE_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// Nodes scoring below this are not given new shares.
pub const AVOID_BELOW: f64 = 0.25;

/// What happened in one interaction with a node, and how much it counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// A request or share operation succeeded.
    Good,
    /// The node failed, refused or timed out.
    Failed,
    /// The node returned data that failed verification.
    BadData,
    /// The node refused space it reported free.
    BrokenOffer,
}

impl Outcome {
    fn weight(self) -> (f64, f64) {
        match self {
            Outcome::Good => (1.0, 0.0),
            Outcome::Failed => (0.0, 1.0),
            Outcome::BadData => (0.0, 10.0),
            Outcome::BrokenOffer => (0.0, 3.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRecord {
    good: f64,
    bad: f64,
    first_seen: u64,
    updated: u64,
}

impl NodeRecord {
    fn decayed(&self, now: u64) -> (f64, f64) {
        let f = 0.5f64.powf(now.saturating_sub(self.updated) as f64 / HALF_LIFE_SECS);
        (self.good * f, self.bad * f)
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    nodes: BTreeMap<String, NodeRecord>,
}

/// The reputation file of a client.
pub struct Reputation {
    path: PathBuf,
    nodes: BTreeMap<String, NodeRecord>,
}

impl Reputation {
    /// Loads `reputation.toml` from `dir`; missing or unreadable counts as empty.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(FILE);
        let nodes = load_versioned::<Record>(&path, VERSION, |r| r.version).map(|r| r.nodes).unwrap_or_default();
        Self { path, nodes }
    }

    /// Records an outcome at `now` (unix seconds).
    pub fn record(&mut self, peer: &PeerId, outcome: Outcome, now: u64) {
        let rec = self.nodes.entry(peer.to_string()).or_insert(NodeRecord {
            good: 0.0,
            bad: 0.0,
            first_seen: now,
            updated: now,
        });
        let (good, bad) = rec.decayed(now);
        let (g, b) = outcome.weight();
        rec.good = good + g;
        rec.bad = bad + b;
        rec.updated = now;
    }

    /// Score in [0, 1]; 0.5 for a node never seen.
    pub fn score(&self, peer: &PeerId, now: u64) -> f64 {
        self.nodes.get(&peer.to_string()).map_or(0.5, |r| {
            let (good, bad) = r.decayed(now);
            (good + 1.0) / (good + bad + 2.0)
        })
    }

    /// Seconds since the node was first seen (0 if never).
    pub fn age_secs(&self, peer: &PeerId, now: u64) -> u64 {
        self.nodes.get(&peer.to_string()).map_or(0, |r| now.saturating_sub(r.first_seen))
    }

    /// Writes the file atomically.
    pub fn save(&self) -> std::io::Result<()> {
        save_toml(&self.path, &Record { version: VERSION, nodes: self.nodes.clone() })
    }

    /// Adds `outcomes` seen at `now` to the file in `dir`, under its lock (so concurrent
    /// processes add up instead of overwriting each other).
    pub fn record_all(dir: &Path, outcomes: &[(PeerId, Outcome)], now: u64) -> std::io::Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        crate::config::locked(&dir.join(FILE), || {
            let mut r = Reputation::load(dir);
            for (peer, outcome) in outcomes {
                r.record(peer, *outcome, now);
            }
            r.save()
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_data_demotes_and_time_heals() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reputation::load(dir.path());
        let (good, liar) = (PeerId::random(), PeerId::random());
        assert_eq!(r.score(&good, 0), 0.5);
        for _ in 0..5 {
            r.record(&good, Outcome::Good, 0);
        }
        r.record(&liar, Outcome::Good, 0);
        r.record(&liar, Outcome::BadData, 0);
        assert!(r.score(&good, 0) > 0.8);
        assert!(r.score(&liar, 0) < AVOID_BELOW);
        r.save().unwrap();
        let r = Reputation::load(dir.path());
        assert!(r.score(&liar, 0) < AVOID_BELOW, "survives a restart");
        // Many half-lives later the record has faded back towards a stranger's score.
        let later = (HALF_LIFE_SECS * 20.0) as u64;
        assert!((r.score(&liar, later) - 0.5).abs() < 0.01);
        assert_eq!(r.age_secs(&good, 100), 100);
    }
}
