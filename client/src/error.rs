use blackbox_net::{ErrorCode, PeerId, Response, TransportError};
use thiserror::Error;

use crate::NodeRef;

/// What can go wrong for a client.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The network failed to deliver a request.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A node answered with an error.
    #[error("node {peer} refused: {message} ({code:?})")]
    Node { peer: PeerId, code: ErrorCode, message: String },
    /// A node answered with the wrong kind of response.
    #[error("node {peer} sent an unexpected response")]
    Unexpected { peer: PeerId },
    /// A node's offer is missing, forged, expired or signed by another node.
    #[error("node {peer} has no valid offer: {reason}")]
    BadOffer { peer: PeerId, reason: String },
    /// A node did not answer in time.
    #[error("node {0} did not answer in time")]
    Timeout(PeerId),
    /// A node sent data that failed verification.
    #[error("node {peer} sent bad data for share {share}: {what}")]
    BadData { peer: PeerId, share: u8, what: String },
    /// Not enough shares could be found or fetched to rebuild the file.
    #[error("file is not recoverable: found {found} distinct good shares, need {needed} (asked {asked} nodes, {answered} answered)")]
    NotEnoughShares { found: usize, needed: usize, asked: usize, answered: usize },
    /// Too few shares delivered a good block for one segment.
    #[error(
        "segment {index} is not recoverable: only {good} of the {tried} shares tried gave a good block, need {needed}"
    )]
    SegmentLost { index: u64, good: usize, tried: usize, needed: usize },
    /// An upload could not reach servers-of-happiness.
    #[error("upload failed: shares landed on {achieved} distinct nodes, need {happy} ({detail})")]
    NotHappy { achieved: usize, happy: usize, detail: String },
    /// Bad input from the caller.
    #[error("{0}")]
    Invalid(String),
    /// Local I/O failed (reading the input or writing the output).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The pure pipeline rejected something.
    #[error(transparent)]
    Core(#[from] blackbox_core::CoreError),
}

impl ClientError {
    pub(crate) fn unexpected(node: &NodeRef, _resp: &Response) -> Self {
        Self::Unexpected { peer: node.peer }
    }
}
