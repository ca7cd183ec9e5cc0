//! Slot header and slot cap decoders: never panic; whatever decodes re-encodes to the same bytes
//! (caps to the same text).
#![no_main]

use blackbox_core::{SignedSlotHeader, SlotReadCap, SlotVerifyCap, SlotWriteCap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = SignedSlotHeader::decode(data) {
        assert_eq!(h.encode(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = text.parse::<SlotWriteCap>() {
            assert_eq!(c.to_string(), text);
        }
        if let Ok(c) = text.parse::<SlotReadCap>() {
            assert_eq!(c.to_string(), text);
        }
        if let Ok(c) = text.parse::<SlotVerifyCap>() {
            assert_eq!(c.to_string(), text);
        }
    }
});
