//! Payment channels at the node: opening (funding output checked on chain, prices pinned from the
//! node's own signed offer), proving the payer of each `Paid` envelope by its signature, billing
//! each request in satoshis at its channel's prices, and closing with the newest commitment
//! before the timeout.
//!
//! Books per channel are kept in [`record`]: the record is rewritten durably when a payment is
//! accepted, and every charge is appended (fsync'd) to the usage log before the request is served,
//! so a killed node restarts with every payment it accepted and every satoshi it billed.

mod close;
mod error;
pub mod record;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::secp256k1::SecretKey;
use bitcoin::OutPoint;
use tracing::info;

use blackbox_chain::Chain;
use blackbox_net::offer::SignedOffer;
use blackbox_net::{PeerId, Response};
use blackbox_payments::channel::public_key;
use blackbox_payments::{ChannelParams, ChannelUpdate, ProviderChannel, Usage};

pub use error::BillingError;
pub use record::{load_accounts, Account, LoadError, RecordError};
use record::{log_record, record_path};

/// How the node takes payments.
#[derive(Clone)]
pub struct BillingConfig {
    /// The node's identity: channels open only at prices of offers it signed.
    pub node: PeerId,
    /// The prices of the node's offer now (given to channel records of version 1).
    pub prices: blackbox_core::Prices,
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
    /// Least commitment fee accepted, in satoshis.
    pub min_fee_sat: u64,
    /// Directory of the channel records.
    pub dir: PathBuf,
}

/// One channel's books.
struct Books {
    account: Account,
    /// Changes made to the account in memory (charges and refunds), counted.
    changes: u64,
}

/// A channel: its books, and how many of their changes are durable in its log. The second lock is
/// held while appending and syncing, so requests of one channel that charge at once share one
/// fdatasync (group commit) instead of queueing one each behind the books lock.
struct Chan {
    books: Mutex<Books>,
    synced: Mutex<u64>,
}

impl Chan {
    fn new(account: Account) -> Arc<Self> {
        Arc::new(Self { books: Mutex::new(Books { account, changes: 0 }), synced: Mutex::new(0) })
    }
}

/// The node's payment channels.
pub struct Billing {
    cfg: BillingConfig,
    /// Every channel; each has its own lock, so payers never wait for each other.
    channels: Mutex<HashMap<OutPoint, Arc<Chan>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Billing {
    /// Loads the channel records from `cfg.dir`, folding each usage log into its record.
    pub fn open(cfg: BillingConfig) -> Result<Self, LoadError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|source| LoadError::Io { path: cfg.dir.clone(), source })?;
        let accounts = load_accounts(&cfg.dir, cfg.prices)?;
        let billing = Self { cfg, channels: Mutex::default() };
        for a in accounts {
            let ch = Chan::new(a);
            // A new generation starts with an empty log, so snapshots never follow a torn one.
            let rewritten = billing.persist(&mut lock(&ch.books));
            if let Err(BillingError::Record(source)) = rewritten {
                return Err(LoadError::Io { path: billing.cfg.dir.clone(), source });
            }
            let funding = lock(&ch.books).account.channel.params.funding;
            lock(&billing.channels).insert(funding, ch);
        }
        Ok(billing)
    }

    fn books(&self, channel: &OutPoint) -> Result<Arc<Chan>, BillingError> {
        lock(&self.channels).get(channel).cloned().ok_or(BillingError::UnknownChannel)
    }

    /// Rewrites a channel's record as a new generation, then empties its log (the record is
    /// durable first, and the old log's snapshots belong to the old generation).
    fn persist(&self, b: &mut Books) -> Result<(), BillingError> {
        b.account.generation += 1;
        let path = record_path(&self.cfg.dir, &b.account.channel.params.funding);
        blackbox_util::write_atomic(&path, &b.account.encode()).map_err(BillingError::Record)?;
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path.with_extension("log"))
            .map_err(BillingError::Record)?;
        Ok(())
    }

    /// Makes the channel's books durable up to change `upto`: appends a snapshot of the books to
    /// the channel's log and fsyncs it, unless a sync that began later already covered `upto`
    /// (the log is opened for each append, so channels hold no file descriptors).
    fn sync(&self, ch: &Chan, upto: u64) -> Result<(), BillingError> {
        let mut synced = lock(&ch.synced);
        if *synced >= upto {
            return Ok(());
        }
        let (snapshot, at, funding) = {
            let b = lock(&ch.books);
            (log_record(&b.account), b.changes, b.account.channel.params.funding)
        };
        let path = record_path(&self.cfg.dir, &funding).with_extension("log");
        let mut log = std::fs::OpenOptions::new().append(true).open(path).map_err(BillingError::Record)?;
        log.write_all(&snapshot).and_then(|()| log.sync_data()).map_err(BillingError::Record)?;
        *synced = at;
        Ok(())
    }

    /// Opens a channel the payer funded: our key, prices of an unexpired offer this node signed,
    /// a confirmed funding output of the right script and value, and enough blocks before the
    /// timeout.
    pub fn open_channel(&self, params: &[u8], offer: &[u8], now: u64) -> Result<Response, BillingError> {
        let p = ChannelParams::decode(params).map_err(BillingError::Malformed)?;
        p.check().map_err(BillingError::Malformed)?;
        if p.provider != public_key(&self.cfg.key) {
            return Err(BillingError::NotOurKey);
        }
        if p.fee < self.cfg.min_fee_sat {
            return Err(BillingError::FeeTooLow { fee: p.fee, floor: self.cfg.min_fee_sat });
        }
        let offer = SignedOffer::decode(offer).map_err(|e| BillingError::BadOffer(e.to_string()))?;
        offer.verify(&self.cfg.node, now).map_err(|e| BillingError::BadOffer(e.to_string()))?;
        if offer.offer.bitcoin_pubkey != p.provider.to_bytes() {
            return Err(BillingError::BadOffer("the offer names another payment key".into()));
        }
        // Known already: told as opened, nothing of its state (that is for its payer only).
        let opened = Response::Channel { paid: 0, owed: 0, stored: 0, served: 0, cpu: 0, fuel: 0 };
        if let Ok(ch) = self.books(&p.funding) {
            return if lock(&ch.books).account.channel.params == p {
                Ok(opened)
            } else {
                Err(BillingError::FundingTaken)
            };
        }
        self.check_funding(&p)?;
        let channel = ProviderChannel::new(p).map_err(BillingError::Malformed)?;
        let ch = Chan::new(Account::new(channel, offer.offer.prices));
        // Published and persisted under its own lock: a racing open of the same channel finds it
        // and never rewrites its record.
        let mut b = lock(&ch.books);
        {
            let mut map = lock(&self.channels);
            if map.contains_key(&p.funding) {
                return Ok(opened);
            }
            map.insert(p.funding, ch.clone());
        }
        if let Err(e) = self.persist(&mut b) {
            lock(&self.channels).remove(&p.funding);
            return Err(e);
        }
        info!(funding = %p.funding, capacity = p.capacity, timeout = p.timeout, "payment channel opened");
        Ok(opened)
    }

    fn check_funding(&self, p: &ChannelParams) -> Result<(), BillingError> {
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
        Ok(())
    }

    /// The channel whose payer signed `update`: an update raising the payment is checked in full
    /// (signature and consensus) and recorded durably; any other must prove the payer by its
    /// signature. Nothing is bound to the sender's peer id.
    pub fn payer(&self, update: &[u8]) -> Result<OutPoint, BillingError> {
        let u = ChannelUpdate::decode(update).map_err(BillingError::Malformed)?;
        let ch = self.books(&u.channel)?;
        // A raise from anyone costs a consensus run: its payer signature is checked first, outside
        // the channel's lock, so a stranger's forged raises never stall the real payer.
        let (params, held) = {
            let b = lock(&ch.books);
            (b.account.channel.params, b.account.channel.paid)
        };
        if u.paid > held {
            ProviderChannel { params, paid: 0, signature: Vec::new() }
                .payer_signed(&u)
                .map_err(BillingError::Rejected)?;
        }
        let mut b = lock(&ch.books);
        if b.account.closed.is_some() {
            return Err(BillingError::Closed);
        }
        if u.paid > b.account.channel.paid {
            b.account.channel.check(&u, &self.cfg.key).map_err(BillingError::Rejected)?;
            let before = b.account.channel.clone();
            b.account.channel.accept(&u);
            if let Err(e) = self.persist(&mut b) {
                b.account.channel = before;
                return Err(e);
            }
        } else {
            b.account.channel.proves_payer(&u).map_err(BillingError::Rejected)?;
        }
        Ok(u.channel)
    }

    /// Satoshis `delta` costs on `channel` if its payments cover it (nothing is billed).
    pub fn covers(&self, channel: &OutPoint, delta: Usage, what: &'static str) -> Result<u64, BillingError> {
        let ch = self.books(channel)?;
        let b = lock(&ch.books);
        Ok(b.account.price_of(&delta, what)?.0)
    }

    /// Bills `delta` to `channel` at its pinned prices, recorded durably before the request is
    /// served; returns the satoshis charged (the request's receipt).
    pub fn charge(&self, channel: &OutPoint, delta: Usage, what: &'static str) -> Result<u64, BillingError> {
        let ch = self.books(channel)?;
        let (cost, change) = {
            let mut b = lock(&ch.books);
            let (cost, owed) = b.account.price_of(&delta, what)?;
            if delta == Usage::default() {
                return Ok(0);
            }
            b.account.owed = owed;
            b.account.usage = b.account.usage.plus(delta);
            b.changes += 1;
            (cost, b.changes)
        };
        if let Err(e) = self.sync(&ch, change) {
            // Not recorded: not billed (the next snapshot written carries the undone charge).
            Self::undo(&ch, delta, cost);
            return Err(e);
        }
        Ok(cost)
    }

    /// Takes `cost` satoshis for `delta` off the books in memory.
    fn undo(ch: &Chan, delta: Usage, cost: u64) -> u64 {
        let mut b = lock(&ch.books);
        b.account.owed = b.account.owed.saturating_sub(cost);
        b.account.usage = b.account.usage.minus(delta);
        b.changes += 1;
        b.changes
    }

    /// Takes back a charge of `cost` satoshis for `delta` whose work then failed.
    pub fn refund(&self, channel: &OutPoint, delta: Usage, cost: u64) {
        let Ok(ch) = self.books(channel) else { return };
        let change = Self::undo(&ch, delta, cost);
        if let Err(e) = self.sync(&ch, change) {
            tracing::warn!(error = %e, "cannot record a refund");
        }
    }

    /// Satoshis owed on `channel` so far (0 if unknown).
    pub fn owed(&self, channel: &OutPoint) -> u64 {
        self.books(channel).map_or(0, |b| lock(&b.books).account.owed)
    }

    /// A channel's state, for its payer only.
    pub fn status(&self, payer_of: Option<&OutPoint>, channel: OutPoint) -> Result<Response, BillingError> {
        if payer_of != Some(&channel) {
            return Err(BillingError::NotPayer);
        }
        let ch = self.books(&channel)?;
        let b = lock(&ch.books);
        Ok(channel_state(&b.account))
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

impl Account {
    /// What `delta` costs at the channel's prices and what the channel would owe with it, if its
    /// payments cover that and it is open.
    fn price_of(&self, delta: &Usage, what: &'static str) -> Result<(u64, u64), BillingError> {
        let cost = delta.owed(&self.prices);
        let owed = self.owed.saturating_add(cost);
        if self.closed.is_some() || owed > self.channel.paid {
            return Err(BillingError::Unpaid { what, owed, paid: self.channel.paid });
        }
        Ok((cost, owed))
    }
}

fn channel_state(a: &Account) -> Response {
    Response::Channel {
        paid: a.channel.paid,
        owed: a.owed,
        stored: a.usage.storage_byte_secs,
        served: a.usage.egress_bytes,
        cpu: a.usage.cpu_core_secs,
        fuel: a.usage.fuel,
    }
}
