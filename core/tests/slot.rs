//! Mutable-slot capabilities and signed version headers: derivation only downwards, strict text
//! forms, signatures that bind the storage index, sequence and content, and pinned bytes.

use blackbox_core::{
    EncodingParams, FileEncoder, ShareHeader, SignedSlotHeader, SlotError, SlotHeader, SlotReadCap, SlotVerifyCap,
    SlotWriteCap,
};
use proptest::prelude::*;

fn share_header(data: &[u8], key: [u8; 32]) -> ShareHeader {
    let params = EncodingParams::new(2, 3, 4096).unwrap();
    let mut enc = FileEncoder::new(key, params, data.len() as u64);
    let layout = *enc.layout();
    let mut off = 0;
    for i in 0..layout.num_segments() {
        let len = layout.segment_len(i);
        enc.encode_next(&data[off..off + len]).unwrap();
        off += len;
    }
    enc.finish().unwrap().0
}

fn version(w: &SlotWriteCap, sequence: u64) -> SignedSlotHeader {
    let r = w.read_cap();
    let header = SlotHeader {
        storage_index: r.verify_cap().storage_index(),
        sequence,
        share_header: share_header(b"hello slot", r.content_key(sequence)),
    };
    w.sign(header)
}

#[test]
fn caps_derive_downwards_and_round_trip() {
    let w = SlotWriteCap { seed: [7; 32] };
    let r = w.read_cap();
    let v = r.verify_cap();
    assert_eq!(w.to_string().parse::<SlotWriteCap>().unwrap(), w);
    assert_eq!(r.to_string().parse::<SlotReadCap>().unwrap(), r);
    assert_eq!(v.to_string().parse::<SlotVerifyCap>().unwrap(), v);
    assert!(w.to_string().starts_with("bb:slot-rw:"));
    assert!(r.to_string().starts_with("bb:slot-ro:"));
    assert!(v.to_string().starts_with("bb:slot-verify:"));
    // Nothing secret in debug output.
    assert!(!format!("{w:?}{r:?}").contains(&w.to_string()[11..]));
    assert_ne!(r.content_key(1), r.content_key(2));
    assert_ne!(r.read_key, w.seed);
    // Pinned: the derivations are part of the format.
    assert_eq!(v.to_string(), "bb:slot-verify:5jfgyy7ctrjavpxvkb5rglwf7gkuo5vox27hxescd3vgsfcg2iwa");
}

#[test]
fn parsers_are_strict() {
    let w = SlotWriteCap { seed: [7; 32] }.to_string();
    let r = SlotWriteCap { seed: [7; 32] }.read_cap().to_string();
    for bad in [
        "bb:slot-rw:".to_string(),
        w.replace("bb:slot-rw:", "bb:slot-ro:"),
        format!("{w}:x"),
        w.to_uppercase(),
        r.replace("bb:slot-ro:", "bb:slot-rw:"),
        format!("{}a", &r[..r.len() - 1]),
        "bb:chk:abc".into(),
    ] {
        assert!(bad.parse::<SlotWriteCap>().is_err() || bad == w, "accepted {bad} as a write cap");
        assert!(bad.parse::<SlotReadCap>().is_err() || bad == r, "accepted {bad} as a read cap");
    }
    // A verifying key that is no curve point is refused.
    let bogus = format!("bb:slot-verify:{}", "7".repeat(52));
    assert!(bogus.parse::<SlotVerifyCap>().is_err());
}

#[test]
fn headers_verify_only_for_their_slot_and_content() {
    let (w, other) = (SlotWriteCap { seed: [7; 32] }, SlotWriteCap { seed: [8; 32] });
    let v = w.read_cap().verify_cap();
    let signed = version(&w, 3);
    signed.verify(&v).unwrap();
    let decoded = SignedSlotHeader::decode(&signed.encode()).unwrap();
    assert_eq!(decoded, signed);
    decoded.verify(&v).unwrap();
    assert_eq!(signed.verify(&other.read_cap().verify_cap()), Err(SlotError::WrongSlot));
    // Signed by another key, or changed after signing: refused.
    let forged = other.sign(signed.header.clone());
    assert_eq!(forged.verify(&v), Err(SlotError::BadSignature));
    let mut bumped = signed.clone();
    bumped.header.sequence = 4;
    assert_eq!(bumped.verify(&v), Err(SlotError::BadSignature));
    let mut resized = signed.clone();
    resized.header.share_header.size += 1;
    assert_eq!(resized.verify(&v), Err(SlotError::BadSignature));
}

#[test]
fn golden_bytes_pin_the_slot_header_format() {
    let signed = version(&SlotWriteCap { seed: [7; 32] }, 1);
    let bytes = signed.encode();
    assert_eq!(bytes[0], 1, "format version");
    assert_eq!(&bytes[1..33], &signed.header.storage_index);
    assert_eq!(&bytes[33..41], &1u64.to_le_bytes());
    let len = u32::from_le_bytes(bytes[41..45].try_into().unwrap()) as usize;
    assert_eq!(&bytes[45..45 + len], &signed.header.share_header.encode()[..]);
    assert_eq!(bytes.len(), 45 + len + 64);
    // ed25519 signatures are deterministic: the whole encoding is fixed for this seed and content.
    assert_eq!(
        blake3::hash(&bytes).to_hex().to_string(),
        "1d03832a7ef0d06879b26170692084f7e6ee511803d1ddc88a87ed40b0830424"
    );
}

proptest! {
    #[test]
    fn decoder_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(h) = SignedSlotHeader::decode(&bytes) {
            prop_assert_eq!(h.encode(), bytes);
        }
    }

    #[test]
    fn truncations_and_extensions_are_refused(cut in 0usize..200, extra in any::<u8>()) {
        let bytes = version(&SlotWriteCap { seed: [9; 32] }, 5).encode();
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(SignedSlotHeader::decode(&bytes[..cut]).is_err());
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert!(SignedSlotHeader::decode(&longer).is_err());
    }
}
