//! A single-key P2WPKH wallet's transaction building (pure): spend coins to outputs, change back.

use bitcoin::absolute::LockTime;
use bitcoin::ecdsa::Signature;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use crate::channel::{public_key, secp};
use crate::script::{p2wpkh, DUST_LIMIT};
use crate::{consensus, PaymentError};

/// Fee rate used for wallet and channel transactions on the devnet, in sat per virtual byte.
pub const FEE_RATE: u64 = 2;

/// The wallet's receiving script for `key`.
pub fn receive_script(key: &SecretKey) -> ScriptBuf {
    p2wpkh(&public_key(key))
}

/// Spends `coins` (all paying `key`'s P2WPKH) to `outputs`, returning change above dust to the
/// wallet; coins are taken in order until outputs and fee are covered. Checked with the consensus
/// library before it is returned.
pub fn spend(coins: &[(OutPoint, TxOut)], key: &SecretKey, outputs: Vec<TxOut>) -> Result<Transaction, PaymentError> {
    let want: u64 = outputs.iter().map(|o| o.value.to_sat()).sum();
    let mine = receive_script(key);
    let mut picked = Vec::new();
    let mut have = 0u64;
    for (op, out) in coins {
        if out.script_pubkey != mine {
            continue;
        }
        picked.push((*op, out.clone()));
        have += out.value.to_sat();
        let fee = fee_for(picked.len(), outputs.len() + 1);
        if have >= want + fee {
            break;
        }
    }
    let fee = fee_for(picked.len(), outputs.len() + 1);
    if have < want + fee {
        return Err(PaymentError::Invalid("not enough funds in the wallet"));
    }
    let mut output = outputs;
    let change = have - want - fee;
    if change >= DUST_LIMIT {
        output.push(TxOut { value: Amount::from_sat(change), script_pubkey: mine.clone() });
    }
    sign(picked, key, output)
}

/// Fee for `inputs` P2WPKH inputs and `outputs` outputs at [`FEE_RATE`].
fn fee_for(inputs: usize, outputs: usize) -> u64 {
    // ~68 vbytes per input, ~31 per output, ~11 overhead.
    FEE_RATE * (11 + 68 * inputs as u64 + 31 * outputs as u64)
}

/// Spends every coin of `coins` paying `key` to one output `to`, less the fee: a sweep.
pub fn sweep(coins: &[(OutPoint, TxOut)], key: &SecretKey, to: ScriptBuf) -> Result<Transaction, PaymentError> {
    let mine = receive_script(key);
    let picked: Vec<(OutPoint, TxOut)> = coins.iter().filter(|(_, o)| o.script_pubkey == mine).cloned().collect();
    let have: u64 = picked.iter().map(|(_, o)| o.value.to_sat()).sum();
    let fee = fee_for(picked.len(), 1);
    if picked.is_empty() || have < fee + DUST_LIMIT {
        return Err(PaymentError::Invalid("nothing to sweep above the fee and the dust limit"));
    }
    sign(picked, key, vec![TxOut { value: Amount::from_sat(have - fee), script_pubkey: to }])
}

/// Signs `picked` (P2WPKH coins of `key`) into a transaction paying `output`, checked with the
/// consensus library.
fn sign(picked: Vec<(OutPoint, TxOut)>, key: &SecretKey, output: Vec<TxOut>) -> Result<Transaction, PaymentError> {
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: picked
            .iter()
            .map(|(op, _)| TxIn {
                previous_output: *op,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            })
            .collect(),
        output,
    };
    let pk = bitcoin::PublicKey::from(public_key(key));
    let mut witnesses = Vec::new();
    {
        let mut cache = SighashCache::new(&tx);
        for (i, (_, out)) in picked.iter().enumerate() {
            let hash = cache
                .p2wpkh_signature_hash(i, &out.script_pubkey, out.value, EcdsaSighashType::All)
                .map_err(|_| PaymentError::Invalid("cannot compute sighash"))?;
            let sig = secp().sign_ecdsa(&Message::from_digest(hash.to_byte_array()), key);
            let sig = Signature { signature: sig, sighash_type: EcdsaSighashType::All };
            witnesses.push(Witness::p2wpkh(&sig, &pk.inner));
        }
    }
    for (input, w) in tx.input.iter_mut().zip(witnesses) {
        input.witness = w;
    }
    let spent: Vec<TxOut> = picked.into_iter().map(|(_, o)| o).collect();
    consensus::verify_tx(&tx, &spent)?;
    Ok(tx)
}
