//! blackbox client library: upload, download, range read, check, verify, audit, renew and repair
//! over untrusted nodes.
//!
//! Everything a node returns is verified here: headers against the cap's root, leaf hashes against
//! share roots, blocks against leaves. Keys never leave this process.

mod audit;
pub mod auditor;
mod check;
mod compute;
pub mod config;
mod deep;
pub mod dir;
mod download;
mod edit;
mod error;
mod files;
mod happiness;
mod job;
mod known;
mod maintain;
pub mod multi;
pub mod namespace;
pub mod nodes;
pub mod pay;
pub mod rank;
mod reader;
mod repair;
pub mod reputation;
mod session;
pub mod slot;
mod straggle;
mod upload;
pub mod wallet;
pub mod watch;

use std::time::Duration;

use blackbox_net::offer::SignedOffer;
use blackbox_net::{ErrorCode, Multiaddr, PeerId, Request, Response, Transport};

pub use audit::{AuditOptions, AuditReport, ShareAudit, Verdict};
pub use check::{CheckReport, ShareHealth, VerifyReport};
pub use compute::{JobResult, JobVerdict, Placement};
pub use config::ClientConfig;
pub use deep::{DeepOp, DeepOutcome, Reached};
pub use error::ClientError;
pub use files::{parse_any_cap, PutOptions};
pub use happiness::servers_of_happiness;
pub use job::JobRun;
pub use known::KnownNodes;
pub use maintain::Renewed;
pub use reader::FileReader;
pub use repair::RepairReport;
pub use session::{pay_config, Offers, Session};
pub use upload::{UploadOptions, UploadReport};

/// A storage node as the client knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// Identity.
    pub peer: PeerId,
    /// Where to dial it.
    pub addrs: Vec<Multiaddr>,
}

/// Candidates with offers, and how to rank them for placement.
#[derive(Debug, Clone)]
pub struct Ranking {
    /// Nodes with verified offers and what is known about them.
    pub candidates: Vec<rank::Candidate>,
    /// Weights of the criteria.
    pub weights: rank::Weights,
    /// Most satoshis per GB-month the client will pay.
    pub max_price: Option<u64>,
}

/// A client bound to a transport and a list of known nodes.
pub struct Client<T> {
    transport: T,
    nodes: Vec<NodeRef>,
    ranking: Option<Ranking>,
    /// What happened with each node during operations, for the caller's reputation store.
    outcomes: std::sync::Mutex<Vec<(PeerId, reputation::Outcome)>>,
    /// How long to wait for a node to answer a listing or status request.
    pub query_timeout: Duration,
    /// Payment channels to the nodes that bill; `None`: nothing is paid.
    payments: Option<std::sync::Arc<pay::Payments>>,
    /// Directory tree nodes read or written lately.
    node_cache: dir::NodeCache,
    /// Manifests of multi-part files read lately (a ranged GET of a big object reads one per part).
    manifests: dir::RootCache<std::sync::Arc<blackbox_core::Manifest>>,
    /// One edit at a time per directory within this process (they would only race each other).
    dir_locks: dir::DirLocks,
}

impl<T: Transport> Client<T> {
    /// A client that will use `nodes` through `transport`.
    pub fn new(transport: T, nodes: Vec<NodeRef>) -> Self {
        Self {
            transport,
            nodes,
            ranking: None,
            outcomes: Default::default(),
            query_timeout: Duration::from_secs(10),
            payments: None,
            node_cache: Default::default(),
            manifests: dir::RootCache::new(multi::MANIFEST_CACHE_BYTES),
            dir_locks: Default::default(),
        }
    }

    /// Notes an outcome with a node.
    pub(crate) fn note(&self, peer: PeerId, outcome: reputation::Outcome) {
        self.outcomes.lock().unwrap_or_else(|p| p.into_inner()).push((peer, outcome));
    }

    /// Takes the outcomes noted so far (to feed a [`reputation::Reputation`]).
    pub fn take_outcomes(&self) -> Vec<(PeerId, reputation::Outcome)> {
        std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Pays nodes that bill through payment channels.
    pub fn with_payments(mut self, payments: pay::Payments) -> Self {
        self.payments = Some(std::sync::Arc::new(payments));
        self
    }

    /// Sends a billed request with a channel update covering `delta` at the node's prices.
    pub(crate) async fn call_billed(
        &self,
        node: &NodeRef,
        req: Request,
        delta: blackbox_payments::Usage,
    ) -> Result<Response, ClientError> {
        call_billed(&self.transport, self.payments.as_deref(), node, req, delta, Default::default()).await
    }

    /// Places shares by ranking these candidates instead of a plain permuted order.
    pub fn with_ranking(mut self, ranking: Ranking) -> Self {
        self.ranking = Some(ranking);
        self
    }

    /// The candidates ranked as for a new upload (without the per-file tie-break); empty without
    /// a ranking.
    pub fn ranked(&self) -> Vec<rank::Ranked> {
        self.ranking.as_ref().map_or_else(Vec::new, |r| {
            rank::rank(r.candidates.clone(), &r.weights, r.max_price, |n| *blake3::hash(&n.peer.to_bytes()).as_bytes())
        })
    }

    /// The known nodes.
    pub fn nodes(&self) -> &[NodeRef] {
        &self.nodes
    }

    /// Sends one unpaid request (error responses become [`ClientError::Node`]).
    pub(crate) async fn call_plain(&self, node: &NodeRef, req: Request) -> Result<Response, ClientError> {
        self.call(node, req).await
    }

    /// Sends one request and turns error responses into [`ClientError::Node`].
    async fn call(&self, node: &NodeRef, req: Request) -> Result<Response, ClientError> {
        call(&self.transport, node, req).await
    }

    /// Asks every node for its status (`None` for nodes that did not answer in time).
    pub async fn statuses(&self) -> Vec<(NodeRef, Result<(blackbox_net::NodeStatus, Duration), ClientError>)> {
        let futs = self.nodes.iter().map(|n| async move {
            let start = std::time::Instant::now();
            let r = tokio::time::timeout(self.query_timeout, self.call(n, Request::Status)).await;
            let r = match r {
                Ok(Ok(Response::Status(s))) => Ok((s, start.elapsed())),
                Ok(Ok(other)) => Err(ClientError::unexpected(n, &other)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ClientError::Timeout(n.peer)),
            };
            (n.clone(), r)
        });
        futures::future::join_all(futs).await
    }
}

impl<T: Transport> Client<T> {
    /// Asks every node for its signed offer and verifies it: signature, signer = the node that
    /// served it, and validity at `now` (unix seconds).
    pub async fn offers(&self, now: u64) -> Vec<(NodeRef, Result<SignedOffer, ClientError>)> {
        let asks = self.nodes.iter().map(|n| async move {
            let r = tokio::time::timeout(self.query_timeout, self.call(n, Request::GetOffer)).await;
            let offer = match r {
                Ok(Ok(Response::Offer(bytes))) => SignedOffer::decode(&bytes)
                    .and_then(|o| o.verify(&n.peer, now).map(|()| o))
                    .map_err(|e| ClientError::BadOffer { peer: n.peer, reason: e.to_string() }),
                Ok(Ok(other)) => Err(ClientError::unexpected(n, &other)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ClientError::Timeout(n.peer)),
            };
            (n.clone(), offer)
        });
        futures::future::join_all(asks).await
    }
}

/// Sends `req`, wrapped with a payment for `delta` when the node is paid, and follows the node's
/// receipt: a charge above what the request costs at the channel's prices is refused as
/// overbilling; a request refused for want of payment (other processes of this client spent the
/// credit meanwhile) is paid again from the owed the receipt reports, with more headroom each time.
async fn call_billed<T: Transport>(
    transport: &T,
    payments: Option<&pay::Payments>,
    node: &NodeRef,
    req: Request,
    delta: blackbox_payments::Usage,
    ahead: blackbox_payments::Usage,
) -> Result<Response, ClientError> {
    let Some(payments) = payments else { return call(transport, node, req).await };
    for attempt in 0..PAY_ATTEMPTS {
        let Some(ticket) = payments.pay(transport, node, delta, ahead, attempt).await? else {
            return call(transport, node, req).await;
        };
        let paid = Request::Paid { update: ticket.update.clone(), inner: Box::new(req.clone()) };
        let (charged, inner) = match call(transport, node, paid).await {
            Ok(Response::Receipt { charged, owed, inner }) => {
                payments.settle(&node.peer, &ticket, Some(owed)).await;
                (charged, *inner)
            }
            Err(ClientError::Node { code: ErrorCode::PaymentRequired, .. }) if attempt + 1 < PAY_ATTEMPTS => {
                // The envelope itself was refused (say the node closed the channel): read the
                // channel again from disk and the node, and pay anew.
                payments.settle(&node.peer, &ticket, None).await;
                payments.forget(&node.peer).await;
                continue;
            }
            other => {
                payments.settle(&node.peer, &ticket, None).await;
                return match other {
                    Ok(o) => Err(ClientError::unexpected(node, &o)),
                    Err(e) => Err(e),
                };
            }
        };
        if charged > ticket.expected {
            let message = format!("charged {charged} sat for a request that costs {} sat", ticket.expected);
            return Err(pay::PayError::Overbilled { peer: node.peer, message }.into());
        }
        match inner {
            Response::Error { code: ErrorCode::PaymentRequired, message } if attempt + 1 < PAY_ATTEMPTS => {
                tracing::debug!(peer = %node.peer, %message, "paying again from the node's receipt");
            }
            Response::Error { code: ErrorCode::PaymentRequired, message } => {
                return Err(pay::PayError::Overbilled { peer: node.peer, message }.into());
            }
            Response::Error { code, message } => return Err(ClientError::Node { peer: node.peer, code, message }),
            other => return Ok(other),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Payments tried for one request before a refusal counts as overbilling.
const PAY_ATTEMPTS: u32 = 5;

async fn call<T: Transport>(transport: &T, node: &NodeRef, req: Request) -> Result<Response, ClientError> {
    match transport.request(node.peer, &node.addrs, req).await? {
        Response::Error { code, message } => Err(ClientError::Node { peer: node.peer, code, message }),
        other => Ok(other),
    }
}

/// Whether an error means the node refused for lack of space.
pub fn is_quota_error(e: &ClientError) -> bool {
    matches!(e, ClientError::Node { code: ErrorCode::QuotaExceeded, .. })
}
