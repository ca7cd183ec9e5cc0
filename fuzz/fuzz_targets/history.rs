//! The earnings-days file: any text parses (damaged lines skipped) and the periods never panic.
#![no_main]

use blackbox_storage_node::history::History;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut h = History::parse(&String::from_utf8_lossy(data));
    let days = h.per_day();
    let months = h.per_month();
    assert!(months.len() <= days.len());
    h.set(1_700_000_000, u64::MAX, 0);
    let _ = h.per_day();
});
