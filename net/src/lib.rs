//! Network layer of blackbox: the versioned, size-limited storage protocol and its transports.
//!
//! `wire` defines every message and its byte format; `Transport` is the client's view of the network
//! (libp2p for real, in-process for tests); `serve` runs a libp2p node that hands each request to a
//! [`RequestHandler`], so the storage logic never sees libp2p.

mod bin;
mod bootstrap;
mod codec;
mod memory;
pub mod offer;
mod pool;
mod swarm;
mod tls;
pub mod wire;

use std::future::Future;

pub use bootstrap::{parse_bootstrap, BootstrapError};
pub use libp2p::identity::Keypair;
pub use libp2p::{multiaddr, Multiaddr, PeerId};
pub use memory::MemoryTransport;
pub use swarm::{
    serve, serve_with, storage_providers_key, Discovery, Libp2pTransport, Provider, ServeHandle, DHT_PROTOCOL,
    DHT_REPLICATION, PROVIDER_REPUBLISH, PROVIDER_TTL,
};
pub use wire::{ErrorCode, NodeStatus, Request, Response, WireError};

/// Name of the storage protocol as negotiated by libp2p.
pub const PROTOCOL: &str = "/blackbox/storage/3";
/// Older storage protocols, with their wire versions: requests on them get a refusal that their
/// clients can read (in their own version), saying to upgrade.
pub const OLD_PROTOCOLS: &[(&str, u8)] = &[("/blackbox/storage/2", 2)];

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached or the connection broke.
    #[error("peer {peer} unreachable: {reason}")]
    Unreachable { peer: PeerId, reason: String },
    /// The peer did not answer in time.
    #[error("peer {0} did not answer in time")]
    Timeout(PeerId),
    /// The peer answered with bytes that are not a valid response.
    #[error("peer {peer} sent a malformed response: {error}")]
    BadResponse { peer: PeerId, error: WireError },
    /// The peer does not speak this build's storage protocol (an older blackbox).
    #[error("peer {0} does not speak {PROTOCOL}: it runs an older blackbox and needs an upgrade")]
    Incompatible(PeerId),
    /// The local network task has stopped.
    #[error("network task stopped")]
    Closed,
}

/// The storage logic behind a node: turns one request into one response (may block on disk).
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles `req` sent by `from`.
    fn handle(&self, from: &PeerId, req: Request) -> Response;

    /// Whether `req` is cheap and never waits on the disk, so the network loop may answer it in
    /// place instead of handing it to a blocking thread (a thread hand-off per block cost more CPU
    /// than the work itself on small machines). Default: never.
    fn runs_inline(&self, _req: &Request) -> bool {
        false
    }
}

/// How a client reaches storage nodes.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Sends `req` to `peer` (dialing `addrs` if needed) and waits for its response.
    fn request(
        &self,
        peer: PeerId,
        addrs: &[Multiaddr],
        req: Request,
    ) -> impl Future<Output = Result<Response, TransportError>> + Send;
}
