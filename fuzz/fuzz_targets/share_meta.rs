//! On-disk share metadata decoder: never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

use blackbox_storage_node::ShareMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = ShareMeta::decode(data) {
        assert_eq!(meta.encode(), data);
    }
});
