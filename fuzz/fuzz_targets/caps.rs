//! Capability parsers: never panic; whatever parses prints back to the same text.
#![no_main]

use blackbox_core::{ReadCap, VerifyCap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cap) = text.parse::<ReadCap>() {
        assert_eq!(cap.to_string(), text.trim());
    }
    if let Ok(cap) = text.parse::<VerifyCap>() {
        assert_eq!(cap.to_string(), text.trim());
    }
});
