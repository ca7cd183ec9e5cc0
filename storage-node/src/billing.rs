//! Payment channels at the node: opening (funding output checked on chain), accepting updates
//! (signature and consensus checks in `blackbox_payments`), billing requests at the node's signed
//! prices, and closing with the newest commitment before the timeout.
//!
//! State per channel lives in `channels/<funding txid>-<vout>.bin` (versioned), replaced
//! atomically (write + rename) before a payment it records is relied on, and usage billed since
//! then is appended to `<…>.log` (fixed 40-byte snapshots with a checksum) before the request is
//! served: a killed node restarts with every payment it accepted and every byte it billed. A full
//! rewrite first empties the log, so log records are always newer than the record beside them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{OutPoint, Transaction, Txid};
use tracing::{info, warn};

use blackbox_chain::{Chain, ChainError};
use blackbox_net::{ErrorCode, PeerId, Response};
use blackbox_payments::channel::{public_key, PARAMS_LEN};
use blackbox_payments::{ChannelParams, ChannelUpdate, PaymentError, Prices, ProviderChannel, Usage};
use thiserror::Error;

const RECORD_VERSION: u8 = 1;

/// Most peers remembered as paying through a channel.
const MAX_SESSIONS: usize = 10_000;

/// Why a payment, a channel or a charge was refused.
#[derive(Debug, Error)]
pub enum BillingError {
    /// Channel parameters or an update that do not decode or do not check.
    #[error("{0}")]
    Malformed(PaymentError),
    /// The channel pays another key than this node's.
    #[error("channel does not pay this node's key")]
    NotOurKey,
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
            Self::Closed | Self::NoChannel { .. } | Self::Unpaid { .. } => ErrorCode::PaymentRequired,
            _ => ErrorCode::Invalid,
        }
    }
}

/// A stored channel record that does not decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// Written by another version of blackbox.
    #[error("unknown channel record version")]
    Version,
    /// Truncated, extended or damaged.
    #[error("corrupt channel record")]
    Corrupt,
    /// The channel parameters inside do not decode.
    #[error("corrupt channel record: {0}")]
    Params(PaymentError),
}

/// The channel records of a node cannot be read.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The directory or a file could not be read.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A record does not decode.
    #[error("{path}: {source}")]
    Record { path: PathBuf, source: RecordError },
}

/// How the node takes payments.
#[derive(Clone)]
pub struct BillingConfig {
    /// Prices signed into the node's offer.
    pub prices: Prices,
    /// The node's payment key (its public half is in the offer).
    pub key: SecretKey,
    /// The chain funding outputs are checked on and closes are broadcast to.
    pub chain: Arc<dyn Chain>,
    /// Confirmations a funding output needs before the channel is used.
    pub min_confirmations: u32,
    /// A channel must stay open at least this many blocks from its opening.
    pub min_timeout_blocks: u32,
    /// Close this many blocks before the timeout (the payer's refund becomes valid at it).
    pub close_margin_blocks: u32,
    /// Directory of the channel records.
    pub dir: PathBuf,
}

/// One channel and what was billed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The provider's side of the channel.
    pub channel: ProviderChannel,
    /// Everything billed so far.
    pub usage: Usage,
    /// The closing transaction, once broadcast.
    pub closed: Option<Txid>,
}

impl Account {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        out.extend_from_slice(&self.channel.params.encode());
        out.extend_from_slice(&self.channel.paid.to_le_bytes());
        out.push(self.channel.signature.len() as u8);
        out.extend_from_slice(&self.channel.signature);
        out.extend_from_slice(&self.usage.storage_byte_secs.to_le_bytes());
        out.extend_from_slice(&self.usage.egress_bytes.to_le_bytes());
        out.extend_from_slice(&self.usage.cpu_core_secs.to_le_bytes());
        match self.closed {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(t.as_byte_array());
            }
            None => out.push(0),
        }
        out
    }

    /// Strict decoder of [`Account::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, RecordError> {
        let bad = || RecordError::Corrupt;
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], RecordError> {
            let s = b.get(at..at + n).ok_or_else(bad)?;
            at += n;
            Ok(s)
        };
        if take(1)?[0] != RECORD_VERSION {
            return Err(RecordError::Version);
        }
        let params = ChannelParams::decode(take(PARAMS_LEN)?).map_err(RecordError::Params)?;
        let paid = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
        let sig_len = take(1)?[0] as usize;
        let signature = take(sig_len)?.to_vec();
        let storage_byte_secs = u128::from_le_bytes(take(16)?.try_into().map_err(|_| bad())?);
        let egress_bytes = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
        let cpu_core_secs = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
        let closed = match take(1)?[0] {
            0 => None,
            1 => Some(Txid::from_byte_array(take(32)?.try_into().map_err(|_| bad())?)),
            _ => return Err(bad()),
        };
        if at != b.len() {
            return Err(bad());
        }
        let channel = ProviderChannel { params, paid, signature };
        Ok(Self { channel, usage: Usage { storage_byte_secs, egress_bytes, cpu_core_secs }, closed })
    }
}

fn channel_state(a: &Account, prices: &Prices) -> Response {
    Response::Channel {
        paid: a.channel.paid,
        owed: a.usage.owed(prices),
        stored: a.usage.storage_byte_secs,
        served: a.usage.egress_bytes,
        cpu: a.usage.cpu_core_secs,
    }
}

/// Every channel record in `dir` (for `blackbox node earnings`).
pub fn load_accounts(dir: &Path) -> Result<Vec<Account>, LoadError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(LoadError::Io { path: dir.into(), source }),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "bin") {
            let bytes = std::fs::read(&path).map_err(|source| LoadError::Io { path: path.clone(), source })?;
            let mut a = Account::decode(&bytes).map_err(|source| LoadError::Record { path: path.clone(), source })?;
            if let Some(u) = std::fs::read(path.with_extension("log")).ok().and_then(|l| last_usage(&l)) {
                a.usage = u;
            }
            out.push(a);
        }
    }
    out.sort_by_key(|a| a.channel.params.funding);
    Ok(out)
}

fn file_name(op: &OutPoint) -> String {
    format!("{}-{}.bin", op.txid, op.vout)
}

/// Bytes of one usage snapshot in a channel's log.
const LOG_RECORD: usize = 40;

fn usage_record(u: &Usage) -> [u8; LOG_RECORD] {
    let mut r = [0u8; LOG_RECORD];
    r[..16].copy_from_slice(&u.storage_byte_secs.to_le_bytes());
    r[16..24].copy_from_slice(&u.egress_bytes.to_le_bytes());
    r[24..32].copy_from_slice(&u.cpu_core_secs.to_le_bytes());
    let check = blake3::hash(&r[..32]);
    r[32..].copy_from_slice(&check.as_bytes()[..8]);
    r
}

/// The newest intact snapshot of a log (a torn or damaged tail is skipped).
fn last_usage(log: &[u8]) -> Option<Usage> {
    log.chunks_exact(LOG_RECORD).rev().find_map(|r| {
        (blake3::hash(&r[..32]).as_bytes()[..8] == r[32..]).then(|| Usage {
            storage_byte_secs: u128::from_le_bytes(r[..16].try_into().unwrap_or([0; 16])),
            egress_bytes: u64::from_le_bytes(r[16..24].try_into().unwrap_or([0; 8])),
            cpu_core_secs: u64::from_le_bytes(r[24..32].try_into().unwrap_or([0; 8])),
        })
    })
}

/// The node's payment channels.
pub struct Billing {
    cfg: BillingConfig,
    accounts: Mutex<HashMap<OutPoint, Account>>,
    sessions: Mutex<HashMap<PeerId, OutPoint>>,
    /// Open usage logs, appended to on every charge.
    logs: Mutex<HashMap<OutPoint, std::fs::File>>,
}

type Reply = Result<Response, BillingError>;

impl Billing {
    /// Loads the channel records from `cfg.dir`.
    pub fn open(cfg: BillingConfig) -> Result<Self, LoadError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|source| LoadError::Io { path: cfg.dir.clone(), source })?;
        let accounts = load_accounts(&cfg.dir)?.into_iter().map(|a| (a.channel.params.funding, a)).collect();
        let billing = Self { cfg, accounts: Mutex::new(accounts), sessions: Mutex::default(), logs: Mutex::default() };
        // Fold each usage log into its record, so new snapshots never follow a torn one.
        let all: Vec<Account> = billing.accounts().values().cloned().collect();
        for a in &all {
            if let Err(BillingError::Record(source)) = billing.persist(a) {
                return Err(LoadError::Io { path: billing.cfg.dir.clone(), source });
            }
        }
        Ok(billing)
    }

    fn accounts(&self) -> MutexGuard<'_, HashMap<OutPoint, Account>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bind(&self, peer: &PeerId, channel: OutPoint) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        // Every billed request carries an update that binds its sender again, so forgetting all
        // bindings is harmless; it bounds the memory that many short-lived clients can take.
        if sessions.len() >= MAX_SESSIONS && !sessions.contains_key(peer) {
            sessions.clear();
        }
        sessions.insert(*peer, channel);
    }

    /// Rewrites a channel's record (emptying its usage log first).
    fn persist(&self, a: &Account) -> Result<(), BillingError> {
        let funding = a.channel.params.funding;
        let path = self.cfg.dir.join(file_name(&funding));
        self.with_log(&funding, |log| log.set_len(0)).map_err(BillingError::Record)?;
        blackbox_util::write_atomic(&path, &a.encode()).map_err(BillingError::Record)
    }

    /// Appends a usage snapshot to a channel's log.
    fn log_usage(&self, funding: &OutPoint, u: &Usage) -> Result<(), BillingError> {
        use std::io::Write;
        self.with_log(funding, |log| log.write_all(&usage_record(u))).map_err(BillingError::Record)
    }

    fn with_log<T>(
        &self,
        funding: &OutPoint,
        f: impl FnOnce(&mut std::fs::File) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let log = match logs.entry(*funding) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let path = self.cfg.dir.join(file_name(funding)).with_extension("log");
                v.insert(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        f(log)
    }

    /// Opens a channel the payer funded: our key, a confirmed funding output of the right script
    /// and value, and enough blocks before the timeout.
    pub fn open_channel(&self, from: &PeerId, params: &[u8]) -> Reply {
        let p = ChannelParams::decode(params).map_err(BillingError::Malformed)?;
        p.check().map_err(BillingError::Malformed)?;
        if p.provider != public_key(&self.cfg.key) {
            return Err(BillingError::NotOurKey);
        }
        if let Some(a) = self.accounts().get(&p.funding) {
            if a.channel.params != p {
                return Err(BillingError::FundingTaken);
            }
            self.bind(from, p.funding);
            return Ok(channel_state(a, &self.cfg.prices));
        }
        let height = self.cfg.chain.height()?;
        if p.timeout < height.saturating_add(self.cfg.min_timeout_blocks) {
            return Err(BillingError::TimeoutTooClose {
                timeout: p.timeout,
                height,
                need: self.cfg.min_timeout_blocks,
            });
        }
        let Some(utxo) = self.cfg.chain.utxo(&p.funding)? else {
            return Err(BillingError::FundingMissing);
        };
        if utxo.txout != p.funding_output() {
            return Err(BillingError::FundingMismatch);
        }
        if utxo.confirmations < self.cfg.min_confirmations {
            return Err(BillingError::Unconfirmed { have: utxo.confirmations, need: self.cfg.min_confirmations });
        }
        let channel = ProviderChannel::new(p).map_err(BillingError::Malformed)?;
        let account = Account { channel, usage: Usage::default(), closed: None };
        self.persist(&account)?;
        self.accounts().insert(p.funding, account);
        self.bind(from, p.funding);
        info!(funding = %p.funding, capacity = p.capacity, timeout = p.timeout, "payment channel opened");
        Ok(Response::Channel { paid: 0, owed: 0, stored: 0, served: 0, cpu: 0 })
    }

    /// Accepts a channel update if it raises the payment (older ones are ignored: requests paid
    /// in parallel may arrive out of order); binds the sender to the channel.
    pub fn pay(&self, from: &PeerId, update: &[u8]) -> Result<(), BillingError> {
        let u = ChannelUpdate::decode(update).map_err(BillingError::Malformed)?;
        let mut accounts = self.accounts();
        let a = accounts.get_mut(&u.channel).ok_or(BillingError::UnknownChannel)?;
        if a.closed.is_some() {
            return Err(BillingError::Closed);
        }
        if u.paid > a.channel.paid {
            a.channel.check(&u, &self.cfg.key).map_err(BillingError::Rejected)?;
            let mut next = a.clone();
            next.channel.accept(&u);
            self.persist(&next)?;
            *a = next;
        }
        drop(accounts);
        self.bind(from, u.channel);
        Ok(())
    }

    /// Bills `delta` to the sender's channel, or refuses with "payment required".
    pub fn charge(&self, from: &PeerId, delta: Usage, what: &'static str) -> Result<(), BillingError> {
        self.bill(from, delta, what, true)
    }

    /// Whether the sender's channel would cover `delta` (nothing is billed): lets the node refuse
    /// before doing the work.
    pub fn covers(&self, from: &PeerId, delta: Usage, what: &'static str) -> Result<(), BillingError> {
        self.bill(from, delta, what, false)
    }

    fn bill(&self, from: &PeerId, delta: Usage, what: &'static str, record: bool) -> Result<(), BillingError> {
        let channel = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(from).copied();
        let Some(channel) = channel else {
            return Err(BillingError::NoChannel { what });
        };
        let mut accounts = self.accounts();
        let a = accounts.get_mut(&channel).ok_or(BillingError::UnknownChannel)?;
        let usage = a.usage.plus(delta);
        let owed = usage.owed(&self.cfg.prices);
        if a.closed.is_some() || owed > a.channel.paid {
            return Err(BillingError::Unpaid { what, owed, paid: a.channel.paid });
        }
        if record {
            // Recorded before the request is served.
            self.log_usage(&channel, &usage)?;
            a.usage = usage;
        }
        Ok(())
    }

    /// Takes back a charge for work that then failed.
    pub fn uncharge(&self, from: &PeerId, delta: Usage) {
        let channel = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(from).copied();
        let mut accounts = self.accounts();
        if let Some(a) = channel.and_then(|c| accounts.get_mut(&c)) {
            let mut next = a.clone();
            next.usage = next.usage.minus(delta);
            if self.persist(&next).is_ok() {
                *a = next;
            }
        }
    }

    /// A channel's state for its payer.
    pub fn status(&self, funding: OutPoint) -> Reply {
        let accounts = self.accounts();
        let a = accounts.get(&funding).ok_or(BillingError::UnknownChannel)?;
        Ok(channel_state(a, &self.cfg.prices))
    }

    /// Broadcasts the newest commitment of every open channel whose timeout is within `margin`
    /// blocks of `height` (all open channels with `margin` = `u32::MAX`); returns the closes made.
    pub fn close_due(&self, height: u32, margin: u32) -> Vec<(OutPoint, Txid)> {
        let due: Vec<Account> = self
            .accounts()
            .values()
            .filter(|a| a.closed.is_none() && height.saturating_add(margin) >= a.channel.params.timeout)
            .cloned()
            .collect();
        let mut closed = Vec::new();
        for a in due {
            let funding = a.channel.params.funding;
            if a.channel.paid < blackbox_payments::script::DUST_LIMIT {
                // A commitment cannot pay dust: closing would give the fee what we earned. The
                // payer takes the funds back with its refund after the timeout.
                let mut next = a.clone();
                next.closed = Some(Txid::all_zeros());
                if self.persist(&next).is_ok() {
                    self.accounts().insert(funding, next);
                }
                info!(%funding, paid = a.channel.paid, "channel earned less than the dust limit; left to time out");
                continue;
            }
            let tx: Transaction = match a.channel.closing_tx(&self.cfg.key) {
                Ok(Some(tx)) => tx,
                Ok(None) => continue,
                Err(e) => {
                    warn!(%funding, error = %e, "cannot build the closing transaction");
                    continue;
                }
            };
            match self.cfg.chain.broadcast(&tx) {
                Ok(txid) => {
                    let mut next = a.clone();
                    next.closed = Some(txid);
                    if self.persist(&next).is_ok() {
                        self.accounts().insert(funding, next);
                    }
                    info!(%funding, %txid, paid = a.channel.paid, "channel closed");
                    closed.push((funding, txid));
                }
                Err(e) => warn!(%funding, error = %e, "closing transaction refused"),
            }
        }
        closed
    }

    /// The close margin of the config.
    pub fn close_margin(&self) -> u32 {
        self.cfg.close_margin_blocks
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<dyn Chain> {
        &self.cfg.chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_log_keeps_the_newest_intact_snapshot() {
        let u = |b: u64| Usage { storage_byte_secs: u128::from(b) << 70, egress_bytes: b, cpu_core_secs: 2 * b };
        let mut log = Vec::new();
        for b in 1..=3 {
            log.extend_from_slice(&usage_record(&u(b)));
        }
        assert_eq!(last_usage(&log), Some(u(3)));
        // A torn append, then a damaged record: the newest intact one wins.
        log.extend_from_slice(&usage_record(&u(4))[..17]);
        assert_eq!(last_usage(&log), Some(u(3)));
        log.truncate(3 * LOG_RECORD);
        log[2 * LOG_RECORD + 5] ^= 1;
        assert_eq!(last_usage(&log), Some(u(2)));
        assert_eq!(last_usage(&[]), None);
    }

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let k = SecretKey::from_slice(&[3; 32]).unwrap();
        let params = ChannelParams {
            funding: OutPoint { txid: Txid::from_byte_array([1; 32]), vout: 2 },
            capacity: 10_000,
            payer: public_key(&k),
            provider: public_key(&k),
            timeout: 100,
            fee: 300,
        };
        let a = Account {
            channel: ProviderChannel { params, paid: 77, signature: vec![1, 2, 3] },
            usage: Usage { storage_byte_secs: 1 << 70, egress_bytes: 5, cpu_core_secs: 6 },
            closed: Some(Txid::from_byte_array([9; 32])),
        };
        assert_eq!(Account::decode(&a.encode()), Ok(a.clone()));
        let bytes = a.encode();
        for cut in 0..bytes.len() {
            assert!(Account::decode(&bytes[..cut]).is_err());
        }
    }
}
