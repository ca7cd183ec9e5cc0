//! Share header decoder: never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

use blackbox_core::ShareHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = ShareHeader::decode(data) {
        assert_eq!(header.encode(), data);
    }
});
