//! Signed-offer decoder: never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

use blackbox_net::offer::SignedOffer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = SignedOffer::decode(data) {
        assert_eq!(offer.encode(), data);
        let _ = offer.verify(&offer.peer_id(), 0);
    }
});
