//! The dashboard's login form and credential headers: never panic, and nothing but the token or
//! a session it issued is accepted.
#![no_main]

use blackbox_storage_node::dashboard::{login_token, Sessions};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, COOKIE};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fuzz_target!(|data: &[u8]| {
    let s = Sessions::new(TOKEN.into());
    let given = login_token(data);
    assert_eq!(s.login(&given).is_some(), given == TOKEN);
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(data) {
        h.insert(COOKIE, v.clone());
        h.insert(AUTHORIZATION, v);
    }
    let bearer_ok = h.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if !bearer_ok && !String::from_utf8_lossy(data).contains(TOKEN) {
        assert!(!s.allows(&h) || given == TOKEN, "random credentials were accepted");
    }
    s.end(&h);
});
