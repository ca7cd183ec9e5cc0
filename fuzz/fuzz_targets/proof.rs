//! Proof decoder and verifier: never panic on any bytes; whatever decodes re-encodes to the same
//! bytes; random bytes never verify.
#![no_main]

use std::sync::OnceLock;

use blackbox_core::{EncodingParams, FileEncoder, ShareHeader};
use blackbox_proofs::{verify, Challenge, Proof};
use libfuzzer_sys::fuzz_target;

fn header() -> &'static ShareHeader {
    static H: OnceLock<ShareHeader> = OnceLock::new();
    H.get_or_init(|| {
        let params = EncodingParams::new(2, 3, 4096).expect("params");
        let mut enc = FileEncoder::new([1; 32], params, 20_000);
        let data = vec![7u8; 4096];
        while !enc.is_done() {
            let len = enc.layout().segment_len(enc.next_segment());
            enc.encode_next(&data[..len]).expect("encode");
        }
        enc.finish().expect("finish").0
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = Proof::decode(data) {
        assert_eq!(proof.encode(), data);
        let count = proof.samples.len().clamp(1, 256) as u16;
        let c = Challenge { storage_index: [0; 32], share: 1, nonce: [3; 32], count };
        assert!(verify(&c, header(), &proof).is_err());
    }
});
