//! The storage node's request handler under arbitrary request sequences from three peers: never
//! panics, and the invariants hold after every request — no peer's request changes a share that
//! another peer committed, the listing matches the committed set, and the space accounting never
//! exceeds the quota.
//!
//! Input: a sequence of `peer byte, u16 LE length, request bytes` records; each request is decoded
//! with the wire codec (undecodable ones are skipped, as the transport would answer them).
#![no_main]

use std::time::Duration;

use blackbox_net::{PeerId, Request, RequestHandler, Response};
use blackbox_storage_node::{MemoryStore, StorageServer};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const QUOTA: u64 = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let server = StorageServer::new(MemoryStore::new(), QUOTA, Duration::from_secs(600)).expect("server");
    let peers = [PeerId::random(), PeerId::random(), PeerId::random()];
    // Every committed share with the header it was committed with.
    let mut committed: Vec<([u8; 32], u8, Bytes)> = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let peer = &peers[rest[0] as usize % peers.len()];
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let (msg, tail) = rest[3..].split_at(len);
        rest = tail;
        let Ok(req) = Request::decode(Bytes::copy_from_slice(msg)) else { continue };
        let _ = server.handle(peer, req);
        // Committed shares never change, whoever asked what.
        for (si, share, header) in &committed {
            let r = server.handle(&peers[0], Request::ReadHeader { si: *si, share: *share });
            assert_eq!(r, Response::Header(header.clone()), "a committed share changed");
        }
        // Learn newly committed shares (of the storage indexes requests named).
        if let Some(si) = msg.get(2..34) {
            let si: [u8; 32] = si.try_into().expect("32 bytes");
            if let Response::Shares(list) = server.handle(&peers[0], Request::ListShares { si }) {
                for share in list {
                    if !committed.iter().any(|(s, n, _)| *s == si && *n == share) {
                        if let Response::Header(h) = server.handle(&peers[0], Request::ReadHeader { si, share }) {
                            committed.push((si, share, h));
                        }
                    }
                }
            }
        }
        let st = server.status();
        assert!(st.used <= QUOTA, "used {} above the quota", st.used);
        assert_eq!(st.shares as usize, committed.len(), "share count drifted");
    }
});
