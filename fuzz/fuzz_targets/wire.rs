//! Wire decoders: never panic; whatever decodes re-encodes to the same bytes.
#![no_main]

use blackbox_net::{Request, Response};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(req) = Request::decode(bytes.clone()) {
        assert_eq!(req.encode(), data);
    }
    if let Ok(resp) = Response::decode(bytes) {
        assert_eq!(resp.encode(), data);
    }
});
