//! The channel's scripts and output templates.

use bitcoin::blockdata::opcodes::all::{OP_CHECKMULTISIG, OP_CHECKSIG, OP_CLTV, OP_DROP, OP_ELSE, OP_ENDIF, OP_IF};
use bitcoin::script::Builder;
use bitcoin::{CompressedPublicKey, PublicKey, ScriptBuf};

/// Outputs below this are not relayed by Bitcoin Core (dust, for P2WPKH at the default dust relay
/// fee); commitments leave such an output out and its value goes to the fee.
pub const DUST_LIMIT: u64 = 294;

/// Largest lock time that is a block height (higher values are Unix times).
pub const MAX_HEIGHT: u32 = 499_999_999;

/// The funding output's witness script.
pub fn funding_script(payer: &CompressedPublicKey, provider: &CompressedPublicKey, timeout: u32) -> ScriptBuf {
    let (payer, provider) = (PublicKey::from(*payer), PublicKey::from(*provider));
    Builder::new()
        .push_opcode(OP_IF)
        .push_int(2)
        .push_key(&payer)
        .push_key(&provider)
        .push_int(2)
        .push_opcode(OP_CHECKMULTISIG)
        .push_opcode(OP_ELSE)
        .push_int(i64::from(timeout))
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .push_key(&payer)
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_ENDIF)
        .into_script()
}

/// The P2WSH script_pubkey locking a channel.
pub fn funding_script_pubkey(payer: &CompressedPublicKey, provider: &CompressedPublicKey, timeout: u32) -> ScriptBuf {
    ScriptBuf::new_p2wsh(&funding_script(payer, provider, timeout).wscript_hash())
}

/// Pay-to-witness-pubkey-hash of a key: where commitments pay each side.
pub fn p2wpkh(key: &CompressedPublicKey) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&key.wpubkey_hash())
}
