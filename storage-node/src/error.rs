//! What a storage node refuses and why: one typed error per case, mapped to the wire's error
//! codes in one place ([`NodeError::code`]).

use blackbox_net::{ErrorCode, Response};
use thiserror::Error;

use crate::store::StoreError;

/// Why a request failed at the node.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The encoding parameters of an allocation are not valid.
    #[error("{0}")]
    BadParams(blackbox_core::CoreError),
    /// A share number at or above n.
    #[error("share number not below n")]
    ShareOutOfRange,
    /// More segments than this node can track.
    #[error("file too large")]
    FileTooLarge,
    /// Too many blocks of uploads in progress, over all clients.
    #[error("node busy: {in_flight} blocks of uploads in progress, limit {limit}")]
    Busy { in_flight: usize, limit: usize },
    /// The share does not fit in the quota.
    #[error("node full: {used} of {quota} bytes used, share needs {need}")]
    Full { used: u64, quota: u64, need: u64 },
    /// No upload in progress under this key (or not one of the sender's).
    #[error("no such upload")]
    NoSuchUpload,
    /// The upload was allocated by another peer.
    #[error("upload belongs to another client")]
    NotOwner,
    /// Blocks outside the share.
    #[error("block range outside the share")]
    BlockRange,
    /// A block of the wrong length.
    #[error("block {index} must be {want} bytes")]
    BlockSize { index: u64, want: usize },
    /// A commit before every block was written.
    #[error("block {0} missing")]
    BlockMissing(usize),
    /// The header sent at commit does not decode.
    #[error("{0}")]
    BadHeader(blackbox_core::CoreError),
    /// The header describes another file layout than the allocation.
    #[error("header does not match the allocation")]
    HeaderMismatch,
    /// The blocks written do not hash to the header's root for this share.
    #[error("blocks do not match the share root in the header")]
    RootMismatch,
    /// No committed share under this key.
    #[error("no such share")]
    NoSuchShare,
    /// No share of this file is stored here.
    #[error("no shares of this file here")]
    NoSharesOfFile,
    /// The node has not signed an offer yet.
    #[error("this node publishes no offer")]
    NoOffer,
    /// A challenge that asks for too much or too little.
    #[error("{0}")]
    BadChallenge(blackbox_proofs::ProofError),
    /// The stored share cannot be proved (its layout and the challenge disagree).
    #[error("{0}")]
    Proof(blackbox_proofs::ProofError),
    /// The node's own store failed.
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
    /// A `Paid` envelope inside another.
    #[error("payments do not nest")]
    NestedPayment,
    /// The sender has as many uploads in progress as a peer may.
    #[error("too many uploads in progress from this peer ({have}, limit {limit}); finish or abort some")]
    PeerUploads { have: usize, limit: usize },
    /// The sender's uploads in progress reserve as much space as a peer may.
    #[error("uploads in progress from this peer reserve {reserved} bytes; limit {limit}")]
    PeerReserved { reserved: u64, limit: u64 },
    /// The sender asked for more proofs this minute than a peer may.
    #[error("too many challenges from this peer: at most {limit} a minute")]
    TooManyChallenges { limit: u32 },
    /// The sender asked to open more channels this minute than a peer may.
    #[error("too many channel opens from this peer: at most {limit} a minute")]
    TooManyOpens { limit: u32 },
    /// A renewal that would extend no lease: leases only grow.
    #[error("leases already run until {expires} (unix), past the renewal asked; leases only grow")]
    LeaseLonger { expires: u64 },
    /// A slot header that does not decode, names another slot, or is not signed by the slot key.
    #[error("{0}")]
    BadSlot(blackbox_core::SlotError),
    /// A slot write whose version is not above the one it replaces.
    #[error("slot version {sequence} is not above the version {replaces} it replaces")]
    SlotNotNewer { sequence: u64, replaces: u64 },
    /// A slot write that lost a compare-and-swap: the slot holds another version.
    #[error("slot holds version {current}, not the version {replaces} this write replaces; read it and retry")]
    Conflict { current: u64, replaces: u64 },
    /// The offer's bandwidth for this month is used up.
    #[error("this node has served its monthly bandwidth of {limit} bytes")]
    EgressSpent { limit: u64 },
    /// A job refused, or a job request that failed.
    #[error(transparent)]
    Job(#[from] crate::jobs::JobError),
    /// A second commit of a share that is already stored.
    #[error("share already stored")]
    AlreadyStored,
    /// Payment requests to a node that serves for free.
    #[error("this node takes no payments")]
    NoPayments,
    /// Payment channels and billing.
    #[error(transparent)]
    Billing(#[from] crate::billing::BillingError),
}

impl NodeError {
    /// The wire error code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Busy { .. }
            | Self::Full { .. }
            | Self::PeerUploads { .. }
            | Self::PeerReserved { .. }
            | Self::TooManyChallenges { .. }
            | Self::TooManyOpens { .. }
            | Self::EgressSpent { .. } => ErrorCode::QuotaExceeded,
            Self::NoSuchUpload | Self::NoSuchShare | Self::NoSharesOfFile | Self::NoOffer => ErrorCode::NotFound,
            Self::BadChallenge(_) => ErrorCode::Malformed,
            Self::Conflict { .. } => ErrorCode::Conflict,
            Self::Store(_) => ErrorCode::Internal,
            Self::Billing(b) => b.code(),
            Self::Job(j) => j.code(),
            _ => ErrorCode::Invalid,
        }
    }

    /// The error as sent to the client.
    pub fn to_response(&self) -> Response {
        if let Self::Store(e) = self {
            tracing::warn!(error = %e, "store failure");
        }
        Response::error(self.code(), self.to_string())
    }
}
