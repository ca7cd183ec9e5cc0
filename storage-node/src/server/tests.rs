//! Unit tests of the request logic over the in-memory store.

use std::time::Duration;

use bytes::Bytes;

use blackbox_core::{EncodingParams, FileEncoder, FileLayout, ShareHeader};
use blackbox_net::wire::Si;
use blackbox_net::{ErrorCode, PeerId, Request, RequestHandler, Response};
use blackbox_proofs::Challenge;
use blackbox_util::now_secs;

use super::*;
use crate::MemoryStore;

fn server(quota: u64) -> StorageServer<MemoryStore> {
    StorageServer::new(MemoryStore::new(), quota, Duration::from_secs(600)).unwrap()
}

/// The upload id of a fresh allocation.
fn allocated(r: Response) -> u64 {
    match r {
        Response::Allocated { already_have: false, upload } => upload,
        other => panic!("expected an allocation, got {other:?}"),
    }
}

fn err_code(r: Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => code,
        other => panic!("expected error, got {other:?}"),
    }
}

#[test]
fn upload_verify_commit_read() {
    let s = server(1 << 30);
    let me = PeerId::random();
    let params = EncodingParams::new(2, 3, 4096).unwrap();
    let data = vec![3u8; 10_000];
    let mut enc = FileEncoder::new([1; 32], params, data.len() as u64);
    let mut share1 = Vec::new();
    for chunk in data.chunks(4096) {
        share1.push(enc.encode_next(chunk).unwrap().swap_remove(1).to_vec());
    }
    let (header, _) = enc.finish().unwrap();
    let si = [9; 32];
    let alloc = Request::Allocate { si, share: 1, k: 2, n: 3, segment_size: 4096, size: 10_000, lease_secs: 0 };
    let upload = allocated(s.handle(&me, alloc.clone()));
    // Before commit nothing is visible.
    assert_eq!(s.handle(&me, Request::ListShares { si }), Response::Shares(vec![]));
    let header_bytes = Bytes::from(header.encode());
    // Commit with missing blocks is refused (and drops the upload).
    let commit = Request::Commit { si, share: 1, upload, header: header_bytes.clone() };
    assert_eq!(err_code(s.handle(&me, commit.clone())), ErrorCode::Invalid);
    let upload = allocated(s.handle(&me, alloc.clone()));
    // A wrong-size block and a foreign writer are refused.
    let bad = Request::WriteBlocks { si, share: 1, upload, start: 0, blocks: vec![Bytes::from_static(b"xx")] };
    assert_eq!(err_code(s.handle(&me, bad)), ErrorCode::Invalid);
    let foreign = Request::WriteBlocks { si, share: 1, upload, start: 0, blocks: vec![share1[0].clone().into()] };
    assert_eq!(err_code(s.handle(&PeerId::random(), foreign)), ErrorCode::NotFound);
    for (i, b) in share1.iter().enumerate() {
        let w = Request::WriteBlocks { si, share: 1, upload, start: i as u64, blocks: vec![b.clone().into()] };
        assert_eq!(s.handle(&me, w), Response::Ok);
    }
    let commit = Request::Commit { si, share: 1, upload, header: header_bytes.clone() };
    assert_eq!(s.handle(&me, commit.clone()), Response::Ok);
    // A retried commit is answered Ok (nothing changes, nothing is billed again).
    assert_eq!(s.handle(&me, commit), Response::Ok);
    assert_eq!(s.handle(&me, Request::ListShares { si }), Response::Shares(vec![1]));
    assert_eq!(s.handle(&me, alloc), Response::Allocated { already_have: true, upload: 0 });
    match s.handle(&me, Request::ReadBlocks { si, share: 1, start: 1, count: 10 }) {
        Response::Blocks(b) => assert_eq!(b, share1[1..].iter().cloned().map(Bytes::from).collect::<Vec<_>>()),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.status().shares, 1);
}

/// Uploads share `share` of a 3-of-4 file of `size` bytes with a `lease`; returns its header.
fn put_share(s: &StorageServer<MemoryStore>, si: Si, share: u8, size: usize, lease: u32) -> ShareHeader {
    let me = PeerId::random();
    let params = EncodingParams::new(3, 4, 4096).unwrap();
    let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut enc = FileEncoder::new([si[0]; 32], params, size as u64);
    let mut blocks = Vec::new();
    for chunk in data.chunks(4096) {
        blocks.push(enc.encode_next(chunk).unwrap().swap_remove(share as usize));
    }
    let (header, _) = enc.finish().unwrap();
    let alloc = Request::Allocate { si, share, k: 3, n: 4, segment_size: 4096, size: size as u64, lease_secs: lease };
    let upload = allocated(s.handle(&me, alloc));
    for (i, b) in blocks.into_iter().enumerate() {
        let w = Request::WriteBlocks { si, share, upload, start: i as u64, blocks: vec![b] };
        assert_eq!(s.handle(&me, w), Response::Ok);
    }
    assert_eq!(s.handle(&me, Request::Commit { si, share, upload, header: header.encode().into() }), Response::Ok);
    header
}

/// Whether the node's answer to a challenge of `share` verifies.
fn proves(s: &StorageServer<MemoryStore>, header: &ShareHeader, si: Si, share: u8) -> bool {
    let c = Challenge { storage_index: si, share, nonce: [7; 32], count: 64 };
    match s.handle(&PeerId::random(), Request::Challenge { si, share, nonce: c.nonce, count: c.count }) {
        Response::Proof(bytes) => blackbox_proofs::Proof::decode(&bytes)
            .is_ok_and(|proof| blackbox_proofs::verify(&c, header, &proof).is_ok()),
        _ => false,
    }
}

#[test]
fn challenges_are_answered_from_the_stored_blocks() {
    let s = server(1 << 30);
    let (a, b) = ([1; 32], [2; 32]);
    let ha = put_share(&s, a, 0, 100_000, 0);
    let hb = put_share(&s, b, 1, 50_000, 0);
    assert!(proves(&s, &ha, a, 0));
    assert!(proves(&s, &hb, b, 1));
    // Not held, or a bad count: errors, not proofs.
    assert_eq!(
        err_code(s.handle(&PeerId::random(), Request::Challenge { si: a, share: 3, nonce: [0; 32], count: 1 })),
        ErrorCode::NotFound
    );
    assert_eq!(
        err_code(s.handle(&PeerId::random(), Request::Challenge { si: a, share: 0, nonce: [0; 32], count: 0 })),
        ErrorCode::Malformed
    );
    // A disk that lost some blocks, or a node answering from another share, fails.
    #[cfg(feature = "faults")]
    faults_are_caught(&s, &ha, a);
}

#[cfg(feature = "faults")]
fn faults_are_caught(s: &StorageServer<MemoryStore>, ha: &ShareHeader, a: Si) {
    s.set_faults(Faults { corrupt_every: 5, ..Faults::default() });
    assert!(!proves(s, ha, a, 0));
    s.set_faults(Faults { proof_from_other_share: true, ..Faults::default() });
    assert!(!proves(s, ha, a, 0));
    s.set_faults(Faults::default());
    assert!(proves(s, ha, a, 0));
}

#[test]
fn expired_leases_are_collected_and_renewed_ones_survive() {
    let s = server(1 << 30).with_leases(LeasePolicy { default_secs: 100, max_secs: 1000 });
    let (a, b) = ([1; 32], [2; 32]);
    put_share(&s, a, 0, 20_000, 50);
    put_share(&s, b, 0, 20_000, 0);
    let now = now_secs();
    let used = s.status().used;
    assert_eq!(
        s.store().lease(&ShareKey { si: a, share: 0 }).unwrap().map(|e| e.saturating_sub(now) <= 50),
        Some(true)
    );
    // Longer than the maximum is shortened to it.
    match s.handle(&PeerId::random(), Request::Renew { si: b, lease_secs: 5000 }) {
        Response::Renewed { shares: 1, expires } => assert!(expires <= now_secs() + 1000 && expires >= now + 999),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err_code(s.handle(&PeerId::random(), Request::Renew { si: [3; 32], lease_secs: 10 })),
        ErrorCode::NotFound
    );
    assert_eq!(s.collect_expired(now).unwrap(), (0, 0));
    let (count, bytes) = s.collect_expired(now + 500).unwrap();
    assert_eq!(count, 1);
    assert_eq!(s.status().used, used - bytes);
    assert_eq!(s.status().shares, 1);
    assert_eq!(s.handle(&PeerId::random(), Request::ListShares { si: a }), Response::Shares(vec![]));
    assert_eq!(s.handle(&PeerId::random(), Request::ListShares { si: b }), Response::Shares(vec![0]));
}

#[test]
fn wrong_blocks_fail_commit_and_quota_is_enforced() {
    let s = server(10_000);
    let me = PeerId::random();
    let si = [2; 32];
    let alloc = Request::Allocate { si, share: 0, k: 1, n: 2, segment_size: 4096, size: 4096, lease_secs: 0 };
    let upload = allocated(s.handle(&me, alloc));
    let len = FileLayout::new(EncodingParams::new(1, 2, 4096).unwrap(), 4096).block_len(0);
    let w = Request::WriteBlocks { si, share: 0, upload, start: 0, blocks: vec![vec![0u8; len].into()] };
    assert_eq!(s.handle(&me, w), Response::Ok);
    let header =
        ShareHeader { params: EncodingParams::new(1, 2, 4096).unwrap(), size: 4096, share_roots: vec![[0; 32]; 2] };
    let commit = Request::Commit { si, share: 0, upload, header: header.encode().into() };
    assert_eq!(err_code(s.handle(&me, commit)), ErrorCode::Invalid);
    assert_eq!(s.status().used, 0, "rejected upload releases its reservation");
    let big = Request::Allocate { si, share: 1, k: 1, n: 2, segment_size: 4096, size: 1 << 20, lease_secs: 0 };
    assert_eq!(err_code(s.handle(&me, big)), ErrorCode::QuotaExceeded);
    // However large the quota, uploads in progress cannot make the node hold unbounded state.
    let roomy = server(u64::MAX);
    let huge = Request::Allocate { si, share: 0, k: 1, n: 1, segment_size: 4096, size: 4096 << 22, lease_secs: 0 };
    match roomy.handle(&me, huge) {
        Response::Error { code: ErrorCode::QuotaExceeded, message } => assert!(message.contains("busy")),
        other => panic!("unexpected {other:?}"),
    }
}

/// Leases only grow: anyone may extend a lease, nobody can shorten it.
#[test]
fn renewals_never_shorten_a_lease() {
    let s = server(1 << 30).with_leases(LeasePolicy { default_secs: 1000, max_secs: 100_000 });
    let si = [4; 32];
    put_share(&s, si, 0, 20_000, 50_000);
    let key = ShareKey { si, share: 0 };
    let before = s.store().lease(&key).unwrap().unwrap();
    match s.handle(&PeerId::random(), Request::Renew { si, lease_secs: 1 }) {
        Response::Error { code: ErrorCode::Invalid, message } => {
            assert!(message.contains("leases only grow"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.store().lease(&key).unwrap(), Some(before));
    // The sweep re-checks under the share's lock: a share renewed past `now` is never collected.
    assert_eq!(s.collect_expired(before - 1).unwrap(), (0, 0));
    match s.handle(&PeerId::random(), Request::Renew { si, lease_secs: 90_000 }) {
        Response::Renewed { shares: 1, expires } => assert!(expires > before),
        other => panic!("{other:?}"),
    }
}

/// Another peer cannot write into, commit or abort an upload, and a second allocation of the
/// same share gets an upload of its own: nothing of the first changes.
#[test]
fn uploads_belong_to_their_owner() {
    let s = server(1 << 30);
    let (owner, thief) = (PeerId::random(), PeerId::random());
    let si = [6; 32];
    let alloc = Request::Allocate { si, share: 0, k: 1, n: 2, segment_size: 4096, size: 4096, lease_secs: 0 };
    let mine = allocated(s.handle(&owner, alloc.clone()));
    let theirs = allocated(s.handle(&thief, alloc));
    assert_ne!(mine, theirs);
    let len = FileLayout::new(EncodingParams::new(1, 2, 4096).unwrap(), 4096).block_len(0);
    for req in [
        Request::WriteBlocks { si, share: 0, upload: mine, start: 0, blocks: vec![vec![1u8; len].into()] },
        Request::Abort { si, share: 0, upload: mine },
        Request::Commit { si, share: 0, upload: mine, header: Bytes::from_static(b"x") },
    ] {
        assert_eq!(err_code(s.handle(&thief, req)), ErrorCode::NotFound);
    }
    assert_eq!(s.status().pending, 2);
    assert_eq!(s.handle(&owner, Request::Abort { si, share: 0, upload: mine }), Response::Ok);
    assert_eq!(s.status().pending, 1);
}

/// One peer cannot make a node spend unbounded work on proofs; other peers are still answered.
#[test]
fn challenges_are_budgeted_per_peer() {
    let s = server(1 << 30);
    let si = [8; 32];
    let header = put_share(&s, si, 0, 8192, 0);
    let flood = PeerId::random();
    let ask = |p: &PeerId| s.handle(p, Request::Challenge { si, share: 0, nonce: [1; 32], count: 1 });
    for _ in 0..super::audit::CHALLENGES_PER_MINUTE {
        assert!(matches!(ask(&flood), Response::Proof(_)));
    }
    match ask(&flood) {
        Response::Error { code: ErrorCode::QuotaExceeded, message } => assert!(message.contains("too many challenges")),
        other => panic!("{other:?}"),
    }
    assert!(proves(&s, &header, si, 0), "another peer is still served");
}

/// Rewriting blocks already written does not keep an upload (and its reservation) alive.
#[test]
fn rewriting_a_block_does_not_hold_a_reservation() {
    let s = StorageServer::new(MemoryStore::new(), 1 << 30, Duration::from_millis(400)).unwrap();
    let me = PeerId::random();
    let si = [3; 32];
    let alloc = Request::Allocate { si, share: 0, k: 1, n: 2, segment_size: 4096, size: 8192, lease_secs: 0 };
    let upload = allocated(s.handle(&me, alloc));
    let len = FileLayout::new(EncodingParams::new(1, 2, 4096).unwrap(), 8192).block_len(0);
    let block0 = Request::WriteBlocks { si, share: 0, upload, start: 0, blocks: vec![vec![1u8; len].into()] };
    for _ in 0..6 {
        assert_eq!(s.handle(&me, block0.clone()), Response::Ok);
        std::thread::sleep(Duration::from_millis(100));
    }
    s.expire_idle_uploads();
    assert_eq!(s.status().pending, 0, "an upload that only rewrites block 0 is dropped");
    assert_eq!(s.status().used, 0);
}

/// Writes version `seq` of share 0 of the slot of `w` (replacing `replaces`); returns the answer
/// to the commit (or the refusal of the allocation).
fn write_slot(s: &StorageServer<MemoryStore>, w: &blackbox_core::SlotWriteCap, seq: u64, replaces: u64) -> Response {
    use blackbox_core::SlotHeader;
    let me = PeerId::random();
    let r = w.read_cap();
    let si = r.verify_cap().storage_index();
    let params = EncodingParams::new(1, 2, 4096).unwrap();
    let data = vec![seq as u8; 5000];
    let mut enc = FileEncoder::new(r.content_key(seq), params, data.len() as u64);
    let mut blocks = Vec::new();
    for chunk in data.chunks(4096) {
        blocks.push(enc.encode_next(chunk).unwrap().swap_remove(0));
    }
    let (share_header, _) = enc.finish().unwrap();
    let signed = w.sign(SlotHeader { storage_index: si, sequence: seq, share_header });
    let vsi = signed.header.version_index();
    let alloc = Request::SlotAllocate {
        si,
        share: 0,
        verifying_key: r.verifying_key,
        header: signed.encode().into(),
        replaces,
        lease_secs: 0,
    };
    let upload = match s.handle(&me, alloc) {
        Response::Allocated { already_have: false, upload } => upload,
        other => return other,
    };
    for (i, b) in blocks.into_iter().enumerate() {
        let wr = Request::WriteBlocks { si: vsi, share: 0, upload, start: i as u64, blocks: vec![b] };
        assert_eq!(s.handle(&me, wr), Response::Ok);
    }
    s.handle(&me, Request::SlotCommit { si, share: 0, upload })
}

/// Slot versions: signed by the slot key, accepted only as a compare-and-swap on the version
/// they replace, the previous version readable until the new one is committed, then deleted.
#[test]
fn slot_versions_are_signed_compare_and_swaps() {
    use blackbox_core::{SignedSlotHeader, SlotWriteCap};
    let s = server(1 << 30);
    let w = SlotWriteCap { seed: [3; 32] };
    let si = w.read_cap().verify_cap().storage_index();
    let current = |s: &StorageServer<MemoryStore>| match s.handle(&PeerId::random(), Request::SlotRead { si }) {
        Response::Slot(g) if g.is_empty() => 0,
        Response::Slot(g) => SignedSlotHeader::decode(&g[0].header).unwrap().header.sequence,
        Response::Error { code: ErrorCode::NotFound, .. } => 0,
        other => panic!("{other:?}"),
    };
    assert_eq!(current(&s), 0);
    assert_eq!(write_slot(&s, &w, 1, 0), Response::Ok);
    assert_eq!(current(&s), 1);
    // A write that replaces a version the slot no longer holds loses, with a typed conflict.
    match write_slot(&s, &w, 2, 0) {
        Response::Error { code: ErrorCode::Conflict, message } => {
            assert!(message.contains("holds version 1"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Not newer than what it replaces; signed by another key: refused.
    assert_eq!(err_code(write_slot(&s, &w, 1, 1)), ErrorCode::Invalid);
    let thief = SlotWriteCap { seed: [4; 32] };
    let forged = {
        // The thief's header names the victim's slot but carries the thief's signature.
        let mut h = SignedSlotHeader::decode(&match s.handle(&PeerId::random(), Request::SlotRead { si }) {
            Response::Slot(g) => g[0].header.clone(),
            other => panic!("{other:?}"),
        })
        .unwrap()
        .header;
        h.sequence = 9;
        thief.sign(h)
    };
    let alloc = Request::SlotAllocate {
        si,
        share: 0,
        verifying_key: w.read_cap().verifying_key,
        header: forged.encode().into(),
        replaces: 1,
        lease_secs: 0,
    };
    assert!(matches!(s.handle(&PeerId::random(), alloc), Response::Error { .. }), "forged version accepted");
    assert_eq!(current(&s), 1);
    // The next version replaces the current one; the old version's share is deleted after.
    let v1 = match s.handle(&PeerId::random(), Request::SlotRead { si }) {
        Response::Slot(g) => SignedSlotHeader::decode(&g[0].header).unwrap().header.version_index(),
        other => panic!("{other:?}"),
    };
    let old = Request::ListShares { si: v1 };
    assert_eq!(s.handle(&PeerId::random(), old.clone()), Response::Shares(vec![0]));
    assert_eq!(write_slot(&s, &w, 2, 1), Response::Ok);
    assert_eq!(current(&s), 2);
    // Readers that started on version 1 can finish; the lease sweep removes it after the grace.
    assert_eq!(s.handle(&PeerId::random(), old.clone()), Response::Shares(vec![0]));
    let later = blackbox_util::now_secs() + super::slot::REPLACED_GRACE_SECS + 1;
    assert_eq!(s.collect_expired(later).unwrap().0, 1);
    assert_eq!(s.handle(&PeerId::random(), old), Response::Shares(vec![]));
    assert_eq!(s.status().shares, 1);
}

/// Another peer can neither commit nor spoil a slot version being uploaded by its writer.
#[test]
fn slot_uploads_belong_to_their_writer() {
    use blackbox_core::{SlotHeader, SlotWriteCap};
    let s = server(1 << 30);
    let (writer, thief) = (PeerId::random(), PeerId::random());
    let w = SlotWriteCap { seed: [5; 32] };
    let r = w.read_cap();
    let si = r.verify_cap().storage_index();
    let params = EncodingParams::new(1, 1, 4096).unwrap();
    let mut enc = FileEncoder::new(r.content_key(1), params, 100);
    let block = enc.encode_next(&[1u8; 100]).unwrap().swap_remove(0);
    let (share_header, _) = enc.finish().unwrap();
    let signed = w.sign(SlotHeader { storage_index: si, sequence: 1, share_header });
    let (vsi, header) = (signed.header.version_index(), signed.encode());
    let alloc = Request::SlotAllocate {
        si,
        share: 0,
        verifying_key: r.verifying_key,
        header: header.into(),
        replaces: 0,
        lease_secs: 0,
    };
    let upload = allocated(s.handle(&writer, alloc));
    let write = Request::WriteBlocks { si: vsi, share: 0, upload, start: 0, blocks: vec![block] };
    assert_eq!(err_code(s.handle(&thief, write.clone())), ErrorCode::NotFound);
    assert_eq!(err_code(s.handle(&thief, Request::SlotCommit { si, share: 0, upload })), ErrorCode::NotFound);
    assert_eq!(s.handle(&writer, write), Response::Ok);
    assert_eq!(s.handle(&writer, Request::SlotCommit { si, share: 0, upload }), Response::Ok);
    assert!(matches!(s.handle(&thief, Request::SlotRead { si }), Response::Slot(g) if g.len() == 1));
}

#[test]
fn the_monthly_bandwidth_is_enforced() {
    // Blocks of this share are ~1.4 KB: two reads fit in 3,000 bytes, the third does not.
    let s = server(1 << 20).with_egress(crate::egress::MonthlyEgress::open(None), 3_000);
    let si = [8; 32];
    put_share(&s, si, 0, 3 * 4096, 0);
    let me = PeerId::random();
    let read = |start| s.handle(&me, Request::ReadBlocks { si, share: 0, start, count: 1 });
    assert!(matches!(read(0), Response::Blocks(_)));
    assert!(matches!(read(1), Response::Blocks(_)));
    assert_eq!(err_code(read(2)), ErrorCode::QuotaExceeded);
    assert!(s.egress().used() <= 3_000);
}
