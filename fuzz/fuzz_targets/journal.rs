//! The drive's write-back journals: any bytes are refused or parsed without a panic, and what
//! parses names a write cap and a non-empty name that print back as they were read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((cap, name)) = blackbox_fuse::parse_journal_text(text) {
            assert!(!name.is_empty() && text.contains(&cap.to_string()) && text.contains(&name));
        }
    }
});
