//! Why the node refused a payment, a channel or a charge.

use blackbox_chain::ChainError;
use blackbox_net::ErrorCode;
use blackbox_payments::PaymentError;
use thiserror::Error;

/// Why a payment, a channel or a charge was refused.
#[derive(Debug, Error)]
pub enum BillingError {
    /// Channel parameters or an update that do not decode or do not check.
    #[error("{0}")]
    Malformed(PaymentError),
    /// The channel pays another key than this node's.
    #[error("channel does not pay this node's key")]
    NotOurKey,
    /// The commitment fee is below the node's floor: its close might never confirm.
    #[error("channel fee {fee} sat is below this node's floor of {floor} sat")]
    FeeTooLow { fee: u64, floor: u64 },
    /// The funding output is already used by another channel.
    #[error("a different channel uses this funding output")]
    FundingTaken,
    /// The channel would time out too soon to be worth serving.
    #[error("channel timeout {timeout} is too close (height {height}, need {need} blocks)")]
    TimeoutTooClose { timeout: u32, height: u32, need: u32 },
    /// The funding output is not on chain.
    #[error("funding output not found or already spent")]
    FundingMissing,
    /// The funding output locks another script or amount.
    #[error("funding output does not lock the channel's script and amount")]
    FundingMismatch,
    /// The funding output is not confirmed deeply enough yet.
    #[error("funding output has {have} confirmations, need {need}")]
    Unconfirmed { have: u32, need: u32 },
    /// The chain could not be asked.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// No channel with this funding output.
    #[error("unknown channel")]
    UnknownChannel,
    /// The channel was closed on chain.
    #[error("payment required: this channel is closed; open a new one")]
    Closed,
    /// An update whose signature or amounts do not check.
    #[error("payment rejected: {0}")]
    Rejected(PaymentError),
    /// A billed request from a peer without a channel.
    #[error("payment required: {what} is billed; open a payment channel and attach a payment")]
    NoChannel { what: &'static str },
    /// A billed request that the channel's payments do not cover.
    #[error("payment required: {what} brings the bill to {owed} sat; {paid} sat paid on the channel")]
    Unpaid { what: &'static str, owed: u64, paid: u64 },
    /// The offer a channel is opened at is not a valid, unexpired offer of this node.
    #[error("channel offer refused: {0}")]
    BadOffer(String),
    /// Channel status asked by someone who did not prove to be the channel's payer.
    #[error("channel status is told only to the channel's payer (send it inside a payment of that channel)")]
    NotPayer,
    /// A payment could not be recorded on disk.
    #[error("cannot record payment: {0}")]
    Record(std::io::Error),
}

impl BillingError {
    /// The wire error code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Chain(_) | Self::Record(_) => ErrorCode::Internal,
            Self::UnknownChannel => ErrorCode::NotFound,
            Self::NotPayer => ErrorCode::PaymentRequired,
            Self::Closed | Self::NoChannel { .. } | Self::Unpaid { .. } => ErrorCode::PaymentRequired,
            _ => ErrorCode::Invalid,
        }
    }
}
