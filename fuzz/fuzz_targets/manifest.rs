//! Multi-part manifests and `bb:multi:` caps: never panic; whatever decodes encodes back to the
//! same bytes (or prints back as the same text).
#![no_main]

use blackbox_core::{Manifest, MultiCap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data);
        assert!(!m.parts.is_empty() && m.parts.len() <= blackbox_core::multi::MAX_PARTS);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = text.parse::<MultiCap>() {
            assert_eq!(c.to_string(), text);
        }
    }
});
