//! Channel parameters, transactions and the two sides' state machines.

use std::sync::OnceLock;

use bitcoin::absolute::LockTime;
use bitcoin::ecdsa::Signature;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{Amount, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

use crate::script::{funding_script, p2wpkh, DUST_LIMIT, MAX_HEIGHT};
use crate::{consensus, PaymentError};

/// A channel is named by its funding outpoint.
pub type ChannelId = OutPoint;

/// Version byte of encoded channel parameters and updates.
pub const CHANNEL_VERSION: u8 = 1;
/// Length of encoded [`ChannelParams`].
pub const PARAMS_LEN: usize = 1 + 32 + 4 + 8 + 33 + 33 + 4 + 8;
/// Longest encoded [`ChannelUpdate`] (DER signature ≤ 72 bytes + sighash byte).
pub const MAX_UPDATE_LEN: usize = 1 + 32 + 4 + 8 + 1 + 73;

pub(crate) fn secp() -> &'static Secp256k1<All> {
    static S: OnceLock<Secp256k1<All>> = OnceLock::new();
    S.get_or_init(Secp256k1::new)
}

/// The public key of a secret key, compressed.
pub fn public_key(sk: &SecretKey) -> CompressedPublicKey {
    CompressedPublicKey(sk.public_key(secp()))
}

/// Everything both sides agree on when a channel opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelParams {
    /// The funding output.
    pub funding: OutPoint,
    /// Satoshis locked in it.
    pub capacity: u64,
    /// The payer's key (signs commitments and the refund).
    pub payer: CompressedPublicKey,
    /// The provider's key (from its signed offer).
    pub provider: CompressedPublicKey,
    /// Block height after which the payer alone may take the funds back.
    pub timeout: u32,
    /// Fee of the commitment and refund transactions, paid from the payer's side.
    pub fee: u64,
}

impl ChannelParams {
    /// Checks the numbers make a usable channel.
    pub fn check(&self) -> Result<(), PaymentError> {
        if self.timeout == 0 || self.timeout > MAX_HEIGHT {
            return Err(PaymentError::Invalid("timeout must be a block height"));
        }
        if self.capacity.checked_sub(self.fee).is_none_or(|left| left < DUST_LIMIT) {
            return Err(PaymentError::Invalid("capacity must exceed the fee by more than the dust limit"));
        }
        if self.capacity > 21_000_000 * 100_000_000 {
            return Err(PaymentError::Invalid("capacity above the bitcoin supply"));
        }
        Ok(())
    }

    /// The funding output's witness script.
    pub fn script(&self) -> ScriptBuf {
        funding_script(&self.payer, &self.provider, self.timeout)
    }

    /// The funding output as it must appear on chain.
    pub fn funding_output(&self) -> TxOut {
        TxOut {
            value: Amount::from_sat(self.capacity),
            script_pubkey: ScriptBuf::new_p2wsh(&self.script().wscript_hash()),
        }
    }

    /// Most the provider can be paid.
    pub fn max_payable(&self) -> u64 {
        self.capacity.saturating_sub(self.fee)
    }

    fn input(&self, sequence: Sequence) -> TxIn {
        TxIn { previous_output: self.funding, script_sig: ScriptBuf::new(), sequence, witness: Witness::new() }
    }

    /// The unsigned commitment paying `paid` to the provider and the rest (less the fee) back;
    /// an output below the dust limit is left out.
    pub fn commitment(&self, paid: u64) -> Result<Transaction, PaymentError> {
        if paid > self.max_payable() {
            return Err(PaymentError::OverCapacity { got: paid, max: self.max_payable() });
        }
        let change = self.max_payable() - paid;
        let mut output = Vec::new();
        if paid >= DUST_LIMIT {
            output.push(TxOut { value: Amount::from_sat(paid), script_pubkey: p2wpkh(&self.provider) });
        }
        if change >= DUST_LIMIT {
            output.push(TxOut { value: Amount::from_sat(change), script_pubkey: p2wpkh(&self.payer) });
        }
        Ok(Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![self.input(Sequence::MAX)],
            output,
        })
    }

    /// The unsigned refund: everything (less the fee) back to the payer, valid from block `timeout`.
    pub fn refund(&self) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::from_height(self.timeout).unwrap_or(LockTime::ZERO),
            input: vec![self.input(Sequence::ENABLE_LOCKTIME_NO_RBF)],
            output: vec![TxOut { value: Amount::from_sat(self.max_payable()), script_pubkey: p2wpkh(&self.payer) }],
        }
    }

    /// The message a signature over input 0 of `tx` (spending the funding output) signs.
    pub fn sighash(&self, tx: &Transaction) -> Result<Message, PaymentError> {
        let hash = SighashCache::new(tx)
            .p2wsh_signature_hash(0, &self.script(), Amount::from_sat(self.capacity), EcdsaSighashType::All)
            .map_err(|_| PaymentError::Invalid("transaction has no input 0"))?;
        Ok(Message::from_digest(hash.to_byte_array()))
    }

    fn sign(&self, tx: &Transaction, key: &SecretKey) -> Result<Vec<u8>, PaymentError> {
        let sig = secp().sign_ecdsa(&self.sighash(tx)?, key);
        Ok(Signature { signature: sig, sighash_type: EcdsaSighashType::All }.to_vec())
    }

    /// Encodes the parameters (versioned, fixed length).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PARAMS_LEN);
        out.push(CHANNEL_VERSION);
        out.extend_from_slice(self.funding.txid.as_byte_array());
        out.extend_from_slice(&self.funding.vout.to_le_bytes());
        out.extend_from_slice(&self.capacity.to_le_bytes());
        out.extend_from_slice(&self.payer.to_bytes());
        out.extend_from_slice(&self.provider.to_bytes());
        out.extend_from_slice(&self.timeout.to_le_bytes());
        out.extend_from_slice(&self.fee.to_le_bytes());
        out
    }

    /// Strict decoder of [`ChannelParams::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, PaymentError> {
        if b.len() != PARAMS_LEN || b[0] != CHANNEL_VERSION {
            return Err(PaymentError::Malformed("channel parameters"));
        }
        let key = |r: std::ops::Range<usize>| {
            CompressedPublicKey::from_slice(&b[r]).map_err(|_| PaymentError::Malformed("public key"))
        };
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
        Ok(Self {
            funding: OutPoint { txid: Txid::from_byte_array(b[1..33].try_into().unwrap_or([0; 32])), vout: u32_at(33) },
            capacity: u64_at(37),
            payer: key(45..78)?,
            provider: key(78..111)?,
            timeout: u32_at(111),
            fee: u64_at(115),
        })
    }
}

/// A payer's signature on the commitment that pays `paid` (cumulative) on `channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelUpdate {
    /// The channel.
    pub channel: ChannelId,
    /// Cumulative satoshis to the provider.
    pub paid: u64,
    /// DER signature plus sighash byte, as it goes in the witness.
    pub signature: Vec<u8>,
}

impl ChannelUpdate {
    /// Encodes the update (versioned).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_UPDATE_LEN);
        out.push(CHANNEL_VERSION);
        out.extend_from_slice(self.channel.txid.as_byte_array());
        out.extend_from_slice(&self.channel.vout.to_le_bytes());
        out.extend_from_slice(&self.paid.to_le_bytes());
        out.push(self.signature.len() as u8);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Strict decoder of [`ChannelUpdate::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, PaymentError> {
        if b.len() < 46 || b.len() > MAX_UPDATE_LEN || b[0] != CHANNEL_VERSION || b.len() != 46 + b[45] as usize {
            return Err(PaymentError::Malformed("channel update"));
        }
        Ok(Self {
            channel: OutPoint {
                txid: Txid::from_byte_array(b[1..33].try_into().unwrap_or([0; 32])),
                vout: u32::from_le_bytes(b[33..37].try_into().unwrap_or([0; 4])),
            },
            paid: u64::from_le_bytes(b[37..45].try_into().unwrap_or([0; 8])),
            signature: b[46..].to_vec(),
        })
    }
}

/// The payer's side: signs ever larger commitments and, if need be, the refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayerChannel {
    /// The channel.
    pub params: ChannelParams,
    /// Cumulative satoshis signed over so far.
    pub paid: u64,
}

impl PayerChannel {
    /// A new channel (nothing paid yet).
    pub fn new(params: ChannelParams) -> Result<Self, PaymentError> {
        params.check()?;
        Ok(Self { params, paid: 0 })
    }

    /// Signs a commitment paying `paid` in all (never less than already signed). The caller must
    /// persist `paid` before sending the update, so a crash can never make it sign less later.
    pub fn sign(&self, paid: u64, key: &SecretKey) -> Result<ChannelUpdate, PaymentError> {
        if paid < self.paid {
            return Err(PaymentError::NotIncreasing { got: paid, have: self.paid });
        }
        let tx = self.params.commitment(paid)?;
        Ok(ChannelUpdate { channel: self.params.funding, paid, signature: self.params.sign(&tx, key)? })
    }

    /// The signed refund transaction (valid on chain from block `timeout`), checked with the
    /// consensus library.
    pub fn refund_tx(&self, key: &SecretKey) -> Result<Transaction, PaymentError> {
        let mut tx = self.params.refund();
        let sig = self.params.sign(&tx, key)?;
        tx.input[0].witness = Witness::from_slice(&[sig, Vec::new(), self.params.script().into_bytes()]);
        consensus::verify_input(&tx, 0, &self.params.funding_output())?;
        Ok(tx)
    }
}

/// The provider's side: accepts only larger, correctly signed commitments and can close with the
/// newest one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderChannel {
    /// The channel.
    pub params: ChannelParams,
    /// Cumulative satoshis of the newest accepted commitment.
    pub paid: u64,
    /// The payer's signature on it.
    pub signature: Vec<u8>,
}

impl ProviderChannel {
    /// A channel the provider agreed to (nothing received yet).
    pub fn new(params: ChannelParams) -> Result<Self, PaymentError> {
        params.check()?;
        Ok(Self { params, paid: 0, signature: Vec::new() })
    }

    /// Checks an update without applying it: right channel, more than before, within capacity,
    /// the payer's valid signature, and — completed with the provider's own signature — a spend
    /// that Bitcoin's consensus library accepts. Returns the completed closing transaction.
    pub fn check(&self, update: &ChannelUpdate, provider_key: &SecretKey) -> Result<Transaction, PaymentError> {
        if update.channel != self.params.funding {
            return Err(PaymentError::WrongChannel);
        }
        if update.paid <= self.paid {
            return Err(PaymentError::NotIncreasing { got: update.paid, have: self.paid });
        }
        if update.paid > self.params.max_payable() {
            return Err(PaymentError::OverCapacity { got: update.paid, max: self.params.max_payable() });
        }
        let tx = self.params.commitment(update.paid)?;
        let sig = Signature::from_slice(&update.signature).map_err(|_| PaymentError::BadSignature)?;
        if sig.sighash_type != EcdsaSighashType::All {
            return Err(PaymentError::BadSignature);
        }
        let msg = self.params.sighash(&tx)?;
        // libbitcoinconsensus checks both signatures of the completed spend; ours is made here over
        // the transaction we built, so a failure can only be the payer's signature (checking it
        // separately first would cost a third ECDSA verification per update).
        self.complete(tx, msg, &update.signature, provider_key).map_err(|_| PaymentError::BadSignature)
    }

    /// Whether `update` proves its sender is this channel's payer without raising the payment:
    /// the newest accepted update itself (byte for byte), or an older one carrying the payer's
    /// valid signature over the commitment for its amount (requests paid in parallel may arrive
    /// out of order). Nothing is applied.
    pub fn proves_payer(&self, update: &ChannelUpdate) -> Result<(), PaymentError> {
        if update.channel != self.params.funding {
            return Err(PaymentError::WrongChannel);
        }
        if update.paid > self.paid {
            return Err(PaymentError::Invalid("an update raising the payment must be checked in full"));
        }
        if update.paid == 0 || update.signature.is_empty() {
            return Err(PaymentError::BadSignature);
        }
        if update.paid == self.paid {
            return if update.signature == self.signature { Ok(()) } else { Err(PaymentError::BadSignature) };
        }
        self.payer_signed(update)
    }

    /// Whether `update` carries the payer's valid signature over the commitment for its amount
    /// (one ECDSA verification; nothing about what was accepted before).
    pub fn payer_signed(&self, update: &ChannelUpdate) -> Result<(), PaymentError> {
        if update.channel != self.params.funding {
            return Err(PaymentError::WrongChannel);
        }
        let tx = self.params.commitment(update.paid)?;
        let sig = Signature::from_slice(&update.signature).map_err(|_| PaymentError::BadSignature)?;
        if sig.sighash_type != EcdsaSighashType::All {
            return Err(PaymentError::BadSignature);
        }
        let msg = self.params.sighash(&tx)?;
        secp().verify_ecdsa(&msg, &sig.signature, &self.params.payer.0).map_err(|_| PaymentError::BadSignature)
    }

    /// Applies an update that [`ProviderChannel::check`] accepted; returns the satoshis it added.
    pub fn accept(&mut self, update: &ChannelUpdate) -> u64 {
        let added = update.paid.saturating_sub(self.paid);
        self.paid = update.paid;
        self.signature = update.signature.clone();
        added
    }

    /// The newest commitment, signed by both sides, ready to broadcast (`None` before any payment).
    pub fn closing_tx(&self, provider_key: &SecretKey) -> Result<Option<Transaction>, PaymentError> {
        if self.paid == 0 {
            return Ok(None);
        }
        let tx = self.params.commitment(self.paid)?;
        let msg = self.params.sighash(&tx)?;
        self.complete(tx, msg, &self.signature, provider_key).map(Some)
    }

    /// Adds the provider's signature over `msg` (the commitment's sighash) and checks the spend.
    fn complete(
        &self,
        mut tx: Transaction,
        msg: Message,
        payer_sig: &[u8],
        key: &SecretKey,
    ) -> Result<Transaction, PaymentError> {
        let mine = Signature { signature: secp().sign_ecdsa(&msg, key), sighash_type: EcdsaSighashType::All }.to_vec();
        let script = self.params.script();
        let spent = TxOut {
            value: Amount::from_sat(self.params.capacity),
            script_pubkey: ScriptBuf::new_p2wsh(&script.wscript_hash()),
        };
        // CHECKMULTISIG's extra pop, the signatures in key order, TRUE for the IF branch, the script.
        tx.input[0].witness =
            Witness::from_slice(&[Vec::new(), payer_sig.to_vec(), mine, vec![1], script.into_bytes()]);
        consensus::verify_input(&tx, 0, &spent)?;
        Ok(tx)
    }
}
