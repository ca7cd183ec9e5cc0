//! Property test of the storage server's upload state machine against a simple model: random
//! sequences of allocate / write / commit / abort / read, from the owner and from a second,
//! hostile peer, never panic; only fully and correctly written uploads become visible; the other
//! peer can never write, commit or abort the owner's uploads; reads return exactly what was
//! committed, and the space accounting always equals committed bytes plus reservations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use blackbox_core::{EncodingParams, FileEncoder, FileLayout, ShareHeader};
use blackbox_net::{ErrorCode, PeerId, Request, RequestHandler, Response};
use blackbox_storage_node::{MemoryStore, StorageServer};
use bytes::Bytes;
use proptest::prelude::*;

const K: usize = 2;
const N: usize = 4;
const SEG: u32 = 4096;
const SIZE: u64 = 10_000;
const SI: [u8; 32] = [7; 32];

#[derive(Debug, Clone)]
enum Op {
    Allocate(u8),
    Write {
        share: u8,
        index: u64,
        corrupt: bool,
    },
    /// Every block in one request.
    WriteAll(u8),
    Commit(u8),
    Abort(u8),
    Read(u8),
    /// The other peer writes garbage into, commits or aborts the owner's newest upload of a share.
    Foreign(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let share = 0u8..N as u8;
    prop_oneof![
        share.clone().prop_map(Op::Allocate),
        (share.clone(), 0u64..3, prop::bool::weighted(0.15)).prop_map(|(share, index, corrupt)| Op::Write {
            share,
            index,
            corrupt
        }),
        share.clone().prop_map(Op::WriteAll),
        share.clone().prop_map(Op::Commit),
        share.clone().prop_map(Op::Abort),
        share.clone().prop_map(Op::Read),
        (share, 0u8..3).prop_map(|(s, what)| Op::Foreign(s, what)),
    ]
}

fn is_error(r: &Response, want: Option<ErrorCode>) -> bool {
    match r {
        Response::Error { code, .. } => want.is_none_or(|w| w == *code),
        _ => false,
    }
}

/// The file every test uploads: its header and each share's blocks.
fn file() -> (ShareHeader, Vec<Vec<Bytes>>) {
    let params = EncodingParams::new(K, N, SEG).unwrap();
    let mut enc = FileEncoder::new([1; 32], params, SIZE);
    let layout = *enc.layout();
    let data = vec![9u8; SIZE as usize];
    let mut shares = vec![Vec::new(); N];
    let mut off = 0;
    for i in 0..layout.num_segments() {
        let len = layout.segment_len(i);
        for (s, b) in enc.encode_next(&data[off..off + len]).unwrap().into_iter().enumerate() {
            shares[s].push(b);
        }
        off += len;
    }
    (enc.finish().unwrap().0, shares)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn server_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let (header, shares) = file();
        let layout = FileLayout::new(header.params, SIZE);
        let share_len = layout.share_len();
        let server = StorageServer::new(MemoryStore::new(), 3 * share_len, Duration::from_secs(600)).unwrap();
        let (me, thief) = (PeerId::random(), PeerId::random());
        let header_bytes = Bytes::from(header.encode());
        // Model: committed shares; uploads in progress by id, each with its share and, per block,
        // whether its last write was good; the newest upload of each share.
        let mut committed: BTreeSet<u8> = BTreeSet::new();
        let mut pending: BTreeMap<u64, (u8, BTreeMap<u64, bool>)> = BTreeMap::new();
        let mut newest: BTreeMap<u8, u64> = BTreeMap::new();

        for op in ops {
            match op {
                Op::Allocate(s) => {
                    let r = server.handle(&me, Request::Allocate {
                        si: SI, share: s, k: K as u8, n: N as u8, segment_size: SEG, size: SIZE, lease_secs: 0,
                    });
                    if committed.contains(&s) {
                        prop_assert_eq!(r, Response::Allocated { already_have: true, upload: 0 });
                    } else if (committed.len() + pending.len() + 1) as u64 * share_len > 3 * share_len {
                        prop_assert!(is_error(&r, Some(ErrorCode::QuotaExceeded)), "got {:?}", r);
                    } else {
                        let Response::Allocated { already_have: false, upload } = r else {
                            return Err(TestCaseError::fail(format!("got {r:?}")));
                        };
                        prop_assert!(!pending.contains_key(&upload));
                        pending.insert(upload, (s, BTreeMap::new()));
                        newest.insert(s, upload);
                    }
                }
                Op::Write { share, index, corrupt } => {
                    let mut block = shares[share as usize][index as usize].to_vec();
                    if corrupt {
                        block[0] ^= 1;
                    }
                    let upload = newest.get(&share).copied().unwrap_or(0);
                    let r = server.handle(&me, Request::WriteBlocks {
                        si: SI, share, upload, start: index, blocks: vec![Bytes::from(block)],
                    });
                    match pending.get_mut(&upload) {
                        Some((_, p)) => {
                            prop_assert_eq!(r, Response::Ok);
                            p.insert(index, !corrupt);
                        }
                        None => prop_assert!(is_error(&r, None), "got {:?}", r),
                    }
                }
                Op::WriteAll(share) => {
                    let blocks = shares[share as usize].clone();
                    let upload = newest.get(&share).copied().unwrap_or(0);
                    let r = server.handle(&me, Request::WriteBlocks { si: SI, share, upload, start: 0, blocks });
                    match pending.get_mut(&upload) {
                        Some((_, p)) => {
                            prop_assert_eq!(r, Response::Ok);
                            for i in 0..layout.num_segments() {
                                p.insert(i, true);
                            }
                        }
                        None => prop_assert!(is_error(&r, None), "got {:?}", r),
                    }
                }
                Op::Commit(s) => {
                    let upload = newest.get(&s).copied().unwrap_or(0);
                    let r = server.handle(&me, Request::Commit { si: SI, share: s, upload, header: header_bytes.clone() });
                    match pending.remove(&upload) {
                        // The share is stored with this very header already: a retry, answered Ok.
                        Some(_) if committed.contains(&s) => prop_assert_eq!(r, Response::Ok),
                        Some((_, p)) if p.len() as u64 == layout.num_segments() && p.values().all(|&good| good) => {
                            prop_assert_eq!(r, Response::Ok);
                            committed.insert(s);
                        }
                        _ if committed.contains(&s) => prop_assert_eq!(r, Response::Ok),
                        _ => prop_assert!(is_error(&r, None), "got {:?}", r),
                    }
                }
                Op::Abort(s) => {
                    let upload = newest.get(&s).copied().unwrap_or(0);
                    let r = server.handle(&me, Request::Abort { si: SI, share: s, upload });
                    prop_assert_eq!(r == Response::Ok, pending.remove(&upload).is_some());
                }
                Op::Read(s) => {
                    let r = server.handle(&me, Request::ReadBlocks { si: SI, share: s, start: 0, count: 3 });
                    if committed.contains(&s) {
                        prop_assert_eq!(r, Response::Blocks(shares[s as usize].clone()));
                    } else {
                        prop_assert!(is_error(&r, Some(ErrorCode::NotFound)), "got {:?}", r);
                    }
                }
                Op::Foreign(s, what) => {
                    let upload = newest.get(&s).copied().unwrap_or(0);
                    let garbage = vec![Bytes::from(vec![0u8; shares[s as usize][0].len()])];
                    let req = match what {
                        0 => Request::WriteBlocks { si: SI, share: s, upload, start: 0, blocks: garbage },
                        1 => Request::Commit { si: SI, share: s, upload, header: header_bytes.clone() },
                        _ => Request::Abort { si: SI, share: s, upload },
                    };
                    let r = server.handle(&thief, req);
                    // Refused, unless it is a commit of a share stored with this header already.
                    if !(what == 1 && committed.contains(&s)) {
                        prop_assert!(is_error(&r, Some(ErrorCode::NotFound)), "got {:?}", r);
                    }
                }
            }
            // Invariants after every step.
            let listed = server.handle(&me, Request::ListShares { si: SI });
            prop_assert_eq!(listed, Response::Shares(committed.iter().copied().collect()));
            let st = server.status();
            prop_assert_eq!(st.shares, committed.len() as u64);
            prop_assert_eq!(st.pending, pending.len() as u64);
            prop_assert_eq!(st.used, (committed.len() + pending.len()) as u64 * share_len);
        }
    }
}
