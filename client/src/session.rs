//! A client built from a `client.toml`: the one way every surface (CLI, gateway, drive) gets a
//! connected client. It finds the nodes (configured, remembered, or through the DHT), keeps those
//! that serve a valid signed offer, ranks them for placement from their offers, status and the
//! client's reputation records, and sets up payments at the prices the offers signed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), blackbox_client::ClientError> {
//! let session = blackbox_client::Session::open(std::path::Path::new("net/client.toml")).await?;
//! let report = session.put_bytes(b"hello".to_vec()).await?;
//! println!("{}", report.cap);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use blackbox_net::offer::SignedOffer;
use blackbox_net::{parse_bootstrap, Discovery, Libp2pTransport};
use blackbox_util::now_secs;

use crate::config::ClientConfig;
use crate::known::KnownNodes;
use crate::pay::{load_or_create_wallet_key, PayConfig, Payee, Payments};
use crate::rank::Candidate;
use crate::reputation::{Reputation, AVOID_BELOW};
use crate::{Client, ClientError, NodeRef, Ranking};

/// How long a client waits for the DHT to list providers.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Every candidate node, with its verified offer or why it has none.
pub type Offers = Vec<(NodeRef, Result<SignedOffer, ClientError>)>;

/// A connected client and the config it came from.
pub struct Session {
    /// The config (its `data_dir` resolved).
    pub cfg: ClientConfig,
    /// The client over libp2p.
    pub client: Client<Libp2pTransport>,
    /// The candidates asked for offers (empty without discovery).
    pub offers: Offers,
}

impl Session {
    /// Loads the config at `path` and connects.
    pub async fn open(path: &Path) -> Result<Self, ClientError> {
        Self::connect(ClientConfig::load(path)?).await
    }

    /// Builds the client: the configured nodes, or (with bootstrap peers) every node found through
    /// the DHT or remembered from before that serves a valid signed offer.
    pub async fn connect(cfg: ClientConfig) -> Result<Self, ClientError> {
        let timeout = Duration::from_secs(cfg.request_timeout_secs);
        let configured = cfg.node_refs()?;
        if cfg.bootstrap.is_empty() {
            if configured.is_empty() {
                return Err(ClientError::NoNodesConfigured);
            }
            let transport = Libp2pTransport::new(timeout).map_err(ClientError::Network)?;
            let client = Client::new(transport, configured);
            return Ok(Self { cfg, client, offers: Vec::new() });
        }
        let (transport, candidates) = discover(&cfg, timeout, configured).await?;
        let now = now_secs();
        let offers = Client::new(transport.clone(), candidates).offers(now).await;
        let usable = usable(&offers);
        if usable.is_empty() {
            return Err(ClientError::NoValidOffer { bootstrap: cfg.bootstrap.join(", "), why: why_unusable(&offers) });
        }
        if let Err(e) = KnownNodes::remember(&cfg.data_dir, &usable) {
            tracing::warn!(error = %e, "cannot save the known-nodes file");
        }
        let ranking = ranking(&cfg, &transport, &usable, &offers, now).await;
        let mut client = Client::new(transport, usable).with_ranking(ranking);
        if cfg.payments.is_some() {
            client = client.with_payments(Payments::new(pay_config(&cfg)?, payees(&offers)));
        }
        Ok(Self { cfg, client, offers })
    }

    /// Adds what the client saw of each node so far to the reputation file.
    pub fn record_outcomes(&self) {
        let outcomes = self.client.take_outcomes();
        if let Err(e) = Reputation::record_all(&self.cfg.data_dir, &outcomes, now_secs()) {
            tracing::warn!(error = %e, "cannot save the reputation file");
        }
    }

    /// Runs `work` on the client, then records the outcomes it produced (whatever its result).
    pub(crate) async fn recorded<F: std::future::Future>(&self, work: F) -> F::Output {
        let out = work.await;
        self.record_outcomes();
        out
    }
}

/// Nodes found through the DHT, then remembered ones, then configured ones (first wins).
async fn discover(
    cfg: &ClientConfig,
    timeout: Duration,
    configured: Vec<NodeRef>,
) -> Result<(Libp2pTransport, Vec<NodeRef>), ClientError> {
    let known = KnownNodes::load(&cfg.data_dir);
    let mut bootstrap = parse_bootstrap(&cfg.bootstrap)?;
    let boot_refs: Vec<NodeRef> =
        bootstrap.iter().map(|(peer, a)| NodeRef { peer: *peer, addrs: vec![a.clone()] }).collect();
    for n in known.refs() {
        bootstrap.extend(n.addrs.iter().map(|a| (n.peer, a.clone())));
    }
    let transport = Libp2pTransport::with_discovery(timeout, &Discovery { bootstrap }).map_err(ClientError::Network)?;
    let deadline = tokio::time::Instant::now() + DISCOVERY_TIMEOUT;
    let mut found = Vec::new();
    // A lookup started while the first dial is still being set up can come back empty: try again.
    for attempt in 0..3 {
        found = tokio::time::timeout_at(deadline, transport.find_storage_providers())
            .await
            .unwrap_or(Ok(Vec::new()))
            .unwrap_or_default();
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tracing::debug!(attempt, "discovery found no provider yet");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut candidates: Vec<NodeRef> = Vec::new();
    let provided = found.into_iter().map(|(peer, addrs)| NodeRef { peer, addrs });
    // The bootstrap peers are asked for an offer too (usually storage nodes themselves).
    for n in provided.chain(known.refs()).chain(configured).chain(boot_refs) {
        if !candidates.iter().any(|c| c.peer == n.peer) {
            candidates.push(n);
        }
    }
    Ok((transport, candidates))
}

/// The candidates whose offer verified (forged or expired offers are logged).
fn usable(offers: &Offers) -> Vec<NodeRef> {
    let mut usable = Vec::new();
    for (node, offer) in offers {
        match offer {
            Ok(_) => usable.push(node.clone()),
            Err(e @ ClientError::BadOffer { .. }) => tracing::warn!(peer = %node.peer, error = %e, "node skipped"),
            Err(e) => tracing::debug!(peer = %node.peer, error = %e, "node unreachable"),
        }
    }
    usable
}

/// What went wrong with each candidate, for the error when none is usable.
fn why_unusable(offers: &Offers) -> String {
    if offers.is_empty() {
        return "discovery found no node".into();
    }
    let first = offers.iter().find_map(|(_, o)| o.as_ref().err()).map(|e| format!(", e.g. {e}")).unwrap_or_default();
    format!("{} nodes asked, none answered with a valid offer{first}", offers.len())
}

/// Ranks the usable nodes by their offers, status, latency and the client's reputation records;
/// nodes below the reputation threshold get no new shares.
async fn ranking(
    cfg: &ClientConfig,
    transport: &Libp2pTransport,
    usable: &[NodeRef],
    offers: &Offers,
    now: u64,
) -> Ranking {
    let statuses = Client::new(transport.clone(), usable.to_vec()).statuses().await;
    let reputation = Reputation::load(&cfg.data_dir);
    let candidates = offers
        .iter()
        .filter(|(node, _)| {
            let score = reputation.score(&node.peer, now);
            if score < AVOID_BELOW {
                tracing::info!(peer = %node.peer, score, "node avoided for new shares (reputation)");
            }
            score >= AVOID_BELOW
        })
        .filter_map(|(node, offer)| {
            let offer = offer.as_ref().ok()?.offer.clone();
            let (status, rtt) = statuses.iter().find(|(n, _)| n.peer == node.peer)?.1.as_ref().ok()?;
            Some(Candidate {
                node: node.clone(),
                offer,
                reputation: reputation.score(&node.peer, now),
                latency_ms: Some(rtt.as_secs_f64() * 1000.0),
                free_bytes: status.quota.saturating_sub(status.used),
                age_secs: reputation.age_secs(&node.peer, now),
            })
        })
        .collect();
    Ranking { candidates, weights: cfg.weights, max_price: cfg.max_storage_price }
}

/// The nodes to pay: prices and payment key from each verified offer.
fn payees(offers: &Offers) -> HashMap<blackbox_net::PeerId, Payee> {
    offers
        .iter()
        .filter_map(|(node, offer)| {
            let signed = offer.as_ref().ok()?;
            let key = bitcoin::CompressedPublicKey::from_slice(&signed.offer.bitcoin_pubkey).ok()?;
            Some((node.peer, Payee { prices: signed.offer.prices, key, offer: signed.encode().into() }))
        })
        .collect()
}

/// The payment settings of the client config, with the wallet key and the chain.
pub fn pay_config(cfg: &ClientConfig) -> Result<PayConfig, ClientError> {
    let pc = cfg.payments.as_ref().ok_or(ClientError::NoPayments)?;
    let chain = blackbox_chain::BitcoindRpc::new(pc.chain.clone()).map_err(crate::pay::PayError::Chain)?;
    Ok(PayConfig {
        chain: Arc::new(chain),
        key: load_or_create_wallet_key(&cfg.data_dir)?,
        dir: cfg.data_dir.join("channels"),
        capacity: pc.channel_capacity_sat,
        blocks: pc.channel_blocks,
        fee: pc.channel_fee_sat,
        min_confirmations: pc.min_confirmations,
    })
}
