//! The libp2p side: a serving node loop and a client transport, both over TCP + noise + yamux.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, Event, Message, OutboundFailure, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::codec::{Frame, FrameCodec};
use crate::wire::{ErrorCode, Request, Response, WireError};
use crate::{RequestHandler, Transport, TransportError, PROTOCOL};

type Behaviour = request_response::Behaviour<FrameCodec>;

/// Concurrent streams one connection may have open; bounds a node's work per peer.
const MAX_STREAMS: usize = 64;

fn build_swarm(keypair: Keypair, protocol: ProtocolSupport, timeout: Duration) -> std::io::Result<Swarm<Behaviour>> {
    let cfg =
        request_response::Config::default().with_request_timeout(timeout).with_max_concurrent_streams(MAX_STREAMS);
    let behaviour = Behaviour::with_codec(FrameCodec, [(StreamProtocol::new(PROTOCOL), protocol)], cfg);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(std::io::Error::other)?
        .with_behaviour(|_| behaviour)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
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
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = build_swarm(keypair, ProtocolSupport::Inbound, Duration::from_secs(120))?;
    swarm.listen_on(listen.clone()).map_err(std::io::Error::other)?;
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
    info!(%peer_id, addrs = ?listen_addrs, "listening");
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let (done_tx, mut done_rx) = mpsc::channel::<(request_response::ResponseChannel<Bytes>, Vec<u8>)>(MAX_STREAMS);
        loop {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::Behaviour(Event::Message { peer, message: Message::Request { request, channel, .. }, .. }) => {
                        let request = request.map(|f| Request::decode(joined(f)));
                        if let Ok(Ok(req)) = &request {
                            if handler.runs_inline(req) {
                                let response = request_response(&*handler, &peer, request);
                                let _ = swarm.behaviour_mut().send_response(channel, Bytes::from(response.encode()));
                                continue;
                            }
                        }
                        let handler = handler.clone();
                        let done = done_tx.clone();
                        tokio::task::spawn_blocking(move || {
                            let response = request_response(&*handler, &peer, request);
                            let _ = done.blocking_send((channel, response.encode()));
                        });
                    }
                    SwarmEvent::Behaviour(Event::InboundFailure { peer, error, .. }) => {
                        debug!(%peer, %error, "inbound request failed");
                    }
                    SwarmEvent::IncomingConnectionError { error, .. } => debug!(%error, "incoming connection failed"),
                    _ => {}
                },
                Some((channel, bytes)) = done_rx.recv() => {
                    let _ = swarm.behaviour_mut().send_response(channel, Bytes::from(bytes));
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

/// Client transport over libp2p; cheap to clone. The network task ends when every clone is dropped.
#[derive(Clone)]
pub struct Libp2pTransport {
    tx: mpsc::Sender<Outbound>,
}

impl Libp2pTransport {
    /// Starts the client's network task with a fresh identity and a per-request timeout.
    pub fn new(timeout: Duration) -> std::io::Result<Self> {
        let mut swarm = build_swarm(Keypair::generate_ed25519(), ProtocolSupport::Outbound, timeout)?;
        let (tx, mut rx) = mpsc::channel::<Outbound>(256);
        tokio::spawn(async move {
            let mut pending: HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<Bytes, TransportError>>)> =
                HashMap::new();
            loop {
                tokio::select! {
                    cmd = rx.recv() => {
                        let Some(cmd) = cmd else { break };
                        for addr in cmd.addrs {
                            swarm.add_peer_address(cmd.peer, addr);
                        }
                        let id = swarm.behaviour_mut().send_request(&cmd.peer, Ok(cmd.frame));
                        pending.insert(id, (cmd.peer, cmd.reply));
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour(Event::Message { message: Message::Response { request_id, response }, .. }) => {
                            if let Some((_, reply)) = pending.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                        SwarmEvent::Behaviour(Event::OutboundFailure { request_id, error, peer, .. }) => {
                            if let Some((_, reply)) = pending.remove(&request_id) {
                                let err = match error {
                                    OutboundFailure::Timeout => TransportError::Timeout(peer),
                                    other => TransportError::Unreachable { peer, reason: other.to_string() },
                                };
                                let _ = reply.send(Err(err));
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        Ok(Self { tx })
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
        self.tx.send(cmd).await.map_err(|_| TransportError::Closed)?;
        rx.await.map_err(|_| TransportError::Closed)?
    }
}

impl Transport for Libp2pTransport {
    async fn request(&self, peer: PeerId, addrs: &[Multiaddr], req: Request) -> Result<Response, TransportError> {
        let bytes = self.send_frame(peer, addrs, req.encode_parts()).await?;
        Response::decode(bytes).map_err(|error| TransportError::BadResponse { peer, error })
    }
}
