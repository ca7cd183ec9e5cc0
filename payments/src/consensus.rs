//! Checks a spend with Bitcoin Core's consensus library (libbitcoinconsensus), the same code that
//! validates blocks: what passes here is what the network accepts.

use bitcoin::consensus::encode::serialize;
use bitcoin::{Transaction, TxOut};

use crate::PaymentError;

/// Script flags: everything up to (not including) taproot, as for a segwit v0 spend today.
pub const FLAGS: u32 = bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT;

/// Verifies input `index` of `tx` spending `spent`.
pub fn verify_input(tx: &Transaction, index: usize, spent: &TxOut) -> Result<(), PaymentError> {
    let bytes = serialize(tx);
    bitcoinconsensus::verify_with_flags(
        spent.script_pubkey.as_bytes(),
        spent.value.to_sat(),
        &bytes,
        None,
        index,
        FLAGS,
    )
    .map_err(|e| PaymentError::Consensus(format!("{e:?}")))
}

/// Verifies every input of `tx`; `spent[i]` is the output input `i` spends.
pub fn verify_tx(tx: &Transaction, spent: &[TxOut]) -> Result<(), PaymentError> {
    if spent.len() != tx.input.len() {
        return Err(PaymentError::Invalid("one spent output per input"));
    }
    let bytes = serialize(tx);
    for (i, out) in spent.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(out.script_pubkey.as_bytes(), out.value.to_sat(), &bytes, None, i, FLAGS)
            .map_err(|e| PaymentError::Consensus(format!("input {i}: {e:?}")))?;
    }
    Ok(())
}
