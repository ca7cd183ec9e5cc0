//! Golden bytes, strict rejection and round-trip properties of the wire codec.

use super::*;
use proptest::prelude::*;

/// Golden bytes pin the format of a request and a response.
#[test]
fn golden_bytes() {
    let req = Request::ReadBlocks { si: [0x11; 32], share: 2, start: 5, count: 3 };
    let mut want = vec![3u8, 8];
    want.extend([0x11; 32]);
    want.extend([2, 5, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]);
    assert_eq!(req.encode(), want);
    let resp = Response::error(ErrorCode::NotFound, "no");
    assert_eq!(resp.encode(), vec![3, 7, 2, 2, 0, 0, 0, b'n', b'o']);
    let resp = Response::Blocks(vec![Bytes::from_static(b"ab")]);
    assert_eq!(resp.encode(), vec![3, 6, 1, 0, 0, 0, 2, 0, 0, 0, b'a', b'b']);
    let req = Request::Abort { si: [0x22; 32], share: 1, upload: 7 };
    let mut want = vec![3u8, 4];
    want.extend([0x22; 32]);
    want.extend([1, 7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(req.encode(), want);
    let resp = Response::Receipt { charged: 5, owed: 6, inner: Box::new(Response::Ok) };
    assert_eq!(resp.encode(), vec![3, 12, 5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 3, 0]);
}

/// Envelopes do not nest, however deep a hostile frame stacks them (no recursion, no overflow).
#[test]
fn nested_envelopes_are_refused_without_recursing() {
    let mut req = Vec::new();
    for _ in 0..150_000 {
        req.extend_from_slice(&[3, 13, 0, 0, 0, 0]);
    }
    req.extend_from_slice(&Request::Status.encode());
    assert_eq!(Request::decode(Bytes::from(req)), Err(WireError::UnknownKind(13)));
    let mut resp = Vec::new();
    for _ in 0..55_000 {
        resp.extend_from_slice(&[3, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    resp.extend_from_slice(&Response::Ok.encode());
    assert_eq!(Response::decode(Bytes::from(resp)), Err(WireError::UnknownKind(12)));
}

/// Version 1 messages (before upload ids, receipts and priced channels) are refused by name.
#[test]
fn version_one_is_refused_clearly() {
    let mut v1 = vec![1u8, 8];
    v1.extend([0x11; 32]);
    v1.extend([2, 5, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]);
    let e = Request::decode(Bytes::from(v1)).unwrap_err();
    assert_eq!(e, WireError::Version(1));
    assert_eq!(e.to_string(), "unsupported wire version 1");
    assert_eq!(Response::decode(Bytes::from(vec![1, 7, 2, 2, 0, 0, 0, b'n', b'o'])), Err(WireError::Version(1)));
    // Version 2 (noise-only transport) is refused the same way.
    assert_eq!(Response::decode(Bytes::from(vec![2, 7, 2, 2, 0, 0, 0, b'n', b'o'])), Err(WireError::Version(2)));
}

#[test]
fn rejects_bad_input() {
    let good = Request::Status.encode();
    assert_eq!(Request::decode(Bytes::from(vec![4, 0])), Err(WireError::Version(4)));
    assert_eq!(Request::decode(Bytes::from(vec![3, 99])), Err(WireError::UnknownKind(99)));
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(Request::decode(Bytes::from(trailing)), Err(WireError::Trailing));
    assert_eq!(Request::decode(Bytes::new()), Err(WireError::Truncated));
    let big = Request::ReadBlocks { si: [0; 32], share: 0, start: 0, count: MAX_BLOCKS + 1 };
    assert!(matches!(Request::decode(Bytes::from(big.encode())), Err(WireError::Count(_))));
    let huge = vec![0u8; MAX_MESSAGE + 1];
    assert!(matches!(Request::decode(Bytes::from(huge)), Err(WireError::TooLarge(_))));
}

fn request() -> impl Strategy<Value = Request> {
    let si = any::<[u8; 32]>();
    prop_oneof![
        Just(Request::Status),
        Just(Request::GetOffer),
        (si, any::<u8>(), any::<u8>(), any::<u8>(), any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
            |(si, share, k, n, segment_size, size, lease_secs)| Request::Allocate {
                si,
                share,
                k,
                n,
                segment_size,
                size,
                lease_secs
            }
        ),
        (si, any::<u8>(), any::<[u8; 32]>(), any::<u16>()).prop_map(|(si, share, nonce, count)| Request::Challenge {
            si,
            share,
            nonce,
            count
        }),
        (si, any::<u32>()).prop_map(|(si, lease_secs)| Request::Renew { si, lease_secs }),
        (proptest::collection::vec(any::<u8>(), 0..200), proptest::collection::vec(any::<u8>(), 0..400))
            .prop_map(|(p, o)| Request::OpenChannel { params: p.into(), offer: o.into() }),
        (proptest::collection::vec(any::<u8>(), 0..120), si, any::<u8>()).prop_map(|(u, si, share)| {
            Request::Paid { update: u.into(), inner: Box::new(Request::ReadBlocks { si, share, start: 1, count: 2 }) }
        }),
        (any::<[u8; 32]>(), any::<u32>()).prop_map(|(txid, vout)| Request::ChannelStatus { txid, vout }),
        (
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec("\\PC{0,20}", 0..4),
            proptest::collection::vec(("[a-z]{1,8}", "bb:[a-z0-9:]{1,60}"), 0..4),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(m, args, inputs, fuel, memory, timeout_secs, cores)| Request::JobStart(
                crate::wire::JobSpec { module: m.into(), args, inputs, fuel, memory, timeout_secs, cores }
            )),
        any::<[u64; 5]>().prop_map(|n| Request::JobPoll {
            job: n[0],
            stdout_from: n[1],
            stderr_from: n[2],
            accept_fuel: n[3],
            accept_core_secs: n[4]
        }),
        (any::<u64>(), "[a-z.]{1,20}", any::<u64>()).prop_map(|(job, name, offset)| Request::JobOutput {
            job,
            name,
            offset
        }),
        any::<u64>().prop_map(|job| Request::JobCancel { job }),
        si.prop_map(|si| Request::Leases { si }),
        (
            si,
            any::<u8>(),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(si, share, verifying_key, h, replaces, lease_secs)| Request::SlotAllocate {
                si,
                share,
                verifying_key,
                header: h.into(),
                replaces,
                lease_secs
            }),
        (si, any::<u8>(), any::<u64>()).prop_map(|(si, share, upload)| Request::SlotCommit { si, share, upload }),
        any::<[u8; 32]>().prop_map(|si| Request::SlotRead { si }),
        (
            si,
            any::<u8>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..4)
        )
            .prop_map(|(si, share, upload, start, b)| Request::WriteBlocks {
                si,
                share,
                upload,
                start,
                blocks: b.into_iter().map(Bytes::from).collect()
            }),
        (si, any::<u8>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(si, share, upload, h)| Request::Commit { si, share, upload, header: h.into() }),
        (si, any::<u8>(), any::<u64>()).prop_map(|(si, share, upload)| Request::Abort { si, share, upload }),
        si.prop_map(|si| Request::ListShares { si }),
        (si, any::<u8>(), any::<u64>(), 0..=MAX_LEAVES).prop_map(|(si, share, start, count)| Request::ReadLeaves {
            si,
            share,
            start,
            count
        }),
        (si, any::<u8>(), any::<u64>(), 0..=MAX_BLOCKS).prop_map(|(si, share, start, count)| Request::ReadBlocks {
            si,
            share,
            start,
            count
        }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Ok),
        any::<[u64; 4]>().prop_map(|[shares, pending, used, quota]| Response::Status(NodeStatus {
            shares,
            pending,
            used,
            quota
        })),
        (any::<bool>(), any::<u64>()).prop_map(|(already_have, upload)| Response::Allocated { already_have, upload }),
        (any::<u64>(), any::<u32>()).prop_map(|(charged, shares)| Response::Receipt {
            charged,
            owed: charged / 2,
            inner: Box::new(Response::Renewed { shares, expires: 9 })
        }),
        proptest::collection::vec(any::<u8>(), 0..255).prop_map(Response::Shares),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|h| Response::Header(h.into())),
        proptest::collection::vec(any::<[u8; 32]>(), 0..20).prop_map(Response::Leaves),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..5)
            .prop_map(|b| Response::Blocks(b.into_iter().map(Bytes::from).collect())),
        "\\PC{0,100}".prop_map(|m| Response::error(ErrorCode::Invalid, m)),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|o| Response::Offer(o.into())),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|p| Response::Proof(p.into())),
        (any::<u32>(), any::<u64>()).prop_map(|(shares, expires)| Response::Renewed { shares, expires }),
        proptest::collection::vec((any::<u8>(), any::<u64>()), 0..20).prop_map(Response::Leases),
        proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..8), proptest::collection::vec(any::<u8>(), 0..300)),
            0..4
        )
        .prop_map(|g| Response::Slot(
            g.into_iter().map(|(shares, h)| crate::wire::SlotGroup { shares, header: h.into() }).collect()
        )),
        Just(Response::error(ErrorCode::Conflict, "slot holds version 3")),
        (any::<u64>(), any::<u64>(), any::<u128>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(paid, owed, stored, served, cpu, fuel)| Response::Channel { paid, owed, stored, served, cpu, fuel }
        ),
        any::<u64>().prop_map(|job| Response::JobStarted { job }),
        (
            any::<[u64; 6]>(),
            proptest::collection::vec(any::<u8>(), 0..100),
            proptest::collection::vec(("[a-z]{1,8}", any::<u64>()), 0..3),
            proptest::option::of((any::<u8>(), any::<i32>(), "\\PC{0,40}", any::<[u8; 32]>()))
        )
            .prop_map(|(n, out, outputs, end)| Response::Job(crate::wire::JobReport {
                fuel: n[0],
                fuel_charged: n[1],
                core_secs: n[2],
                core_secs_charged: n[3],
                stdout_len: n[4],
                stderr_len: n[5],
                stdout: out.clone().into(),
                stderr: out.into(),
                outputs,
                end: end.map(|(code, exit, message, digest)| crate::wire::JobEnd { code, exit, message, digest }),
            })),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(req in request()) {
        let parts: Vec<u8> = req.encode_parts().concat();
        prop_assert_eq!(&parts, &req.encode());
        prop_assert_eq!(Request::decode(Bytes::from(req.encode())).unwrap(), req);
    }

    #[test]
    fn responses_round_trip(resp in response()) {
        prop_assert_eq!(Response::decode(Bytes::from(resp.encode())).unwrap(), resp);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Request::decode(Bytes::from(bytes.clone()));
        let _ = Response::decode(Bytes::from(bytes));
    }
}
