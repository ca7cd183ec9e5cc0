//! Directory node decoder: never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

use blackbox_core::dir::Node;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = Node::decode(data) {
        assert_eq!(node.encode(), data);
    }
});
