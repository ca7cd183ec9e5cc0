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
    /// What the client has asked of the node on this channel: byte-seconds stored (decimal).
    pub storage_byte_secs: String,
    /// Bytes read.
    pub egress_bytes: u64,
    /// Core-seconds of CPU leased.
    pub cpu_core_secs: u64,
    /// The refund transaction's id, once broadcast.
    pub refunded: Option<String>,
}

impl ChannelRecord {
    /// The channel parameters.
    pub fn channel_params(&self) -> Result<ChannelParams, PayError> {
        let bad = |reason: String| PayError::BadRecord { peer: self.peer.clone(), reason };
        let bytes = data_encoding::HEXLOWER.decode(self.params.as_bytes()).map_err(|_| bad("bad params hex".into()))?;
        ChannelParams::decode(&bytes).map_err(|e| bad(e.to_string()))
    }

    /// The usage recorded.
    pub fn usage(&self) -> Usage {
        Usage {
            storage_byte_secs: self.storage_byte_secs.parse().unwrap_or(0),
            egress_bytes: self.egress_bytes,
            cpu_core_secs: self.cpu_core_secs,
        }
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

struct Live {
    ch: PayerChannel,
    usage: Usage,
    synced: bool,
    path: PathBuf,
    /// The newest update signed in this process (re-sent while prepaid credit lasts).
    last: Option<Bytes>,
}

/// What the client knows of a node it may pay: prices and key from its verified offer.
#[derive(Debug, Clone, Copy)]
pub struct Payee {
    /// Signed prices.
    pub prices: Prices,
    /// Its payment key.
    pub key: CompressedPublicKey,
}

/// The client's channels.
pub struct Payments {
    cfg: PayConfig,
    payees: HashMap<PeerId, Payee>,
    /// One lock per node, so channels to different nodes open and pay in parallel.
    live: std::sync::Mutex<HashMap<PeerId, Arc<Mutex<Option<Live>>>>>,
    /// Held while choosing coins and broadcasting a funding transaction.
    wallet: Arc<std::sync::Mutex<()>>,
}

fn record(peer: &PeerId, l: &Live) -> ChannelRecord {
    ChannelRecord {
        version: VERSION,
        peer: peer.to_string(),
        params: data_encoding::HEXLOWER.encode(&l.ch.params.encode()),
        paid: l.ch.paid,
        storage_byte_secs: l.usage.storage_byte_secs.to_string(),
        egress_bytes: l.usage.egress_bytes,
        cpu_core_secs: l.usage.cpu_core_secs,
        refunded: None,
    }
}

impl Payments {
    /// Payments to `payees` (nodes with verified offers).
    pub fn new(cfg: PayConfig, payees: HashMap<PeerId, Payee>) -> Self {
        Self { cfg, payees, live: Default::default(), wallet: Default::default() }
    }

    /// Whether this node is paid (it has a verified offer with a payment key).
    pub fn pays(&self, peer: &PeerId) -> bool {
        self.payees.contains_key(peer)
    }

    fn path(&self, peer: &PeerId) -> PathBuf {
        self.cfg.dir.join(format!("{peer}.toml"))
    }

    /// The channel update to attach to a request that adds `delta` to what the node may bill;
    /// `None` for nodes that are not paid. When a new signature is needed it also prepays
    /// `ahead` (requests the caller is about to make), so a stream of small requests needs few
    /// signatures; what is prepaid and never asked for stays as credit on the channel. Opens a
    /// channel first if there is none (or it is spent).
    pub async fn pay<T: Transport>(
        &self,
        transport: &T,
        node: &NodeRef,
        delta: Usage,
        ahead: Usage,
    ) -> Result<Option<Bytes>, ClientError> {
        let Some(payee) = self.payees.get(&node.peer).copied() else { return Ok(None) };
        let slot = self.live.lock().unwrap_or_else(|p| p.into_inner()).entry(node.peer).or_default().clone();
        let mut slot = slot.lock().await;
        if slot.is_none() {
            let loaded = match self.load(&node.peer, &payee) {
                // Nodes close channels 6 blocks before their timeout: stop using one well before.
                Some(l) if self.height().await? + RETIRE_BLOCKS < l.ch.params.timeout => Some(l),
                Some(l) => {
                    info!(peer = %node.peer, timeout = l.ch.params.timeout, "channel near its timeout; opening a new one");
                    self.retire(&node.peer, &l);
                    None
                }
                None => None,
            };
            *slot = Some(match loaded {
                Some(l) => l,
                None => self.open(transport, node, &payee).await?,
            });
        }
        let Some(l) = slot.as_mut() else { unreachable!("the slot was filled above") };
        if !l.synced {
            self.sync(transport, node, l).await?;
        }
        let mut usage = l.usage.plus(delta);
        let mut owed = usage.owed(&payee.prices);
        if owed > l.ch.params.max_payable() {
            info!(peer = %node.peer, "channel exhausted; opening a new one");
            self.retire(&node.peer, l);
            *l = self.open(transport, node, &payee).await?;
            usage = delta;
            owed = usage.owed(&payee.prices);
            if owed > l.ch.params.max_payable() {
                return Err(PayError::TooExpensive { owed }.into());
            }
        }
        let update = match &l.last {
            // Covered by credit already signed over: resend that update (it binds this
            // connection to the channel); nothing new to record.
            Some(last) if owed <= l.ch.paid => {
                l.usage = usage;
                return Ok(Some(last.clone()));
            }
            _ => {
                let want = usage.plus(ahead).owed(&payee.prices).min(l.ch.params.max_payable()).max(owed);
                let paid = want.max(l.ch.paid);
                let u = l.ch.sign(paid, &self.cfg.key).map_err(PayError::Channel)?;
                l.ch.paid = paid;
                Bytes::from(u.encode())
            }
        };
        l.usage = usage;
        // Recorded before the new signature is sent.
        save_channel(&l.path, &record(&node.peer, l)).map_err(PayError::Record)?;
        l.last = Some(update.clone());
        Ok(Some(update))
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

    fn load(&self, peer: &PeerId, payee: &Payee) -> Option<Live> {
        let path = self.path(peer);
        let r: ChannelRecord = load_toml(&path)?;
        let params = r.channel_params().ok()?;
        if params.provider != payee.key || params.payer != public_key(&self.cfg.key) || r.refunded.is_some() {
            return None;
        }
        Some(Live { ch: PayerChannel { params, paid: r.paid }, usage: r.usage(), synced: false, path, last: None })
    }

    /// Learns what the node accepted (a restart may have lost nothing on our side, but the node
    /// may have closed the channel); reopens it at the node if the node does not know it.
    async fn sync<T: Transport>(&self, transport: &T, node: &NodeRef, l: &mut Live) -> Result<(), ClientError> {
        let f = l.ch.params.funding;
        let req = Request::ChannelStatus { txid: f.txid.to_byte_array(), vout: f.vout };
        match call(transport, node, req).await {
            Ok(Response::Channel { paid, stored, served, cpu, .. }) => {
                // Our record is written when we sign, so the node may have billed requests made
                // after it; its usage is accepted when what we already paid covers it (a node
                // can at most consume credit we prepaid).
                l.ch.paid = l.ch.paid.max(paid);
                let theirs = Usage { storage_byte_secs: stored, egress_bytes: served, cpu_core_secs: cpu };
                let merged = Usage {
                    storage_byte_secs: l.usage.storage_byte_secs.max(stored),
                    egress_bytes: l.usage.egress_bytes.max(served),
                    cpu_core_secs: l.usage.cpu_core_secs.max(cpu),
                };
                if let Some(payee) = self.payees.get(&node.peer) {
                    if theirs.owed(&payee.prices) <= l.ch.paid {
                        l.usage = merged;
                    }
                }
            }
            Err(ClientError::Node { code: blackbox_net::ErrorCode::NotFound, .. }) => {
                self.announce(transport, node, &l.ch.params).await?;
            }
            Ok(other) => return Err(ClientError::unexpected(node, &other)),
            Err(e) => return Err(e),
        }
        l.synced = true;
        Ok(())
    }

    async fn announce<T: Transport>(
        &self,
        transport: &T,
        node: &NodeRef,
        p: &ChannelParams,
    ) -> Result<(), ClientError> {
        match call(transport, node, Request::OpenChannel { params: Bytes::from(p.encode()) }).await? {
            Response::Channel { .. } => Ok(()),
            other => Err(ClientError::unexpected(node, &other)),
        }
    }

    /// Funds a new channel to `node` from the wallet, waits for confirmation and opens it there.
    async fn open<T: Transport>(&self, transport: &T, node: &NodeRef, payee: &Payee) -> Result<Live, ClientError> {
        let (chain, key) = (self.cfg.chain.clone(), self.cfg.key);
        let (capacity, blocks, fee) = (self.cfg.capacity, self.cfg.blocks, self.cfg.fee);
        let provider = payee.key;
        let path = self.path(&node.peer);
        let peer = node.peer;
        let wallet = self.wallet.clone();
        let params = tokio::task::spawn_blocking(move || -> Result<ChannelParams, ClientError> {
            let _one_funding_at_a_time = wallet.lock().unwrap_or_else(|p| p.into_inner());
            let chain_err = PayError::Chain;
            let height = chain.height().map_err(chain_err)?;
            let mut p = ChannelParams {
                funding: OutPoint::null(),
                capacity,
                payer: public_key(&key),
                provider,
                timeout: height + blocks,
                fee,
            };
            // Change of an earlier funding is spendable once confirmed: wait a few blocks for it.
            let deadline = Instant::now() + Duration::from_secs(60);
            let tx = loop {
                let coins: Vec<_> = chain
                    .unspent(&receive_script(&key))
                    .map_err(chain_err)?
                    .into_iter()
                    .map(|u| (u.outpoint, u.txout))
                    .collect();
                match spend(&coins, &key, vec![p.funding_output()]) {
                    Ok(tx) => break tx,
                    Err(e) if Instant::now() > deadline => return Err(PayError::Wallet(e).into()),
                    Err(_) => std::thread::sleep(Duration::from_millis(250)),
                }
            };
            p.funding = OutPoint { txid: tx.compute_txid(), vout: 0 };
            // Recorded before broadcast: the refund path needs these parameters.
            let l = Live {
                ch: PayerChannel::new(p).map_err(PayError::Channel)?,
                usage: Usage::default(),
                synced: true,
                path: path.clone(),
                last: None,
            };
            save_channel(&path, &record(&peer, &l)).map_err(PayError::Record)?;
            chain.broadcast(&tx).map_err(chain_err)?;
            Ok(p)
        })
        .await
        .map_err(ClientError::crashed("channel funding"))??;
        // Wait for the funding output to confirm.
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
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.announce(transport, node, &params).await?;
        info!(peer = %node.peer, funding = %params.funding, capacity = params.capacity, "payment channel opened");
        Ok(Live {
            ch: PayerChannel::new(params).map_err(PayError::Channel)?,
            usage: Usage::default(),
            synced: true,
            path: self.path(&node.peer),
            last: None,
        })
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
