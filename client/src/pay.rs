//! Paying nodes through payment channels: a wallet key in the client's data dir, one channel per
//! node funded on chain, and on every billed request a channel update for exactly what the
//! request costs at the node's signed prices (never more: the client computes the bill itself).
//!
//! A channel's state (`channels/<peer>.toml`) is written atomically (temporary file + rename)
//! before the signature it records is sent, so a killed client never signs less than it already
//! did, and the cumulative design means a request paid but not served stays as credit: nothing
//! is paid twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{CompressedPublicKey, OutPoint, Txid};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{info, warn};

use blackbox_chain::{Chain, ChainError};
use blackbox_net::{PeerId, Request, Response, Transport};
use blackbox_payments::channel::public_key;
use blackbox_payments::wallet::{receive_script, spend};
use blackbox_payments::{ChannelParams, PayerChannel, PaymentError, Prices, Usage};
use thiserror::Error;

use crate::config::{load_toml, save_toml};
use crate::{call, ClientError, NodeRef};

/// Why paying a node failed.
#[derive(Debug, Error)]
pub enum PayError {
    /// The chain could not be asked or refused a transaction.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// A single request costs more than a whole channel holds.
    #[error("one request costs {owed} sat, more than a channel holds")]
    TooExpensive { owed: u64 },
    /// Signing or building a channel transaction failed.
    #[error("payment channel: {0}")]
    Channel(PaymentError),
    /// The wallet cannot fund a channel (no spendable coins).
    #[error("wallet: {0}")]
    Wallet(PaymentError),
    /// A channel state could not be written before a signature was sent.
    #[error("cannot record payment: {0}")]
    Record(std::io::Error),
    /// A channel record on disk does not decode.
    #[error("channel record of {peer}: {reason}")]
    BadRecord { peer: String, reason: String },
    /// The wallet key file is unusable.
    #[error("wallet key {path}: {reason}")]
    WalletKey { path: PathBuf, reason: String },
    /// The funding transaction did not confirm in time.
    #[error("channel funding did not confirm within 120 s")]
    Unconfirmed,
    /// A node refused a payment of exactly what its signed prices make a request cost.
    #[error("node {peer} asks more than its signed prices allow: {message}")]
    Overbilled { peer: PeerId, message: String },
}

const VERSION: u32 = 1;
/// A channel is not used for new payments within this many blocks of its timeout.
const RETIRE_BLOCKS: u32 = 12;

/// How the client pays.
#[derive(Clone)]
pub struct PayConfig {
    /// The chain channels are funded on.
    pub chain: Arc<dyn Chain>,
    /// The wallet key (funds channels, signs commitments and refunds).
    pub key: SecretKey,
    /// Directory of the channel records.
    pub dir: PathBuf,
    /// Satoshis locked per channel.
    pub capacity: u64,
    /// Blocks from opening to the channel's timeout.
    pub blocks: u32,
    /// Fee of commitment and refund transactions.
    pub fee: u64,
    /// Confirmations to wait for before using a new channel.
    pub min_confirmations: u32,
}

/// A channel as stored in the client's data dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRecord {
    /// Format version.
    pub version: u32,
    /// The node.
    pub peer: String,
    /// Encoded `ChannelParams` (hex).
    pub params: String,
    /// Cumulative satoshis signed over to the node.
    pub paid: u64,
    /// Byte-seconds stored (decimal), as records before receipts kept them; written as 0 now that
    /// the node's receipts (`owed`) are the books.
    pub storage_byte_secs: String,
    /// Bytes read (records before receipts; 0 now).
    pub egress_bytes: u64,
    /// Core-seconds held by jobs and charged on this channel.
    pub cpu_core_secs: u64,
    /// Job fuel charged on this channel.
    #[serde(default)]
    pub fuel: u64,
    /// The refund transaction's id, once broadcast.
    pub refunded: Option<String>,
    /// The newest signed update (encoded, hex), resent while its credit lasts.
    #[serde(default)]
    pub signature: String,
    /// Prices pinned when the channel opened (sat/GB-month, sat/GB, sat/core-hour, and since
    /// jobs sat/10^9 fuel); records without them are from before pinning, kept for refunds only.
    #[serde(default)]
    pub prices: Option<Vec<u64>>,
    /// Satoshis the node reported owed on the channel, as of its newest receipt here.
    #[serde(default)]
    pub owed: u64,
}

impl ChannelRecord {
    /// The channel parameters.
    pub fn channel_params(&self) -> Result<ChannelParams, PayError> {
        let bad = |reason: String| PayError::BadRecord { peer: self.peer.clone(), reason };
        let bytes = data_encoding::HEXLOWER.decode(self.params.as_bytes()).map_err(|_| bad("bad params hex".into()))?;
        ChannelParams::decode(&bytes).map_err(|e| bad(e.to_string()))
    }
}

/// Every channel record in `dir` (for `blackbox wallet`).
pub fn load_channels(dir: &Path) -> Vec<(PathBuf, ChannelRecord)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "toml") {
                if let Some(r) = load_toml::<ChannelRecord>(&path) {
                    out.push((path, r));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Saves a channel record atomically and durably (fsync): for new channels and refunds.
pub fn save_channel(path: &Path, r: &ChannelRecord) -> std::io::Result<()> {
    save_toml(path, r)
}

/// What this process knows of one channel: the shared record's terms and newest signature, the
/// node's owed as its receipts report it, and the charges of requests it sent but has no receipt
/// for yet.
struct Live {
    ch: PayerChannel,
    prices: Prices,
    signature: Bytes,
    owed: u64,
    inflight: u64,
    synced: bool,
    path: PathBuf,
    /// Job fuel and core-seconds charged on the channel, by the node's job reports.
    jobs: (u64, u64),
}

/// What the client knows of a node it may pay: prices, key and the signed offer they come from.
#[derive(Debug, Clone)]
pub struct Payee {
    /// Signed prices.
    pub prices: Prices,
    /// Its payment key.
    pub key: CompressedPublicKey,
    /// The encoded signed offer (sent when opening a channel, which pins its prices).
    pub offer: Bytes,
}

/// A payment attached to one request: the update to send and the charge expected for it.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Encoded channel update for the `Paid` envelope.
    pub update: Bytes,
    /// Satoshis the request costs at the channel's prices.
    pub expected: u64,
}

/// The client's channels.
pub struct Payments {
    cfg: PayConfig,
    payees: HashMap<PeerId, Payee>,
    /// One lock per node in this process; the record's file lock orders processes.
    live: std::sync::Mutex<HashMap<PeerId, Arc<Mutex<Option<Live>>>>>,
}

fn record(peer: &PeerId, l: &Live) -> ChannelRecord {
    ChannelRecord {
        version: VERSION,
        peer: peer.to_string(),
        params: data_encoding::HEXLOWER.encode(&l.ch.params.encode()),
        paid: l.ch.paid,
        storage_byte_secs: "0".into(),
        egress_bytes: 0,
        cpu_core_secs: l.jobs.1,
        fuel: l.jobs.0,
        refunded: None,
        signature: data_encoding::HEXLOWER.encode(&l.signature),
        prices: Some(vec![
            l.prices.storage_sat_per_gb_month,
            l.prices.egress_sat_per_gb,
            l.prices.cpu_sat_per_core_hour,
            l.prices.fuel_sat_per_gfuel,
        ]),
        owed: l.owed,
    }
}

/// Waits (on a blocking thread) for the lock of a channel record shared by the client's processes.
async fn lock_record(path: &Path) -> Result<blackbox_util::FileLock, ClientError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock = tokio::task::spawn_blocking(move || blackbox_util::lock(Path::new(&name)));
    Ok(lock.await.map_err(ClientError::crashed("record lock"))?.map_err(PayError::Record)?)
}

impl Payments {
    /// Payments to `payees` (nodes with verified offers).
    pub fn new(cfg: PayConfig, payees: HashMap<PeerId, Payee>) -> Self {
        Self { cfg, payees, live: Default::default() }
    }

    /// Whether this node is paid (it has a verified offer with a payment key).
    pub fn pays(&self, peer: &PeerId) -> bool {
        self.payees.contains_key(peer)
    }

    fn path(&self, peer: &PeerId) -> PathBuf {
        self.cfg.dir.join(format!("{peer}.toml"))
    }

    fn slot(&self, peer: &PeerId) -> Arc<Mutex<Option<Live>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).entry(*peer).or_default().clone()
    }

    /// The payment to attach to a request that the node may bill `delta` for, at the channel's
    /// prices; `None` for nodes that are not paid. When the credit signed so far does not cover
    /// what is owed, in flight and this request, it signs more, prepaying `ahead` too, under the
    /// record's lock (so every process of the client signs on from the newest amount) and records
    /// it durably before it is sent. `retry` counts refusals of this request so far: each adds
    /// headroom of eight such requests, for credit that concurrent processes spend meanwhile.
    /// Opens a channel first if there is none.
    pub async fn pay<T: Transport>(
        &self,
        transport: &T,
        node: &NodeRef,
        delta: Usage,
        ahead: Usage,
        retry: u32,
    ) -> Result<Option<Ticket>, ClientError> {
        let Some(payee) = self.payees.get(&node.peer).cloned() else { return Ok(None) };
        let slot = self.slot(&node.peer);
        let mut slot = slot.lock().await;
        if let Some(l) = slot.as_mut().filter(|l| l.synced && retry == 0) {
            let expected = delta.owed(&l.prices);
            if l.owed + l.inflight + expected <= l.ch.paid {
                l.inflight += expected;
                return Ok(Some(Ticket { update: l.signature.clone(), expected }));
            }
        }
        let path = self.path(&node.peer);
        let _shared = lock_record(&path).await?;
        let mut l = match self.load(&node.peer, &payee).await? {
            Some(l) => l,
            None => self.open(transport, node, &payee).await?,
        };
        if let Some(mine) = slot.as_ref() {
            l.inflight = mine.inflight;
            l.owed = l.owed.max(mine.owed);
            l.synced = mine.synced && mine.ch.params == l.ch.params;
        }
        if !l.synced && !self.sync(transport, node, &mut l).await? {
            info!(peer = %node.peer, "the node closed this channel; opening a new one");
            self.retire(&node.peer, &l);
            l = self.open(transport, node, &payee).await?;
        }
        let expected = delta.owed(&l.prices);
        let need = l.owed + l.inflight + expected;
        if need > l.ch.params.max_payable() {
            info!(peer = %node.peer, "channel exhausted; opening a new one");
            self.retire(&node.peer, &l);
            l = self.open(transport, node, &payee).await?;
            if expected > l.ch.params.max_payable() {
                return Err(PayError::TooExpensive { owed: expected }.into());
            }
        }
        let headroom = expected.saturating_mul(8 * u64::from(retry));
        let need = (l.owed + l.inflight + expected).saturating_add(headroom).min(l.ch.params.max_payable());
        if need > l.ch.paid {
            let want = (need + ahead.owed(&l.prices)).min(l.ch.params.max_payable()).max(need);
            let u = l.ch.sign(want, &self.cfg.key).map_err(PayError::Channel)?;
            l.ch.paid = want;
            l.signature = Bytes::from(u.encode());
            // Recorded before the new signature is sent.
            save_channel(&l.path, &record(&node.peer, &l)).map_err(PayError::Record)?;
        }
        l.inflight += expected;
        let ticket = Ticket { update: l.signature.clone(), expected };
        *slot = Some(l);
        Ok(Some(ticket))
    }

    /// Closes the books of one paid request: its charge is no longer in flight, and the node's
    /// owed (from the receipt, if one came) is the new floor.
    pub async fn settle(&self, peer: &PeerId, ticket: &Ticket, receipt_owed: Option<u64>) {
        let slot = self.slot(peer);
        let mut slot = slot.lock().await;
        if let Some(l) = slot.as_mut() {
            l.inflight = l.inflight.saturating_sub(ticket.expected);
            if let Some(owed) = receipt_owed {
                l.owed = l.owed.max(owed);
            }
        }
    }

    /// Adds job fuel and core-seconds a node charged (by its reports) to the channel's record,
    /// saved with the newest owed the node's receipts told.
    pub async fn note_job(&self, peer: &PeerId, fuel: u64, core_secs: u64) -> Result<(), ClientError> {
        let slot = self.slot(peer);
        let mut slot = slot.lock().await;
        let Some(l) = slot.as_mut() else { return Ok(()) };
        let _shared = lock_record(&l.path).await?;
        // Other processes may have added theirs: start from the record on disk.
        let on_disk = load_toml::<ChannelRecord>(&l.path).filter(|r| r.channel_params().ok() == Some(l.ch.params));
        let on_disk_owed = on_disk.as_ref().map_or(0, |r| r.owed);
        let (f, c) = on_disk.map_or(l.jobs, |r| (r.fuel.max(l.jobs.0), r.cpu_core_secs.max(l.jobs.1)));
        l.jobs = (f.saturating_add(fuel), c.saturating_add(core_secs));
        l.owed = l.owed.max(on_disk_owed);
        save_channel(&l.path, &record(peer, l)).map_err(PayError::Record)?;
        Ok(())
    }

    /// Keeps a channel's record under a name of its own (for `wallet` and refunds) so a new
    /// channel to the same node can take the node's file.
    fn retire(&self, peer: &PeerId, l: &Live) {
        let f = l.ch.params.funding;
        let kept = self.cfg.dir.join(format!("{peer}-{}-{}.toml", f.txid, f.vout));
        let moved = std::fs::rename(&l.path, &kept).and_then(|()| blackbox_util::fs::sync_dir(&self.cfg.dir));
        if let Err(e) = moved {
            warn!(error = %e, "cannot keep the old channel record");
        }
    }

    async fn height(&self) -> Result<u32, ClientError> {
        let chain = self.cfg.chain.clone();
        let height =
            tokio::task::spawn_blocking(move || chain.height()).await.map_err(ClientError::crashed("chain query"))?;
        Ok(height.map_err(PayError::Chain)?)
    }

    /// The shared record of the channel to `peer`, if it is usable: ours, to this key, with
    /// pinned prices, not refunded, and far enough from its timeout (else it is retired).
    async fn load(&self, peer: &PeerId, payee: &Payee) -> Result<Option<Live>, ClientError> {
        let path = self.path(peer);
        let Some(r) = load_toml::<ChannelRecord>(&path) else { return Ok(None) };
        let Ok(params) = r.channel_params() else { return Ok(None) };
        let (Some(&[storage, egress, cpu, ref fuel @ ..]), Ok(signature)) =
            (r.prices.as_deref(), data_encoding::HEXLOWER.decode(r.signature.as_bytes()))
        else {
            return Ok(None);
        };
        let fuel = fuel.first().copied().unwrap_or(0);
        if params.provider != payee.key || params.payer != public_key(&self.cfg.key) || r.refunded.is_some() {
            return Ok(None);
        }
        let prices = Prices {
            storage_sat_per_gb_month: storage,
            egress_sat_per_gb: egress,
            cpu_sat_per_core_hour: cpu,
            fuel_sat_per_gfuel: fuel,
        };
        let live = Live {
            ch: PayerChannel { params, paid: r.paid },
            prices,
            signature: Bytes::from(signature),
            owed: r.owed,
            inflight: 0,
            synced: false,
            path,
            jobs: (r.fuel, r.cpu_core_secs),
        };
        // Nodes close channels 6 blocks before their timeout: stop using one well before.
        if self.height().await? + RETIRE_BLOCKS >= params.timeout {
            info!(%peer, timeout = params.timeout, "channel near its timeout; opening a new one");
            self.retire(peer, &live);
            return Ok(None);
        }
        Ok(Some(live))
    }

    /// Learns what the node accepted and billed (a payment inside the envelope proves we are the
    /// payer); reopens the channel at the node if the node does not know it. False when the node
    /// closed the channel (it is then retired and a new one opened).
    async fn sync<T: Transport>(&self, transport: &T, node: &NodeRef, l: &mut Live) -> Result<bool, ClientError> {
        let f = l.ch.params.funding;
        let status = Request::ChannelStatus { txid: f.txid.to_byte_array(), vout: f.vout };
        let req = Request::Paid { update: l.signature.clone(), inner: Box::new(status) };
        let answer = if l.signature.is_empty() {
            Err(ClientError::Unexpected { peer: node.peer })
        } else {
            call(transport, node, req).await
        };
        match answer {
            Ok(Response::Receipt { inner, .. }) => match *inner {
                Response::Channel { paid, owed, .. } => {
                    l.owed = l.owed.max(owed);
                    if paid > l.ch.paid {
                        warn!(peer = %node.peer, paid, ours = l.ch.paid, "node holds a newer payment than our record");
                    }
                }
                other => return Err(ClientError::unexpected(node, &other)),
            },
            Ok(other) => return Err(ClientError::unexpected(node, &other)),
            Err(ClientError::Node { code: blackbox_net::ErrorCode::NotFound, .. })
            | Err(ClientError::Unexpected { .. }) => {
                self.announce(transport, node, &l.ch.params).await?;
            }
            Err(ClientError::Node { code: blackbox_net::ErrorCode::PaymentRequired, .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        l.synced = true;
        Ok(true)
    }

    /// Forgets what this process knows of the channel to `peer` (the record on disk is read
    /// again on the next payment): after the node refused the envelope itself, e.g. because it
    /// closed the channel.
    pub async fn forget(&self, peer: &PeerId) {
        *self.slot(peer).lock().await = None;
    }

    async fn announce<T: Transport>(
        &self,
        transport: &T,
        node: &NodeRef,
        p: &ChannelParams,
    ) -> Result<(), ClientError> {
        let offer = self.payees.get(&node.peer).map(|p| p.offer.clone()).unwrap_or_default();
        match call(transport, node, Request::OpenChannel { params: Bytes::from(p.encode()), offer }).await? {
            Response::Channel { .. } => Ok(()),
            other => Err(ClientError::unexpected(node, &other)),
        }
    }

    /// Funds a new channel to `node` from the wallet, waits for confirmation and opens it there.
    async fn open<T: Transport>(&self, transport: &T, node: &NodeRef, payee: &Payee) -> Result<Live, ClientError> {
        let params = self.fund(node, payee).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (chain, funding) = (self.cfg.chain.clone(), params.funding);
            let u = tokio::task::spawn_blocking(move || chain.utxo(&funding))
                .await
                .map_err(ClientError::crashed("chain query"))?
                .map_err(PayError::Chain)?;
            if u.is_some_and(|u| u.confirmations >= self.cfg.min_confirmations) {
                break;
            }
            if Instant::now() > deadline {
                return Err(PayError::Unconfirmed.into());
            }
            // Confirmations only change with a block: wait for the next one, not a poll loop.
            let chain = self.cfg.chain.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::task::spawn_blocking(move || chain.height().and_then(|h| chain.wait_for_block(h, left)))
                .await
                .map_err(ClientError::crashed("chain query"))?
                .map_err(PayError::Chain)?;
        }
        self.announce(transport, node, &params).await?;
        info!(peer = %node.peer, funding = %params.funding, capacity = params.capacity, "payment channel opened");
        Ok(Live {
            ch: PayerChannel::new(params).map_err(PayError::Channel)?,
            prices: payee.prices,
            signature: Bytes::new(),
            owed: 0,
            inflight: 0,
            synced: true,
            path: self.path(&node.peer),
            jobs: (0, 0),
        })
    }

    /// Builds, records (before broadcast: the refund path needs the parameters) and broadcasts
    /// the funding transaction, one funding at a time over all of the client's processes.
    async fn fund(&self, node: &NodeRef, payee: &Payee) -> Result<ChannelParams, ClientError> {
        let (chain, key) = (self.cfg.chain.clone(), self.cfg.key);
        let (capacity, blocks, fee) = (self.cfg.capacity, self.cfg.blocks, self.cfg.fee);
        let (provider, prices, path, peer) = (payee.key, payee.prices, self.path(&node.peer), node.peer);
        let wallet_lock = self.cfg.dir.join("wallet.lock");
        let spent_file = self.cfg.dir.join("wallet-spent.toml");
        tokio::task::spawn_blocking(move || -> Result<ChannelParams, ClientError> {
            let _one_funding_at_a_time = blackbox_util::lock(&wallet_lock).map_err(PayError::Record)?;
            let height = chain.height().map_err(PayError::Chain)?;
            let mut p = ChannelParams {
                funding: OutPoint::null(),
                capacity,
                payer: public_key(&key),
                provider,
                timeout: height + blocks,
                fee,
            };
            let mut spent = SpentCoins::load(&spent_file);
            // Change of an earlier funding is spendable once confirmed: wait a few blocks for it.
            let deadline = Instant::now() + Duration::from_secs(60);
            let tx = loop {
                let coins: Vec<_> = chain.unspent(&receive_script(&key)).map_err(PayError::Chain)?;
                spent.forget_confirmed(&coins);
                let coins: Vec<_> =
                    coins.into_iter().filter(|u| !spent.contains(&u.outpoint)).map(|u| (u.outpoint, u.txout)).collect();
                match spend(&coins, &key, vec![p.funding_output()]) {
                    Ok(tx) => break tx,
                    Err(e) if Instant::now() > deadline => return Err(PayError::Wallet(e).into()),
                    Err(_) => {
                        let h = chain.height().map_err(PayError::Chain)?;
                        chain
                            .wait_for_block(h, deadline.saturating_duration_since(Instant::now()))
                            .map_err(PayError::Chain)?;
                    }
                }
            };
            p.funding = OutPoint { txid: tx.compute_txid(), vout: 0 };
            let l = Live {
                ch: PayerChannel::new(p).map_err(PayError::Channel)?,
                prices,
                signature: Bytes::new(),
                owed: 0,
                inflight: 0,
                synced: true,
                path: path.clone(),
                jobs: (0, 0),
            };
            save_channel(&path, &record(&peer, &l)).map_err(PayError::Record)?;
            spent.add(tx.input.iter().map(|i| i.previous_output));
            spent.save(&spent_file).map_err(PayError::Record)?;
            chain.broadcast(&tx).map_err(PayError::Chain)?;
            Ok(p)
        })
        .await
        .map_err(ClientError::crashed("channel funding"))?
    }
}

/// Wallet coins spent by a funding transaction that the chain may not show as spent yet (a
/// `scantxoutset` sees only confirmed state), shared by the client's processes.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpentCoins {
    version: u32,
    coins: Vec<String>,
}

impl SpentCoins {
    fn load(path: &Path) -> Self {
        load_toml(path).unwrap_or(Self { version: VERSION, coins: Vec::new() })
    }

    fn contains(&self, o: &OutPoint) -> bool {
        self.coins.contains(&o.to_string())
    }

    /// Drops coins the chain no longer lists (their spend confirmed).
    fn forget_confirmed(&mut self, unspent: &[blackbox_chain::Unspent]) {
        self.coins.retain(|c| unspent.iter().any(|u| u.outpoint.to_string() == *c));
    }

    fn add(&mut self, spent: impl Iterator<Item = OutPoint>) {
        self.coins.extend(spent.map(|o| o.to_string()));
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        save_toml(path, self)
    }
}

/// Loads the wallet key from `dir/wallet.key`, creating it (mode 0600) on first use.
pub fn load_or_create_wallet_key(dir: &Path) -> Result<SecretKey, PayError> {
    let path = dir.join("wallet.key");
    let fresh = loop {
        let mut b = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        if let Ok(k) = SecretKey::from_slice(&b) {
            break k;
        }
    };
    let bad = |reason: String| PayError::WalletKey { path: path.clone(), reason };
    let bytes = blackbox_util::load_or_create_secret(&path, || fresh.secret_bytes().to_vec())
        .map_err(|e| bad(e.to_string()))?;
    SecretKey::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

/// Refunds every channel in `dir` whose timeout has passed and whose funding output is unspent
/// (the node never closed it); returns the refund transaction ids.
pub fn refund_expired(chain: &dyn Chain, key: &SecretKey, dir: &Path) -> Result<Vec<(String, Txid)>, PayError> {
    let height = chain.height()?;
    let mut out = Vec::new();
    for (path, mut r) in load_channels(dir) {
        if r.refunded.is_some() {
            continue;
        }
        let p = r.channel_params()?;
        if p.payer != public_key(key) || height < p.timeout {
            continue;
        }
        if chain.utxo(&p.funding)?.is_none() {
            continue; // closed by the node, or never confirmed
        }
        let tx = PayerChannel { params: p, paid: r.paid }.refund_tx(key).map_err(PayError::Channel)?;
        match chain.broadcast(&tx) {
            Ok(txid) => {
                r.refunded = Some(txid.to_string());
                save_channel(&path, &r).map_err(PayError::Record)?;
                out.push((r.peer.clone(), txid));
            }
            Err(e) => warn!(peer = %r.peer, error = %e, "refund refused"),
        }
    }
    Ok(out)
}
