//! The node table behind `blackbox nodes`: every candidate with its offer, status, reputation and
//! ranking score, or why it cannot be used.

use std::time::Duration;

use blackbox_net::offer::{Offer, SignedOffer};
use blackbox_net::NodeStatus;
use blackbox_util::now_secs;

use crate::reputation::Reputation;
use crate::{ClientError, NodeRef, Session};

/// One known node.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// The node.
    pub node: NodeRef,
    /// Its verified offer (none without discovery, or when it has no valid one).
    pub offer: Option<Offer>,
    /// Its status and round-trip time, when it answered.
    pub status: Option<(NodeStatus, Duration)>,
    /// Why it is not usable, if it is not.
    pub problem: Option<String>,
    /// The client's reputation score of it, in [0, 1].
    pub reputation: f64,
    /// Its ranking score for new shares; `None`: avoided (reputation or price ceiling).
    pub score: Option<f64>,
}

impl Session {
    /// Every candidate (with discovery) or every configured node, asked for its status now.
    pub async fn node_rows(&self) -> Vec<NodeRow> {
        let statuses = self.client.statuses().await;
        let ranked = self.client.ranked();
        let reputation = Reputation::load(&self.cfg.data_dir);
        let now = now_secs();
        let rows: Vec<(NodeRef, Option<&Result<SignedOffer, ClientError>>)> = if self.offers.is_empty() {
            self.client.nodes().iter().map(|n| (n.clone(), None)).collect()
        } else {
            self.offers.iter().map(|(n, o)| (n.clone(), Some(o))).collect()
        };
        rows.into_iter()
            .map(|(node, offer)| {
                let status = statuses.iter().find(|(n, _)| n.peer == node.peer).map(|(_, s)| s);
                let problem = match (&offer, status) {
                    (Some(Err(e)), _) => Some(e.to_string()),
                    (_, Some(Err(e))) => Some(e.to_string()),
                    (_, None) => Some("not used".to_string()),
                    _ => None,
                };
                NodeRow {
                    offer: offer.and_then(|o| o.as_ref().ok()).map(|o| o.offer.clone()),
                    status: status.and_then(|s| s.as_ref().ok().copied()),
                    problem,
                    reputation: reputation.score(&node.peer, now),
                    score: ranked.iter().find(|r| r.candidate.node.peer == node.peer).map(|r| r.score),
                    node,
                }
            })
            .collect()
    }
}
