//! A second, hostile peer on a paying devnet, talking the wire protocol directly: it cannot spend
//! or read the victim's channel, shorten the victim's leases, touch uploads that are not its own,
//! flood proofs, hoard uploads or crash the node; and through all of it the node keeps serving
//! the victim, whose books do not move.

use std::time::Duration;

use bitcoin::secp256k1::SecretKey;
use blackbox_net::{Libp2pTransport, Multiaddr, PeerId, Request, Response, Transport};
use blackbox_payments::{ChannelParams, PayerChannel};
use blackbox_tests::*;

/// Peer id and listen address of devnet node `i`.
fn node(net: &Devnet, i: usize) -> (PeerId, Vec<Multiaddr>) {
    let info = std::fs::read_to_string(net.node_dir(i).join("node.info")).unwrap();
    let info: toml::Value = toml::from_str(&info).unwrap();
    let peer = info["peer_id"].as_str().unwrap().parse().unwrap();
    let addrs = info["addrs"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().parse().unwrap()).collect();
    (peer, addrs)
}

/// The victim's channel to `peer`, from its client data.
fn victim_channel(net: &Devnet, peer: &PeerId) -> ChannelParams {
    let path = net.dir.join("client-data").join("channels").join(format!("{peer}.toml"));
    let record: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hex = record["params"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    ChannelParams::decode(&bytes).unwrap()
}

fn refused(r: &Response, words: &str) -> bool {
    matches!(r, Response::Error { message, .. } if message.contains(words))
        || matches!(r, Response::Receipt { inner, charged: 0, .. } if refused(inner, words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_changes_nothing_of_the_victim() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 3, &["--block-secs", "0.5"]);
    let file = tmp.path().join("f");
    random_file(&file, 2 << 20, 5);
    let cap = put(&net, &file);
    let vcap: blackbox_core::VerifyCap = cap.parse::<blackbox_core::ReadCap>().unwrap().verify_cap();
    let si = vcap.storage_index;
    let (peer, addrs) = node(&net, 0);
    let books_before = earnings(&net, 0).0;
    let channel = victim_channel(&net, &peer);
    let leases = || -> Vec<String> {
        let out = net.run(&["check", &cap, "--leases"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().filter(|l| l.contains("lease until")).map(str::to_string).collect()
    };
    let leases_before = leases();
    assert_eq!(leases_before.len(), 3, "one lease line per share: {leases_before:?}");
    assert!(leases_before.iter().all(|l| l.ends_with(" UTC")), "{leases_before:?}");
    let thief = Libp2pTransport::new(Duration::from_secs(20)).unwrap();
    let ask = |req: Request| {
        let (thief, addrs) = (thief.clone(), addrs.clone());
        async move { thief.request(peer, &addrs, req).await.unwrap() }
    };

    // Billed work without a payment of its own, the victim's channel status, forged payments.
    let r = ask(Request::Renew { si, lease_secs: 400 * 86_400 }).await;
    assert!(refused(&r, "payment required"), "{r:?}");
    let status = Request::ChannelStatus {
        txid: bitcoin::hashes::Hash::to_byte_array(channel.funding.txid),
        vout: channel.funding.vout,
    };
    let r = ask(status.clone()).await;
    assert!(refused(&r, "told only to the channel's payer"), "{r:?}");
    let key = SecretKey::from_slice(&[0x77; 32]).unwrap();
    for paid in [1, 5_000_000] {
        let forged = PayerChannel { params: channel, paid: 0 }.sign(paid, &key).unwrap().encode();
        let r = ask(Request::Paid { update: forged.into(), inner: Box::new(status.clone()) }).await;
        assert!(refused(&r, "payment rejected"), "{r:?}");
    }
    // Shortening the victim's leases: leases only grow.
    let r = ask(Request::Renew { si, lease_secs: 1 }).await;
    assert!(refused(&r, "payment required") || refused(&r, "leases only grow"), "{r:?}");
    // Uploads that are not its own, and the victim's committed share.
    let shares = match ask(Request::ListShares { si }).await {
        Response::Shares(s) => s,
        other => panic!("{other:?}"),
    };
    let share = shares[0];
    for upload in [0, 1, u64::MAX] {
        let r = ask(Request::Commit { si, share, upload, header: bytes::Bytes::from_static(b"x") }).await;
        assert!(matches!(r, Response::Error { .. }), "{r:?}");
        let r = ask(Request::Abort { si, share, upload }).await;
        assert!(refused(&r, "no such upload"), "{r:?}");
    }
    let alloc = Request::Allocate { si, share, k: 3, n: 3, segment_size: 4096, size: 4096, lease_secs: 0 };
    assert_eq!(ask(alloc).await, Response::Allocated { already_have: true, upload: 0 });
    // Hoarding uploads stops at the per-peer limit; flooding proofs at the per-peer budget.
    let mut held = 0;
    loop {
        let fresh = [held as u8; 32];
        let r =
            ask(Request::Allocate { si: fresh, share: 0, k: 1, n: 1, segment_size: 4096, size: 4096, lease_secs: 0 })
                .await;
        match r {
            Response::Allocated { .. } => held += 1,
            r => {
                assert!(refused(&r, "too many uploads in progress from this peer"), "{r:?}");
                break;
            }
        }
        assert!(held <= 256, "no per-peer upload limit");
    }
    let mut refused_at = None;
    for i in 0..700 {
        let r = ask(Request::Challenge { si, share, nonce: [i as u8; 32], count: 1 }).await;
        if !matches!(r, Response::Proof(_)) {
            assert!(refused(&r, "too many challenges"), "{r:?}");
            refused_at = Some(i);
            break;
        }
    }
    assert!(refused_at.is_some(), "no challenge budget");
    // An oversized frame gets an error, not a crash; the node answers afterwards.
    let _ = thief.request_raw(peer, &addrs, vec![2u8; 3 << 20]).await;
    assert!(matches!(ask(Request::Status).await, Response::Status(_)));

    // The victim is still served, in full, and its books at node 0 are as they were.
    let out = net.run(&["audit", &cap]);
    assert!(out.status.success(), "{}", stdout(&out));
    let back = tmp.path().join("back");
    assert!(net.run(&["get", &cap, "-o", back.to_str().unwrap()]).status.success());
    assert!(same_file(&file, &back));
    // What the thief did moved nothing: the victim's channel at node 0 holds only the victim's
    // own usage (its put, then its audit and get), and the victim pays exactly what nodes received.
    assert_eq!(leases(), leases_before, "no lease of the victim moved");
    let books_after = earnings(&net, 0).0;
    assert_eq!(books_after.len(), books_before.len(), "the thief opened no channel and changed none");
    assert_eq!(books_after[0].0, books_before[0].0, "stored byte-seconds unchanged: no renewal went through");
    let wallet = stdout(&net.run(&["wallet"]));
    let total: u64 = (0..3).map(|i| received(&net, i)).sum();
    assert!(wallet.contains(&format!("paid {total} sat in all")), "{wallet}");
    net.stop();
}
