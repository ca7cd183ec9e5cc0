//! The libp2p side: a serving node loop and a client transport, both over TCP + TLS 1.3 (noise
//! as the fallback an older peer negotiates) + yamux.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad::{self, GetClosestPeersOk, GetProvidersOk, QueryId, QueryResult};
use libp2p::request_response::{self, Event, Message, OutboundFailure, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::codec::{Frame, FrameCodec};
use crate::wire::{ErrorCode, Request, Response, WireError};
use crate::{RequestHandler, Transport, TransportError, OLD_PROTOCOLS, PROTOCOL};

/// Everything a blackbox peer speaks: the storage protocol, the Kademlia DHT, and identify (which
/// tells the DHT where peers listen).
#[derive(NetworkBehaviour)]
struct Behaviour {
    rr: request_response::Behaviour<FrameCodec>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
    limits: libp2p::connection_limits::Behaviour,
}

/// Connections a node keeps with one peer (both directions); more are refused.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Connections a node keeps established in all, and half-open ones it accepts at once.
pub const MAX_CONNECTIONS: u32 = 2048;
const MAX_PENDING_INCOMING: u32 = 256;

/// Requests being served on blocking threads at once, over all peers (each may hold a frame of up
/// to `MAX_MESSAGE`); past it requests are refused at once.
const MAX_REQUESTS_IN_FLIGHT: usize = 512;

/// Concurrent streams one connection may have open; bounds a node's work per peer.
const MAX_STREAMS: usize = 64;
/// Name of the DHT protocol (a private DHT: only blackbox peers join it).
pub const DHT_PROTOCOL: &str = "/blackbox/kad/1";
/// How long a provider record lives without being republished: a node that goes away drops out of
/// the DHT within this time (and out of a client's list at once, when it fails to answer).
pub const PROVIDER_TTL: Duration = Duration::from_secs(180);
/// How often a node republishes its provider record.
pub const PROVIDER_REPUBLISH: Duration = Duration::from_secs(60);
/// Most providers a DHT node keeps per key.
const MAX_PROVIDERS_PER_KEY: usize = 1024;
/// Nodes that hold each provider record, and that a lookup asks. Every storage node provides the
/// same key, and announcers and clients see slightly different "closest" sets; with libp2p's
/// default of 20, a fresh client in a simulated 100-node network found only 27-39 of 50 providers,
/// with 40 it found all 50 (`blackbox bench dht`).
pub const DHT_REPLICATION: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(40) {
    Some(n) => n,
    None => unreachable!(),
};

/// The DHT key under which storage providers announce themselves.
pub fn storage_providers_key() -> kad::RecordKey {
    kad::RecordKey::new(&"blackbox/providers/storage/1")
}

/// How a peer joins the DHT.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Peers to join through (the DHT is not joined when empty).
    pub bootstrap: Vec<(PeerId, Multiaddr)>,
}

/// How connections are secured: TLS 1.3 (AES-GCM, several times cheaper per byte than noise's
/// ChaCha20-Poly1305 on CPUs with AES instructions), offering noise too so an older peer gets as
/// far as the protocol check; `BLACKBOX_SECURITY=noise` offers noise only (to measure the two).
fn noise_only() -> bool {
    std::env::var("BLACKBOX_SECURITY").is_ok_and(|v| v.eq_ignore_ascii_case("noise"))
}

/// A swarm over TCP, secured by `$security`, multiplexed by yamux.
macro_rules! tcp_swarm {
    ($keypair:expr, $behaviour:expr, $security:expr) => {
        libp2p::SwarmBuilder::with_existing_identity($keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), $security, yamux::Config::default)
            .map_err(std::io::Error::other)?
            .with_behaviour(|_| $behaviour)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build()
    };
}

fn build_swarm(
    keypair: Keypair,
    protocol: ProtocolSupport,
    timeout: Duration,
    server: bool,
) -> std::io::Result<Swarm<Behaviour>> {
    let peer_id = keypair.public().to_peer_id();
    let cfg =
        request_response::Config::default().with_request_timeout(timeout).with_max_concurrent_streams(MAX_STREAMS);
    let mut protocols = vec![(StreamProtocol::new(PROTOCOL), protocol.clone())];
    if server {
        // Older clients are answered (with a refusal they can read), never served.
        protocols.extend(OLD_PROTOCOLS.iter().map(|(name, _)| (StreamProtocol::new(name), ProtocolSupport::Inbound)));
    }
    let rr = request_response::Behaviour::with_codec(FrameCodec, protocols, cfg);
    let mut kcfg = kad::Config::new(StreamProtocol::new(DHT_PROTOCOL));
    kcfg.set_provider_record_ttl(Some(PROVIDER_TTL))
        .set_provider_publication_interval(Some(PROVIDER_REPUBLISH))
        .set_query_timeout(Duration::from_secs(30))
        .set_replication_factor(DHT_REPLICATION);
    let store_cfg =
        kad::store::MemoryStoreConfig { max_providers_per_key: MAX_PROVIDERS_PER_KEY, ..Default::default() };
    let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::with_config(peer_id, store_cfg), kcfg);
    kad.set_mode(Some(if server { kad::Mode::Server } else { kad::Mode::Client }));
    let identify = identify::Behaviour::new(identify::Config::new("/blackbox/1".into(), keypair.public()));
    let limits = libp2p::connection_limits::Behaviour::new(
        libp2p::connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_established(Some(MAX_CONNECTIONS))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING)),
    );
    let behaviour = Behaviour { rr, kad, identify, limits };
    Ok(if noise_only() {
        tcp_swarm!(keypair, behaviour, noise::Config::new)
    } else {
        tcp_swarm!(keypair, behaviour, (crate::tls::Config::new, noise::Config::new))
    })
}

/// Feeds the listen addresses a peer reports to the DHT's routing table.
fn learn_addresses(swarm: &mut Swarm<Behaviour>, peer: PeerId, info: &identify::Info) {
    for addr in &info.listen_addrs {
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
    }
}

/// The payload of a received frame (one piece; joined only if it ever came in several).
fn joined(mut frame: Frame) -> Bytes {
    if frame.len() == 1 {
        frame.pop().unwrap_or_default()
    } else {
        Bytes::from(frame.concat())
    }
}

fn request_response<H: RequestHandler>(
    handler: &H,
    peer: &PeerId,
    request: Result<Result<Request, WireError>, WireError>,
) -> Response {
    match request {
        Ok(Ok(req)) => handler.handle(peer, req),
        Ok(Err(e)) | Err(e) => {
            warn!(%peer, error = %e, "rejected malformed request");
            Response::error(ErrorCode::Malformed, e.to_string())
        }
    }
}

/// A running node: its identity and addresses; dropping it (or `stop`) ends the loop.
pub struct ServeHandle {
    /// The node's identity.
    pub peer_id: PeerId,
    /// Addresses it listens on.
    pub listen_addrs: Vec<Multiaddr>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServeHandle {
    /// Stops accepting requests and waits for the loop to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts a node listening on `listen` that answers every request through `handler`.
///
/// Returns once the listener is up. Handlers run on blocking threads; malformed or oversized
/// requests are logged and answered with an error response.
pub async fn serve<H: RequestHandler>(
    keypair: Keypair,
    listen: Multiaddr,
    handler: Arc<H>,
) -> std::io::Result<ServeHandle> {
    serve_with(keypair, listen, handler, &Discovery::default()).await
}

/// Starts listening on `listen`; returns the addresses once there is at least one.
async fn listen_on(swarm: &mut Swarm<Behaviour>, listen: &Multiaddr) -> std::io::Result<Vec<Multiaddr>> {
    // (libp2p's transport error prints nothing of an I/O failure but keeps it as its source.)
    swarm
        .listen_on(listen.clone())
        .map_err(|e| std::io::Error::other(format!("cannot listen on {listen}: {}", with_sources(&e))))?;
    let mut listen_addrs = Vec::new();
    while listen_addrs.is_empty() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
            SwarmEvent::ListenerClosed { reason, .. } => {
                let reason = reason.err().map(|e| e.to_string()).unwrap_or_default();
                return Err(std::io::Error::other(format!("cannot listen on {listen}: {reason}")));
            }
            SwarmEvent::ListenerError { error, .. } => {
                return Err(std::io::Error::other(format!("cannot listen on {listen}: {error}")))
            }
            _ => {}
        }
    }
    Ok(listen_addrs)
}

/// An error and every error under it, as one line.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let more = s.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text = if text.is_empty() { more } else { format!("{text}: {more}") };
        }
        next = s.source();
    }
    text
}

/// Joins the DHT through the bootstrap peers and announces the node as a storage provider.
fn join_dht(swarm: &mut Swarm<Behaviour>, me: PeerId, addrs: &[Multiaddr], discovery: &Discovery) {
    // Provider records carry these addresses, so clients can reach the node from the DHT alone.
    for addr in addrs {
        swarm.add_external_address(addr.clone());
    }
    for (peer, addr) in &discovery.bootstrap {
        if *peer != me {
            swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        }
    }
    if swarm.behaviour_mut().kad.bootstrap().is_err() {
        debug!("no bootstrap peers: this node starts the DHT");
    }
    if let Err(e) = swarm.behaviour_mut().kad.start_providing(storage_providers_key()) {
        warn!(error = %e, "cannot announce as a provider");
    }
}

/// Like [`serve`], and also joins the DHT through `discovery.bootstrap` and announces the node as a
/// storage provider (republished every [`PROVIDER_REPUBLISH`]).
pub async fn serve_with<H: RequestHandler>(
    keypair: Keypair,
    listen: Multiaddr,
    handler: Arc<H>,
    discovery: &Discovery,
) -> std::io::Result<ServeHandle> {
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = build_swarm(keypair, ProtocolSupport::Inbound, Duration::from_secs(120), true)?;
    let listen_addrs = listen_on(&mut swarm, &listen).await?;
    info!(%peer_id, addrs = ?listen_addrs, "listening");
    join_dht(&mut swarm, peer_id, &listen_addrs, discovery);
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let (done_tx, mut done_rx) = mpsc::channel::<(request_response::ResponseChannel<Bytes>, Vec<u8>)>(MAX_STREAMS);
        let in_flight = Arc::new(AtomicUsize::new(0));
        loop {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                        learn_addresses(&mut swarm, peer_id, &info);
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                        result: QueryResult::Bootstrap(Ok(_)), step, ..
                    })) if step.last => {
                        // Joined: announce again now that there are peers to hold the record.
                        let _ = swarm.behaviour_mut().kad.start_providing(storage_providers_key());
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Rr(Event::Message { peer, message: Message::Request { request, channel, .. }, .. })) => {
                        let request = request.map(|f| Request::decode(joined(f)));
                        if let Ok(Ok(req)) = &request {
                            if handler.runs_inline(req) {
                                let response = request_response(&*handler, &peer, request);
                                let _ = swarm.behaviour_mut().rr.send_response(channel, Bytes::from(response.encode()));
                                continue;
                            }
                        }
                        if in_flight.load(Ordering::Acquire) >= MAX_REQUESTS_IN_FLIGHT {
                            // Bounded over all peers: a flood gets a clear refusal, not a queue.
                            let busy = Response::error(ErrorCode::QuotaExceeded, "node busy: too many requests in progress; retry");
                            let _ = swarm.behaviour_mut().rr.send_response(channel, Bytes::from(busy.encode()));
                            continue;
                        }
                        in_flight.fetch_add(1, Ordering::AcqRel);
                        let (handler, done, count) = (handler.clone(), done_tx.clone(), in_flight.clone());
                        tokio::task::spawn_blocking(move || {
                            let response = request_response(&*handler, &peer, request);
                            count.fetch_sub(1, Ordering::AcqRel);
                            let _ = done.blocking_send((channel, response.encode()));
                        });
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Rr(Event::InboundFailure { peer, error, .. })) => {
                        debug!(%peer, %error, "inbound request failed");
                    }
                    SwarmEvent::IncomingConnectionError { error, .. } => debug!(%error, "incoming connection failed"),
                    _ => {}
                },
                Some((channel, bytes)) = done_rx.recv() => {
                    let _ = swarm.behaviour_mut().rr.send_response(channel, Bytes::from(bytes));
                }
                _ = stopped.changed() => break,
            }
        }
    });
    Ok(ServeHandle { peer_id, listen_addrs, stop, task })
}

struct Outbound {
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    frame: Frame,
    reply: oneshot::Sender<Result<Bytes, TransportError>>,
}

/// A storage provider found in the DHT, with the addresses learned for it.
pub type Provider = (PeerId, Vec<Multiaddr>);

enum Command {
    Request(Outbound),
    FindProviders(oneshot::Sender<Vec<Provider>>),
}

/// A provider search: first the DHT's provider records, then an address lookup per provider.
struct Find {
    providers: HashSet<PeerId>,
    lookups: HashSet<QueryId>,
    reply: oneshot::Sender<Vec<Provider>>,
}

/// Client transport over libp2p; cheap to clone. The network task ends when every clone is dropped.
#[derive(Clone)]
pub struct Libp2pTransport {
    tx: mpsc::Sender<Command>,
}

/// State of the client's network task.
struct ClientLoop {
    swarm: Swarm<Behaviour>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Bytes, TransportError>>>,
    /// Addresses learned per peer (bootstrap list, identify, DHT lookups).
    book: HashMap<PeerId, Vec<Multiaddr>>,
    finds: HashMap<u64, Find>,
    query_owner: HashMap<QueryId, u64>,
    next_find: u64,
    /// Addresses already handed to the swarm.
    dialable: HashSet<(PeerId, Multiaddr)>,
}

impl ClientLoop {
    fn remember(&mut self, peer: PeerId, addr: Multiaddr) {
        let known = self.book.entry(peer).or_default();
        if !known.contains(&addr) {
            known.push(addr.clone());
            self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Request(cmd) => {
                // Tell the swarm a peer's addresses only when they are new to it: every call is
                // an event to every behaviour, and requests run in the thousands per second.
                let addrs = if cmd.addrs.is_empty() { self.book.get(&cmd.peer).cloned() } else { Some(cmd.addrs) };
                for addr in addrs.unwrap_or_default() {
                    if self.dialable.insert((cmd.peer, addr.clone())) {
                        self.swarm.add_peer_address(cmd.peer, addr);
                    }
                }
                let id = self.swarm.behaviour_mut().rr.send_request(&cmd.peer, Ok(cmd.frame));
                self.pending.insert(id, cmd.reply);
            }
            Command::FindProviders(reply) => {
                let qid = self.swarm.behaviour_mut().kad.get_providers(storage_providers_key());
                let fid = self.next_find;
                self.next_find += 1;
                self.finds.insert(fid, Find { providers: HashSet::new(), lookups: HashSet::new(), reply });
                self.query_owner.insert(qid, fid);
            }
        }
    }

    /// Providers are known: look up addresses of those without any, or answer.
    fn providers_done(&mut self, fid: u64) {
        let Some(find) = self.finds.get_mut(&fid) else { return };
        let missing: Vec<PeerId> = find.providers.iter().filter(|p| !self.book.contains_key(p)).copied().collect();
        for peer in missing {
            let qid = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            find.lookups.insert(qid);
            self.query_owner.insert(qid, fid);
        }
        if find.lookups.is_empty() {
            self.answer(fid);
        }
    }

    fn answer(&mut self, fid: u64) {
        if let Some(find) = self.finds.remove(&fid) {
            let found =
                find.providers.into_iter().map(|p| (p, self.book.get(&p).cloned().unwrap_or_default())).collect();
            let _ = find.reply.send(found);
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Rr(Event::Message {
                message: Message::Response { request_id, response },
                ..
            })) => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(Event::OutboundFailure { request_id, error, peer, .. })) => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let err = match error {
                        OutboundFailure::Timeout => TransportError::Timeout(peer),
                        OutboundFailure::UnsupportedProtocols => TransportError::Incompatible(peer),
                        other => TransportError::Unreachable { peer, reason: other.to_string() },
                    };
                    let _ = reply.send(Err(err));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                for addr in info.listen_addrs {
                    self.remember(peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                ..
            })) => {
                let Some(&fid) = self.query_owner.get(&id) else { return };
                match result {
                    QueryResult::GetProviders(r) => {
                        if let (Ok(GetProvidersOk::FoundProviders { providers, .. }), Some(find)) =
                            (r, self.finds.get_mut(&fid))
                        {
                            find.providers.extend(providers);
                        }
                        if step.last {
                            self.query_owner.remove(&id);
                            self.providers_done(fid);
                        }
                    }
                    QueryResult::GetClosestPeers(r) => {
                        if let Ok(GetClosestPeersOk { peers, .. }) = r {
                            for info in peers {
                                for addr in info.addrs {
                                    self.remember(info.peer_id, addr);
                                }
                            }
                        }
                        if step.last {
                            self.query_owner.remove(&id);
                            let done = self.finds.get_mut(&fid).is_some_and(|f| {
                                f.lookups.remove(&id);
                                f.lookups.is_empty()
                            });
                            if done {
                                self.answer(fid);
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

impl Libp2pTransport {
    /// Starts the client's network task with a fresh identity and a per-request timeout.
    pub fn new(timeout: Duration) -> std::io::Result<Self> {
        Self::with_discovery(timeout, &Discovery::default())
    }

    /// Like [`Libp2pTransport::new`], knowing DHT bootstrap peers for [`Self::find_storage_providers`].
    pub fn with_discovery(timeout: Duration, discovery: &Discovery) -> std::io::Result<Self> {
        let swarm = build_swarm(Keypair::generate_ed25519(), ProtocolSupport::Outbound, timeout, false)?;
        let mut state = ClientLoop {
            swarm,
            pending: HashMap::new(),
            book: HashMap::new(),
            finds: HashMap::new(),
            query_owner: HashMap::new(),
            next_find: 0,
            dialable: HashSet::new(),
        };
        for (peer, addr) in &discovery.bootstrap {
            state.remember(*peer, addr.clone());
        }
        let (tx, mut rx) = mpsc::channel::<Command>(256);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(cmd) => state.command(cmd),
                        None => break,
                    },
                    event = state.swarm.select_next_some() => state.event(event),
                }
            }
        });
        Ok(Self { tx })
    }

    /// Asks the DHT for every storage provider, with the addresses learned for each.
    pub async fn find_storage_providers(&self) -> Result<Vec<Provider>, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::FindProviders(reply)).await.map_err(|_| TransportError::Closed)?;
        rx.await.map_err(|_| TransportError::Closed)
    }
}

impl Libp2pTransport {
    /// Sends an arbitrary payload and returns the raw response; for protocol tests.
    pub async fn request_raw(
        &self,
        peer: PeerId,
        addrs: &[Multiaddr],
        payload: Vec<u8>,
    ) -> Result<Bytes, TransportError> {
        self.send_frame(peer, addrs, vec![Bytes::from(payload)]).await
    }

    async fn send_frame(&self, peer: PeerId, addrs: &[Multiaddr], frame: Frame) -> Result<Bytes, TransportError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Outbound { peer, addrs: addrs.to_vec(), frame, reply };
        self.tx.send(Command::Request(cmd)).await.map_err(|_| TransportError::Closed)?;
        rx.await.map_err(|_| TransportError::Closed)?
    }
}

impl Transport for Libp2pTransport {
    async fn request(&self, peer: PeerId, addrs: &[Multiaddr], req: Request) -> Result<Response, TransportError> {
        let bytes = self.send_frame(peer, addrs, req.encode_parts()).await?;
        Response::decode(bytes).map_err(|error| TransportError::BadResponse { peer, error })
    }
}
