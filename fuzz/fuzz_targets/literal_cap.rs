//! Literal cap parser: never panics; whatever parses prints back as the same text.
#![no_main]

use blackbox_core::{LiteralCap, MAX_LITERAL_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = text.parse::<LiteralCap>() {
            assert!(c.data.len() <= MAX_LITERAL_LEN);
            assert_eq!(c.to_string(), text);
        }
    }
});
