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
    /// `happy` outside k..=n.
    #[error("happy must be between k={k} and n={n}, got {happy}")]
    BadHappy { k: usize, n: usize, happy: usize },
    /// No node to store on.
    #[error("no storage nodes configured")]
    NoNodes,
    /// Every node was filtered out by price or reputation.
    #[error("no candidate node: every node is above the price ceiling or has a bad reputation")]
    NoCandidates,
    /// The input could not be read to its declared size.
    #[error("input ended early or failed to read ({0}); did the file change?")]
    InputShort(std::io::Error),
    /// The input holds more bytes than declared.
    #[error("input is longer than its declared size; did the file change?")]
    InputLong,
    /// The upload stopped before it was done.
    #[error("upload cancelled")]
    Cancelled,
    /// A range read outside the file.
    #[error("range {offset}+{len} is outside the file ({size} bytes)")]
    RangeOutside { offset: u64, len: u64, size: u64 },
    /// A background task of the client died.
    #[error("{what} crashed: {source}")]
    Crashed { what: &'static str, source: tokio::task::JoinError },
    /// The client config cannot be used.
    #[error(transparent)]
    Config(#[from] blackbox_util::ConfigError),
    /// A `[[nodes]]` entry of the config does not parse.
    #[error(transparent)]
    NodeEntry(#[from] crate::config::NodeEntryError),
    /// A bootstrap entry of the config does not parse.
    #[error(transparent)]
    Bootstrap(#[from] blackbox_net::BootstrapError),
    /// Neither nodes nor bootstrap peers in the config.
    #[error("the client config lists no nodes and no bootstrap peers")]
    NoNodesConfigured,
    /// Discovery found no node that serves a valid offer.
    #[error("found no storage node with a valid offer (bootstrap peers: {bootstrap}; {why})")]
    NoValidOffer { bootstrap: String, why: String },
    /// The network could not be started.
    #[error("starting network: {0}")]
    Network(std::io::Error),
    /// A payment command with a config that has no `[payments]` section.
    #[error("the client config has no [payments] section")]
    NoPayments,
    /// A node that is not among the client's nodes.
    #[error("node {0} not found")]
    UnknownNode(String),
    /// A text that is no capability of the expected kind.
    #[error("invalid capability: {0}")]
    BadCap(#[from] blackbox_core::CapError),
    /// A state file of the client's data dir could not be written.
    #[error("cannot save {what}: {source}")]
    State { what: &'static str, source: std::io::Error },
    /// A challenge deadline that is not a positive number of seconds.
    #[error("--deadline must be a positive number of seconds, got {0}")]
    BadDeadline(f64),
    /// An audit, renewal or repair of "every watched file" with none watched.
    #[error("no cap given and no watched files (`blackbox put` and `blackbox auditor add` watch files)")]
    NothingWatched,
    /// A node charged a job more than the buyer accepted.
    #[error("node {peer} charged a job more than was accepted")]
    JobOvercharged { peer: PeerId },
    /// A node stopped answering about a job.
    #[error("node {peer} stopped answering about the job (at most one slice of its fuel was paid ahead): {why}")]
    JobLost { peer: PeerId, why: String },
    /// No node can run the job.
    #[error("cannot place the job: {why}")]
    JobNoNode { why: String },
    /// Paying a node failed.
    #[error(transparent)]
    Pay(#[from] crate::pay::PayError),
    /// Local I/O failed (reading the input or writing the output).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Another writer published a version of the slot first; read it again and retry.
    #[error("another writer changed {what} meanwhile (compare-and-swap lost); read it again and retry")]
    Conflict { what: String },
    /// No version of a slot has enough shares to read.
    #[error("no version of the slot is recoverable (highest seen: {highest}, found {found} nodes answering)")]
    SlotUnreadable { highest: u64, found: usize },
    /// Slot content above the limit.
    #[error("slot content of {0} bytes is above the 4 MiB limit")]
    SlotTooLarge(usize),
    /// A directory node failed to decode or a name is invalid.
    #[error(transparent)]
    Dir(#[from] blackbox_core::dir::DirError),
    /// A multi-part file's manifest does not decode.
    #[error(transparent)]
    Manifest(#[from] blackbox_core::multi::ManifestError),
    /// A path does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// The name is taken (use --force to replace).
    #[error("{0}: already exists")]
    Exists(String),
    /// A path component is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A file operation on a directory.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// A directory that still has entries.
    #[error("{0}: directory not empty (use -r)")]
    NotEmpty(String),
    /// A write through a read-only cap.
    #[error("{0}: read-only (reached through a read cap)")]
    ReadOnly(String),
    /// A path that does not parse.
    #[error("bad path {path:?}: {why}")]
    BadPath { path: String, why: &'static str },
    /// The pure pipeline rejected something.
    #[error(transparent)]
    Core(#[from] blackbox_core::CoreError),
}

impl ClientError {
    pub(crate) fn unexpected(node: &NodeRef, _resp: &Response) -> Self {
        Self::Unexpected { peer: node.peer }
    }

    /// Whether this is a lost compare-and-swap (another writer was first).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Node { code: ErrorCode::Conflict, .. })
    }

    pub(crate) fn crashed(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| Self::Crashed { what, source }
    }
}
