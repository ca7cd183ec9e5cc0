//! A node's channel records on disk: one `channels/<funding txid>-<vout>.bin` per channel
//! (versioned, replaced through the durable writer) and a `.log` beside it of fixed-size usage
//! snapshots, each fsync'd before the request it bills is served. Snapshots carry the generation
//! of the record they follow, so a snapshot left from before a rewrite is never applied to it.

use std::path::{Path, PathBuf};

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Txid};
use thiserror::Error;

use blackbox_core::Prices;
use blackbox_payments::channel::PARAMS_LEN;
use blackbox_payments::{ChannelParams, PaymentError, ProviderChannel, Usage};

/// Format of records written now: prices pinned per channel, satoshis owed, generation.
const RECORD_VERSION: u8 = 3;
/// Records before fuel was priced and counted.
const RECORD_V2: u8 = 2;
/// Records before prices were pinned (their channels keep the node's prices at load).
const RECORD_V1: u8 = 1;

/// One channel and what was billed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The provider's side of the channel.
    pub channel: ProviderChannel,
    /// The prices of the signed offer the channel was opened under, for its whole life.
    pub prices: Prices,
    /// Satoshis charged so far, the sum of every charge's receipt.
    pub owed: u64,
    /// What was charged for.
    pub usage: Usage,
    /// The closing transaction, once broadcast.
    pub closed: Option<Txid>,
    /// Rewrites of this record so far.
    pub generation: u64,
}

/// A stored channel record that does not decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// Written by another version of blackbox.
    #[error("unsupported channel record version {0}")]
    Version(u8),
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

struct Take<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Take<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let s = self.b.get(self.at..self.at + n).ok_or(RecordError::Corrupt)?;
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.bytes(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().map_err(|_| RecordError::Corrupt)?))
    }

    fn u128(&mut self) -> Result<u128, RecordError> {
        Ok(u128::from_le_bytes(self.bytes(16)?.try_into().map_err(|_| RecordError::Corrupt)?))
    }
}

impl Account {
    /// A channel just opened at `prices`.
    pub fn new(channel: ProviderChannel, prices: Prices) -> Self {
        Self { channel, prices, owed: 0, usage: Usage::default(), closed: None, generation: 0 }
    }

    /// Encodes the record (version 2).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        out.extend_from_slice(&self.channel.params.encode());
        out.extend_from_slice(&self.channel.paid.to_le_bytes());
        out.push(self.channel.signature.len() as u8);
        out.extend_from_slice(&self.channel.signature);
        let p = &self.prices;
        for v in
            [p.storage_sat_per_gb_month, p.egress_sat_per_gb, p.cpu_sat_per_core_hour, p.fuel_sat_per_gfuel, self.owed]
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.usage.storage_byte_secs.to_le_bytes());
        out.extend_from_slice(&self.usage.egress_bytes.to_le_bytes());
        out.extend_from_slice(&self.usage.cpu_core_secs.to_le_bytes());
        out.extend_from_slice(&self.usage.fuel.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        match self.closed {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(t.as_byte_array());
            }
            None => out.push(0),
        }
        out
    }

    /// Strict decoder of [`Account::encode`]; a version 1 record takes `v1_prices` (the node's
    /// prices when it is loaded) and owes what its usage costs at them.
    pub fn decode(b: &[u8], v1_prices: Prices) -> Result<Self, RecordError> {
        let mut t = Take { b, at: 0 };
        let version = t.u8()?;
        if ![RECORD_VERSION, RECORD_V2, RECORD_V1].contains(&version) {
            return Err(RecordError::Version(version));
        }
        let params = ChannelParams::decode(t.bytes(PARAMS_LEN)?).map_err(RecordError::Params)?;
        let paid = t.u64()?;
        let sig_len = t.u8()? as usize;
        let signature = t.bytes(sig_len)?.to_vec();
        let (prices, owed) = if version >= RECORD_V2 {
            let p = Prices {
                storage_sat_per_gb_month: t.u64()?,
                egress_sat_per_gb: t.u64()?,
                cpu_sat_per_core_hour: t.u64()?,
                fuel_sat_per_gfuel: if version == RECORD_VERSION { t.u64()? } else { 0 },
            };
            (p, Some(t.u64()?))
        } else {
            (v1_prices, None)
        };
        let mut usage =
            Usage { storage_byte_secs: t.u128()?, egress_bytes: t.u64()?, cpu_core_secs: t.u64()?, fuel: 0 };
        if version == RECORD_VERSION {
            usage.fuel = t.u64()?;
        }
        let generation = if version >= RECORD_V2 { t.u64()? } else { 0 };
        let closed = match t.u8()? {
            0 => None,
            1 => Some(Txid::from_byte_array(t.bytes(32)?.try_into().map_err(|_| RecordError::Corrupt)?)),
            _ => return Err(RecordError::Corrupt),
        };
        if t.at != b.len() {
            return Err(RecordError::Corrupt);
        }
        let channel = ProviderChannel { params, paid, signature };
        let owed = owed.unwrap_or_else(|| usage.owed(&prices));
        Ok(Self { channel, prices, owed, usage, closed, generation })
    }
}

/// Bytes of one usage snapshot in a channel's log.
pub(crate) const LOG_RECORD: usize = 64;
/// Bytes of a snapshot in the logs of version 1 and 2 records (no fuel).
const LOG_RECORD_V2: usize = 56;

/// A snapshot of the books after a charge: generation, owed, usage, checksum.
pub(crate) fn log_record(a: &Account) -> [u8; LOG_RECORD] {
    let mut r = [0u8; LOG_RECORD];
    r[..8].copy_from_slice(&a.generation.to_le_bytes());
    r[8..16].copy_from_slice(&a.owed.to_le_bytes());
    r[16..32].copy_from_slice(&a.usage.storage_byte_secs.to_le_bytes());
    r[32..40].copy_from_slice(&a.usage.egress_bytes.to_le_bytes());
    r[40..48].copy_from_slice(&a.usage.cpu_core_secs.to_le_bytes());
    r[48..56].copy_from_slice(&a.usage.fuel.to_le_bytes());
    let check = blake3::hash(&r[..56]);
    r[56..].copy_from_slice(&check.as_bytes()[..8]);
    r
}

/// Applies the newest intact snapshot of `log` written after this generation of the record
/// (a torn or damaged tail, and snapshots of an older generation, are skipped).
/// `record_version` is the version of the record the log belongs to (older ones logged no fuel).
pub(crate) fn apply_log(a: &mut Account, log: &[u8], record_version: u8) {
    let size = if record_version == RECORD_VERSION { LOG_RECORD } else { LOG_RECORD_V2 };
    let body = size - 8;
    let newest = log
        .chunks_exact(size)
        .rev()
        .find(|r| blake3::hash(&r[..body]).as_bytes()[..8] == r[body..] && r[..8] == a.generation.to_le_bytes());
    if let Some(r) = newest {
        let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or([0; 8]));
        a.owed = u64_at(8);
        a.usage = Usage {
            storage_byte_secs: u128::from_le_bytes(r[16..32].try_into().unwrap_or([0; 16])),
            egress_bytes: u64_at(32),
            cpu_core_secs: u64_at(40),
            fuel: if size == LOG_RECORD { u64_at(48) } else { 0 },
        };
    }
}

/// The record file of a channel in `dir`.
pub(crate) fn record_path(dir: &Path, op: &OutPoint) -> PathBuf {
    dir.join(format!("{}-{}.bin", op.txid, op.vout))
}

/// Every channel record in `dir` with its log applied; version 1 records take `v1_prices`.
pub fn load_accounts(dir: &Path, v1_prices: Prices) -> Result<Vec<Account>, LoadError> {
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
            let mut a = Account::decode(&bytes, v1_prices)
                .map_err(|source| LoadError::Record { path: path.clone(), source })?;
            if let Ok(log) = std::fs::read(path.with_extension("log")) {
                apply_log(&mut a, &log, bytes[0]);
            }
            out.push(a);
        }
    }
    out.sort_by_key(|a| a.channel.params.funding);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;
    use blackbox_payments::channel::public_key;

    fn account() -> Account {
        let k = SecretKey::from_slice(&[3; 32]).unwrap();
        let params = ChannelParams {
            funding: OutPoint { txid: Txid::from_byte_array([1; 32]), vout: 2 },
            capacity: 10_000,
            payer: public_key(&k),
            provider: public_key(&k),
            timeout: 100,
            fee: 300,
        };
        let prices = Prices {
            storage_sat_per_gb_month: 1,
            egress_sat_per_gb: 2,
            cpu_sat_per_core_hour: 3,
            fuel_sat_per_gfuel: 4,
        };
        let mut a = Account::new(ProviderChannel { params, paid: 77, signature: vec![1, 2, 3] }, prices);
        a.owed = 70;
        a.usage = Usage { storage_byte_secs: 1 << 70, egress_bytes: 5, cpu_core_secs: 6, fuel: 8 };
        a.closed = Some(Txid::from_byte_array([9; 32]));
        a.generation = 4;
        a
    }

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let a = account();
        assert_eq!(Account::decode(&a.encode(), Prices::default()), Ok(a.clone()));
        let bytes = a.encode();
        for cut in 0..bytes.len() {
            assert!(Account::decode(&bytes[..cut], Prices::default()).is_err());
        }
        let mut future = bytes.clone();
        future[0] = 4;
        assert_eq!(Account::decode(&future, Prices::default()), Err(RecordError::Version(4)));
    }

    #[test]
    fn log_applies_only_its_generations_newest_intact_snapshot() {
        let mut a = account();
        let mut log = Vec::new();
        for owed in [71, 72, 73] {
            a.owed = owed;
            log.extend_from_slice(&log_record(&a));
        }
        let mut b = account();
        apply_log(&mut b, &log, RECORD_VERSION);
        assert_eq!(b.owed, 73);
        // A torn append, then a damaged record: the newest intact one wins.
        log.extend_from_slice(&log_record(&a)[..17]);
        log.truncate(3 * LOG_RECORD);
        log[2 * LOG_RECORD + 9] ^= 1;
        let mut b = account();
        apply_log(&mut b, &log, RECORD_VERSION);
        assert_eq!(b.owed, 72);
        // Snapshots of an older generation never override a newer record.
        let mut newer = account();
        newer.generation = 5;
        apply_log(&mut newer, &log, RECORD_VERSION);
        assert_eq!(newer.owed, 70);
    }
}
