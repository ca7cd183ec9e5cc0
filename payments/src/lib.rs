//! Unidirectional bitcoin payment channels (pure: no I/O).
//!
//! The payer locks `capacity` satoshis in a P2WSH output of
//! `IF 2 <payer> <provider> 2 CHECKMULTISIG ELSE <timeout> CHECKLOCKTIMEVERIFY DROP <payer> CHECKSIG ENDIF`.
//! To pay, the payer signs a commitment transaction that spends it to the provider (the cumulative
//! amount paid) and back to the payer (the rest, less the fee); the provider keeps the newest one,
//! adds its own signature and broadcasts it to close. If the provider vanishes, the payer alone
//! spends the output after block `timeout` (the refund). Every spend is checked with Bitcoin Core's
//! consensus library before it is trusted ([`consensus`]).

pub mod channel;
pub mod consensus;
pub mod pricing;
pub mod script;
pub mod wallet;

pub use channel::{ChannelId, ChannelParams, ChannelUpdate, PayerChannel, ProviderChannel};
pub use pricing::{Prices, Usage};

/// Why a payment, transaction or channel was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PaymentError {
    /// The update does not pay more than the newest one accepted (replay or lower value).
    #[error("commitment pays {got} sat, not more than the {have} sat already accepted")]
    NotIncreasing {
        /// Amount in the update.
        got: u64,
        /// Amount accepted before.
        have: u64,
    },
    /// The update pays more than the channel can.
    #[error("commitment pays {got} sat, the channel can pay at most {max}")]
    OverCapacity {
        /// Amount in the update.
        got: u64,
        /// Most payable.
        max: u64,
    },
    /// The signature is not the payer's over this channel's commitment.
    #[error("commitment signature does not verify")]
    BadSignature,
    /// The update names another channel.
    #[error("update is for another channel")]
    WrongChannel,
    /// The completed transaction fails Bitcoin's script rules.
    #[error("transaction fails consensus script checks: {0}")]
    Consensus(String),
    /// Channel parameters are unusable.
    #[error("invalid channel: {0}")]
    Invalid(&'static str),
    /// Malformed bytes.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The payer is asked to pay more than the provider's signed prices allow.
    #[error("node asks {asked} sat, its signed prices allow {allowed}")]
    Overbilled {
        /// Amount asked (cumulative).
        asked: u64,
        /// Amount the prices allow (cumulative).
        allowed: u64,
    },
}
