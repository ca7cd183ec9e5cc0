//! Bootstrap entries as users write them: `<multiaddr>/p2p/<peer id>`.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// A bootstrap entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// Not a multiaddr.
    #[error("invalid bootstrap address `{entry}`: {reason}")]
    Address { entry: String, reason: String },
    /// A multiaddr without the peer id to expect there.
    #[error("bootstrap address `{0}` must end in /p2p/<peer id>")]
    NoPeer(String),
}

/// Parses bootstrap entries (`<multiaddr>/p2p/<peer id>`) into peer and address.
pub fn parse_bootstrap(list: &[String]) -> Result<Vec<(PeerId, Multiaddr)>, BootstrapError> {
    list.iter()
        .map(|entry| {
            let mut addr: Multiaddr = entry.parse().map_err(|e: libp2p::multiaddr::Error| BootstrapError::Address {
                entry: entry.clone(),
                reason: e.to_string(),
            })?;
            match addr.pop() {
                Some(Protocol::P2p(peer)) => Ok((peer, addr)),
                _ => Err(BootstrapError::NoPeer(entry.clone())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_need_a_peer_id() {
        let peer = PeerId::random();
        let ok = parse_bootstrap(&[format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")]).unwrap();
        assert_eq!(ok[0].0, peer);
        assert_eq!(ok[0].1.to_string(), "/ip4/127.0.0.1/tcp/4001");
        assert!(matches!(parse_bootstrap(&["/ip4/127.0.0.1/tcp/1".into()]), Err(BootstrapError::NoPeer(_))));
        assert!(matches!(parse_bootstrap(&["nonsense".into()]), Err(BootstrapError::Address { .. })));
    }
}
