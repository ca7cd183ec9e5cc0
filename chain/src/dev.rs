//! The embedded devnet chain: a UTXO set and blocks on disk, every transaction validated (inputs
//! exist and are unspent, amounts, scripts through libbitcoinconsensus, lock times against the
//! height, coinbase maturity), blocks mined on demand.
//!
//! Blocks are appended to `blocks.dat` (`u32 LE length` + consensus-encoded block, fsync'd); at
//! start the UTXO set is rebuilt by replaying them, and a torn last block is cut off.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hash_types::TxMerkleNode;
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, Script, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use tracing::info;

use crate::{Chain, ChainError, Unspent};

/// Blocks before a coinbase output may be spent (as on Bitcoin).
pub const COINBASE_MATURITY: u32 = 100;
/// Reward of every devnet block, in satoshis (50 BTC).
pub const SUBSIDY: u64 = 50 * 100_000_000;
/// Largest block file accepted when replaying.
const MAX_BLOCK: usize = 32 << 20;

#[derive(Clone)]
struct Coin {
    txout: TxOut,
    height: u32,
    coinbase: bool,
}

struct State {
    height: u32,
    tip: BlockHash,
    /// The best block's timestamp.
    tip_time: u32,
    utxos: HashMap<OutPoint, Coin>,
    mempool: Vec<Transaction>,
    spent_in_mempool: HashSet<OutPoint>,
    file: File,
}

/// The devnet chain (one per devnet, shared by its processes through [`crate::RpcServer`]).
pub struct DevChain {
    state: Mutex<State>,
    /// Signalled after every new block, for `wait_for_block`.
    blocks: Condvar,
}

/// Fee a transaction must pay per virtual byte to be accepted (Bitcoin Core's default minimum
/// relay fee), so a zero-fee transaction never confirms here either.
pub const MIN_RELAY_SAT_PER_VB: u64 = 1;

/// Block time: the clock as bitcoin's 32-bit timestamps hold it.
fn now_secs() -> u32 {
    u32::try_from(blackbox_util::now_secs()).unwrap_or(u32::MAX)
}

impl DevChain {
    /// Opens (or creates) the chain stored in `dir`.
    pub fn open(dir: &Path) -> Result<Self, ChainError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ChainError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("blocks.dat");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| ChainError::Unavailable(format!("opening {}: {e}", path.display())))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| ChainError::Unavailable(e.to_string()))?;
        let mut st = State {
            height: 0,
            tip: BlockHash::all_zeros(),
            tip_time: 0,
            utxos: HashMap::new(),
            mempool: Vec::new(),
            spent_in_mempool: HashSet::new(),
            file,
        };
        let mut at = 0usize;
        let mut blocks = 0u32;
        while at + 4 <= bytes.len() {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
            if len > MAX_BLOCK || at + 4 + len > bytes.len() {
                break;
            }
            let block: Block = deserialize(&bytes[at + 4..at + 4 + len])
                .map_err(|e| ChainError::Corrupt(format!("block {}: {e}", blocks + 1)))?;
            if block.header.prev_blockhash != st.tip {
                return Err(ChainError::Corrupt(format!("block {} does not extend the chain", blocks + 1)));
            }
            blocks += 1;
            apply(&mut st, &block, blocks);
            at += 4 + len;
        }
        if at < bytes.len() {
            // A crash while appending: drop the torn tail.
            st.file.set_len(at as u64).map_err(|e| ChainError::Unavailable(e.to_string()))?;
        }
        Ok(Self { state: Mutex::new(st), blocks: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Transactions waiting for the next block.
    pub fn mempool_len(&self) -> usize {
        self.lock().mempool.len()
    }

    /// Checks `tx` against the chain as the next block would see it; returns its fee.
    fn validate(st: &State, tx: &Transaction) -> Result<u64, ChainError> {
        let reject = |m: String| Err(ChainError::Rejected(m));
        if tx.is_coinbase() {
            return reject("coinbase outside a block".into());
        }
        if tx.input.is_empty() || tx.output.is_empty() {
            return reject("no inputs or no outputs".into());
        }
        let next = st.height + 1;
        let final_by_sequence = tx.input.iter().all(|i| i.sequence == Sequence::MAX);
        let final_tx = match tx.lock_time {
            LockTime::Blocks(h) => h.to_consensus_u32() < next,
            LockTime::Seconds(t) => t.to_consensus_u32() < now_secs(),
        };
        if !(final_tx || final_by_sequence || tx.lock_time == LockTime::ZERO) {
            return reject(format!("non-final: lock time {} not reached at height {next}", tx.lock_time));
        }
        let mut seen = HashSet::new();
        let mut spent = Vec::with_capacity(tx.input.len());
        let mut value_in = 0u64;
        for input in &tx.input {
            if !seen.insert(input.previous_output) {
                return reject("duplicate input".into());
            }
            if st.spent_in_mempool.contains(&input.previous_output) {
                return reject(format!("{} is already spent by a waiting transaction", input.previous_output));
            }
            let Some(coin) = st.utxos.get(&input.previous_output) else {
                return reject(format!("input {} missing or spent", input.previous_output));
            };
            if coin.coinbase && next - coin.height < COINBASE_MATURITY {
                return reject("spends an immature coinbase".into());
            }
            value_in = value_in.saturating_add(coin.txout.value.to_sat());
            spent.push(coin.txout.clone());
        }
        let mut value_out = 0u64;
        for out in &tx.output {
            if out.value > Amount::MAX_MONEY {
                return reject("output above the money supply".into());
            }
            value_out = value_out.saturating_add(out.value.to_sat());
        }
        if value_out > value_in {
            return reject(format!("outputs {value_out} sat exceed inputs {value_in} sat"));
        }
        let fee = value_in - value_out;
        let floor = tx.vsize() as u64 * MIN_RELAY_SAT_PER_VB;
        if fee < floor {
            return reject(format!("min relay fee not met: {fee} sat < {floor} sat ({} vbytes)", tx.vsize()));
        }
        blackbox_payments::consensus::verify_tx(tx, &spent).map_err(|e| ChainError::Rejected(e.to_string()))?;
        Ok(fee)
    }

    fn mine_one(st: &mut State, script: &Script) -> Result<(), ChainError> {
        let height = st.height + 1;
        // Waiting transactions that are still valid (a lock time may still be ahead).
        let mut txs = Vec::new();
        let mut fees = 0u64;
        let waiting = std::mem::take(&mut st.mempool);
        st.spent_in_mempool.clear();
        for tx in waiting {
            match Self::validate(st, &tx) {
                Ok(fee) => {
                    fees += fee;
                    for i in &tx.input {
                        st.spent_in_mempool.insert(i.previous_output);
                    }
                    txs.push(tx);
                }
                Err(e) => info!(txid = %tx.compute_txid(), error = %e, "dropping transaction from the mempool"),
            }
        }
        st.spent_in_mempool.clear();
        let coinbase = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: Builder::new().push_int(i64::from(height)).push_int(0).into_script(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value: Amount::from_sat(SUBSIDY + fees), script_pubkey: script.to_owned() }],
        };
        let mut all = vec![coinbase];
        all.extend(txs);
        let mut block = Block {
            header: Header {
                version: BlockVersion::TWO,
                prev_blockhash: st.tip,
                merkle_root: TxMerkleNode::all_zeros(),
                time: now_secs(),
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: 0,
            },
            txdata: all,
        };
        block.header.merkle_root = block.compute_merkle_root().unwrap_or(TxMerkleNode::all_zeros());
        let bytes = serialize(&block);
        let mut record = (bytes.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&bytes);
        st.file
            .write_all(&record)
            .and_then(|()| st.file.sync_data())
            .map_err(|e| ChainError::Unavailable(e.to_string()))?;
        apply(st, &block, height);
        Ok(())
    }
}

/// Applies a (valid) block to the UTXO set.
fn apply(st: &mut State, block: &Block, height: u32) {
    for tx in &block.txdata {
        let coinbase = tx.is_coinbase();
        if !coinbase {
            for i in &tx.input {
                st.utxos.remove(&i.previous_output);
            }
        }
        let txid = tx.compute_txid();
        for (vout, out) in tx.output.iter().enumerate() {
            st.utxos.insert(OutPoint { txid, vout: vout as u32 }, Coin { txout: out.clone(), height, coinbase });
        }
    }
    // Drop waiting transactions the block confirmed or conflicts with.
    let confirmed: HashSet<Txid> = block.txdata.iter().map(Transaction::compute_txid).collect();
    st.mempool.retain(|t| !confirmed.contains(&t.compute_txid()));
    st.height = height;
    st.tip = block.block_hash();
    st.tip_time = block.header.time;
}

impl Chain for DevChain {
    fn height(&self) -> Result<u32, ChainError> {
        Ok(self.lock().height)
    }

    fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let mut st = self.lock();
        let txid = tx.compute_txid();
        if st.mempool.iter().any(|t| t.compute_txid() == txid) {
            return Ok(txid);
        }
        if (0..tx.output.len() as u32).any(|vout| st.utxos.contains_key(&OutPoint { txid, vout })) {
            return Ok(txid); // already confirmed
        }
        Self::validate(&st, tx)?;
        for i in &tx.input {
            st.spent_in_mempool.insert(i.previous_output);
        }
        st.mempool.push(tx.clone());
        Ok(txid)
    }

    fn utxo(&self, outpoint: &OutPoint) -> Result<Option<Unspent>, ChainError> {
        let st = self.lock();
        if st.spent_in_mempool.contains(outpoint) {
            return Ok(None);
        }
        if let Some(c) = st.utxos.get(outpoint) {
            return Ok(Some(Unspent {
                outpoint: *outpoint,
                txout: c.txout.clone(),
                confirmations: st.height - c.height + 1,
            }));
        }
        let waiting = st.mempool.iter().find(|t| t.compute_txid() == outpoint.txid);
        Ok(waiting.and_then(|t| t.output.get(outpoint.vout as usize)).map(|o| Unspent {
            outpoint: *outpoint,
            txout: o.clone(),
            confirmations: 0,
        }))
    }

    fn unspent(&self, script: &Script) -> Result<Vec<Unspent>, ChainError> {
        let st = self.lock();
        let mut out: Vec<Unspent> = st
            .utxos
            .iter()
            .filter(|(op, c)| c.txout.script_pubkey.as_script() == script && !st.spent_in_mempool.contains(op))
            .filter(|(_, c)| !c.coinbase || st.height + 1 - c.height >= COINBASE_MATURITY)
            .map(|(op, c)| Unspent { outpoint: *op, txout: c.txout.clone(), confirmations: st.height - c.height + 1 })
            .collect();
        out.sort_by_key(|u| (u.confirmations, u.outpoint));
        Ok(out)
    }

    fn mine(&self, blocks: u32, script: &Script) -> Result<(), ChainError> {
        let mut st = self.lock();
        for _ in 0..blocks {
            Self::mine_one(&mut st, script)?;
        }
        self.blocks.notify_all();
        Ok(())
    }

    fn tip_time(&self) -> Result<u64, ChainError> {
        Ok(u64::from(self.lock().tip_time))
    }

    fn wait_for_block(&self, above: u32, timeout: Duration) -> Result<u32, ChainError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        while st.height <= above {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.blocks.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        Ok(st.height)
    }
}

/// A script nobody holds the key to (P2WSH of a hash of text, not of a script), for blocks mined
/// only to move the chain forward; it has an address, so Bitcoin Core's `generatetoaddress` takes it.
pub fn burn_script() -> ScriptBuf {
    ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::hash(b"blackbox devnet: blocks mined to move time"))
}
