//! In-process transport: requests go straight to handlers, through the real wire encoding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};

use crate::wire::{ErrorCode, Request, Response};
use crate::{RequestHandler, Transport, TransportError};

/// A grid of handlers in one process, for tests that must start in milliseconds.
pub struct MemoryTransport<H> {
    me: PeerId,
    nodes: Arc<Mutex<HashMap<PeerId, Arc<H>>>>,
}

impl<H> Clone for MemoryTransport<H> {
    fn clone(&self) -> Self {
        Self { me: self.me, nodes: self.nodes.clone() }
    }
}

impl<H: RequestHandler> Default for MemoryTransport<H> {
    fn default() -> Self {
        Self { me: PeerId::random(), nodes: Arc::default() }
    }
}

impl<H: RequestHandler> MemoryTransport<H> {
    /// An empty grid.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a node.
    pub fn insert(&self, peer: PeerId, handler: Arc<H>) {
        self.lock().insert(peer, handler);
    }

    /// Takes a node off the grid, as if its process died.
    pub fn remove(&self, peer: &PeerId) -> Option<Arc<H>> {
        self.lock().remove(peer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Arc<H>>> {
        self.nodes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<H: RequestHandler> Transport for MemoryTransport<H> {
    async fn request(&self, peer: PeerId, _addrs: &[Multiaddr], req: Request) -> Result<Response, TransportError> {
        let handler = self
            .lock()
            .get(&peer)
            .cloned()
            .ok_or_else(|| TransportError::Unreachable { peer, reason: "not on the in-process grid".into() })?;
        let me = self.me;
        let payload = Bytes::from(req.encode());
        let reply = tokio::task::spawn_blocking(move || match Request::decode(payload) {
            Ok(req) => handler.handle(&me, req),
            Err(e) => Response::error(ErrorCode::Malformed, e.to_string()),
        })
        .await
        .map_err(|_| TransportError::Closed)?;
        Response::decode(Bytes::from(reply.encode())).map_err(|e| TransportError::BadResponse { peer, error: e })
    }
}
