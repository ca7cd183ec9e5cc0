//! A Kademlia network of many nodes in one process (libp2p's in-memory transport, noise, yamux),
//! to measure how discovery scales: time for a fresh client to find a number of providers, and
//! how many DHT requests that takes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::{MemoryTransport, Transport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::kad::{self, GetProvidersOk, QueryResult};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, noise, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::mpsc;

/// What a blackbox peer runs for discovery: Kademlia, plus identify so that peers learn each
/// other's listen addresses (as the real node does).
#[derive(libp2p::swarm::NetworkBehaviour)]
struct Peer {
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
}

/// What one simulation measured.
#[derive(Debug, Clone)]
pub struct DhtReport {
    /// DHT nodes.
    pub nodes: usize,
    /// Of which announce themselves as providers.
    pub providers: usize,
    /// Seconds until every node had joined and every provider had announced.
    pub setup_secs: f64,
    /// One entry per fresh client, each entering the network through a different node.
    pub lookups: Vec<Lookup>,
}

/// One fresh client's search for providers.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// Providers found (parallel lookup, α = 3, as clients run it).
    pub found: usize,
    /// Milliseconds until `want` providers were found (NaN if never).
    pub ms: f64,
    /// DHT requests sent until then (or in all, if never).
    pub requests: u32,
    /// Hops to the first provider record: requests of a sequential (α = 1) lookup until its first
    /// answer that carried providers.
    pub hops: u32,
}

/// Peak resident memory of this process in MiB (Linux), for the report.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn swarm(key: Keypair, server: bool, parallelism: usize) -> Result<Swarm<Peer>, DhtError> {
    let peer = key.public().to_peer_id();
    let mut cfg = kad::Config::new(StreamProtocol::new("/blackbox/kad/1"));
    cfg.set_query_timeout(Duration::from_secs(60)).set_replication_factor(blackbox_net::DHT_REPLICATION);
    if let Some(p) = std::num::NonZeroUsize::new(parallelism) {
        cfg.set_parallelism(p);
    }
    // Tables are pre-filled (see `simulate`): no periodic refresh during the measurement.
    cfg.set_periodic_bootstrap_interval(None);
    let store_cfg = kad::store::MemoryStoreConfig { max_providers_per_key: 1024, ..Default::default() };
    let mut behaviour = kad::Behaviour::with_config(peer, kad::store::MemoryStore::with_config(peer, store_cfg), cfg);
    behaviour.set_mode(Some(if server { kad::Mode::Server } else { kad::Mode::Client }));
    let identify = identify::Behaviour::new(identify::Config::new("/blackbox/1".into(), key.public()));
    let noise = noise::Config::new(&key).map_err(|e| DhtError::Build(e.to_string()))?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(move |_| {
            MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .boxed()
        })
        .map_err(|e| DhtError::Build(e.to_string()))?
        .with_behaviour(|_| Peer { kad: behaviour, identify })
        .map_err(|e| DhtError::Build(e.to_string()))?
        // Connections close soon after their last query, as between real nodes; keeping every
        // connection a node ever opened costs ~15 GB at 1,000 nodes.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(5)))
        .build();
    Ok(swarm)
}

enum Cmd {
    Provide,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// A simulated node's transport or behaviour could not be built.
    #[error("cannot build a simulated node: {0}")]
    Build(String),
    /// A simulated node could not listen on its memory address.
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    /// The providers never all announced.
    #[error("providers did not finish announcing")]
    Announce,
    /// A client's lookup made no progress for two minutes.
    #[error("client lookup stalled")]
    Stalled,
}

/// Peers each node keeps per k-bucket (Kademlia's k).
const K: usize = 20;

/// Runs `nodes` DHT nodes whose routing tables hold what a converged network's would: up to
/// [`K`] peers per k-bucket, picked by the real XOR distances of their keys. Joining 1,000 nodes
/// one by one through bootstrap queries costs over 15 CPU-minutes here (and most of it is the
/// join, not what is measured); pre-filled tables make the 100- and 1,000-node runs comparable.
/// `providers` nodes then announce the key and fresh clients look for `want` providers, all over
/// the real libp2p-kad protocol (memory transport, noise, yamux).
pub async fn simulate(nodes: usize, providers: usize, want: usize) -> Result<DhtReport, DhtError> {
    let key = kad::RecordKey::new(&"blackbox/providers/storage/1");
    // Memory-transport ports are process-wide: each simulation takes a fresh range.
    static NEXT_PORT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);
    let base = NEXT_PORT.fetch_add(nodes as u64 + 1, Ordering::SeqCst);
    let provided = Arc::new(AtomicUsize::new(0));
    let mut peers: Vec<(PeerId, Multiaddr)> = Vec::new();
    let mut swarms = Vec::new();
    let start = Instant::now();
    for i in 0..nodes {
        let k = Keypair::generate_ed25519();
        let peer = k.public().to_peer_id();
        let mut s = swarm(k, true, 3)?;
        let addr: Multiaddr = Multiaddr::empty().with(libp2p::multiaddr::Protocol::Memory(base + i as u64));
        s.listen_on(addr.clone()).map_err(|e| DhtError::Listen { addr: addr.to_string(), reason: format!("{e:?}") })?;
        // Provider records carry the provider's external addresses.
        s.add_external_address(addr.clone());
        peers.push((peer, addr));
        swarms.push(s);
    }
    let keys: Vec<kad::KBucketKey<PeerId>> = peers.iter().map(|(p, _)| kad::KBucketKey::from(*p)).collect();
    for (i, s) in swarms.iter_mut().enumerate() {
        let mut per_bucket = std::collections::HashMap::<u32, usize>::new();
        for (j, (p, a)) in peers.iter().enumerate() {
            let Some(bucket) = keys[i].distance(&keys[j]).ilog2() else { continue };
            let n = per_bucket.entry(bucket).or_default();
            if *n < K {
                *n += 1;
                s.behaviour_mut().kad.add_address(p, a.clone());
            }
        }
    }
    let mut controls = Vec::new();
    for mut s in swarms {
        let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
        controls.push(tx);
        let (provided, key) = (provided.clone(), key.clone());
        tokio::spawn(async move {
            // libp2p-kad starts one bootstrap after the first routing-table inserts (it cannot be
            // turned off from outside the crate); the tables are already what a bootstrap would
            // build, so that query is stopped during the first seconds.
            let born = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick(), if born.elapsed() < Duration::from_secs(5) => {
                        for mut q in s.behaviour_mut().kad.iter_queries_mut() {
                            if matches!(q.info(), kad::QueryInfo::Bootstrap { .. }) {
                                q.finish();
                            }
                        }
                    }
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Provide) => { let _ = s.behaviour_mut().kad.start_providing(key.clone()); }
                        None => break,
                    },
                    ev = s.select_next_some() => match ev {
                        SwarmEvent::Behaviour(PeerEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                            for addr in info.listen_addrs {
                                s.behaviour_mut().kad.add_address(&peer_id, addr);
                            }
                        }
                        SwarmEvent::Behaviour(PeerEvent::Kad(kad::Event::OutboundQueryProgressed {
                            result: QueryResult::StartProviding(_), step, ..
                        })) if step.last => {
                            provided.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    },
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    // Providers spread over the network.
    let step = (nodes / providers.max(1)).max(1);
    let chosen: Vec<usize> = (0..nodes).step_by(step).take(providers).collect();
    for &i in &chosen {
        let _ = controls[i].send(Cmd::Provide);
    }
    while provided.load(Ordering::SeqCst) < chosen.len() {
        if Instant::now() > deadline {
            return Err(DhtError::Announce);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ADD_PROVIDER messages are one-way: give the last ones time to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let setup_secs = start.elapsed().as_secs_f64();

    // Fresh clients, each knowing one node that is not a provider (spread over the network).
    let mut lookups = Vec::new();
    let entries: Vec<usize> = (0..nodes).filter(|i| !chosen.contains(i)).collect();
    for c in 0..CLIENTS {
        let (p, a) = &peers[entries[(c * entries.len() / CLIENTS + entries.len() / (2 * CLIENTS)) % entries.len()]];
        let (found, ms, requests) = lookup(p, a, &key, 3, want).await?;
        let (_, _, hops) = lookup(p, a, &key, 1, 1).await?;
        lookups.push(Lookup { found, ms, requests, hops });
    }
    drop(controls);
    Ok(DhtReport { nodes, providers: chosen.len(), setup_secs, lookups })
}

/// Fresh clients per simulation.
const CLIENTS: usize = 5;

/// A fresh client that knows only `entry` looks for providers with the given parallelism; returns
/// providers found, ms until `want` were found, and requests sent until then.
async fn lookup(
    entry: &PeerId,
    addr: &Multiaddr,
    key: &kad::RecordKey,
    parallelism: usize,
    want: usize,
) -> Result<(usize, f64, u32), DhtError> {
    let mut client = swarm(Keypair::generate_ed25519(), false, parallelism)?;
    client.behaviour_mut().kad.add_address(entry, addr.clone());
    let began = Instant::now();
    let qid = client.behaviour_mut().kad.get_providers(key.clone());
    let mut found: HashSet<PeerId> = HashSet::new();
    let mut done: Option<(f64, u32)> = None;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(120), client.select_next_some())
            .await
            .map_err(|_| DhtError::Stalled)?;
        if let SwarmEvent::Behaviour(PeerEvent::Kad(kad::Event::OutboundQueryProgressed { id, result, step, stats })) =
            ev
        {
            if id != qid {
                continue;
            }
            if let QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers: p, .. })) = result {
                found.extend(p);
                if found.len() >= want && done.is_none() {
                    done = Some((began.elapsed().as_secs_f64() * 1000.0, stats.num_requests()));
                }
            }
            if step.last {
                let (ms, requests) = done.unwrap_or((f64::NAN, stats.num_requests()));
                return Ok((found.len(), ms, requests));
            }
        }
    }
}

impl std::fmt::Display for DhtReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} nodes, {} providers: setup {:.1} s", self.nodes, self.providers, self.setup_secs)?;
        for (i, l) in self.lookups.iter().enumerate() {
            writeln!(
                f,
                "  client {}: found {} providers, the first {} in {:.0} ms with {} DHT requests; \
                 hops to the first provider record: {}",
                i + 1,
                l.found,
                self.providers,
                l.ms,
                l.requests,
                l.hops
            )?;
        }
        let mut ms: Vec<f64> = self.lookups.iter().map(|l| l.ms).collect();
        ms.sort_by(f64::total_cmp);
        let hops = self.lookups.iter().map(|l| l.hops as f64).sum::<f64>() / self.lookups.len().max(1) as f64;
        write!(
            f,
            "  median {:.0} ms to {} providers; mean {:.1} hops; peak RSS {}",
            ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN),
            self.providers,
            hops,
            peak_rss_mib().map_or("?".into(), |m| format!("{m:.0} MiB"))
        )
    }
}
