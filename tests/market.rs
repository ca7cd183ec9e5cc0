//! Many processes, one client: concurrent commands on one `client.toml` share its payment
//! channels (opened once, signed on from the newest amount under the record's lock) and all
//! succeed; the client's books and the nodes' agree to the satoshi.

use blackbox_tests::*;

#[test]
fn twenty_concurrent_puts_from_one_fresh_client_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 5, &["--block-secs", "0.5"]);
    let files: Vec<_> = (0..20)
        .map(|i| {
            let f = tmp.path().join(format!("f{i}"));
            random_file(&f, 4 << 20, 1000 + i);
            f
        })
        .collect();
    let puts: Vec<_> = files.iter().map(|f| spawn_put(&net, f)).collect();
    let mut caps = Vec::new();
    for (i, p) in puts.into_iter().enumerate() {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "put {i} failed: {}", stderr(&out));
        caps.push(stdout(&out).trim().to_string());
    }
    for (i, cap) in caps.iter().enumerate() {
        let back = tmp.path().join(format!("back{i}"));
        let out = net.run(&["get", cap, "-o", back.to_str().unwrap()]);
        assert!(out.status.success(), "get {i} failed: {}", stderr(&out));
        assert!(same_file(&files[i], &back), "get {i} returned other bytes");
    }
    let wallet = stdout(&net.run(&["wallet"]));
    let total: u64 = (0..5).map(|i| received(&net, i)).sum();
    assert!(total > 0);
    assert!(
        wallet.contains(&format!("paid {total} sat in all")),
        "client and nodes disagree ({total} received):\n{wallet}"
    );
    // One channel per node, opened once, not one per process.
    let channels = wallet.lines().filter(|l| l.contains(" open")).count();
    assert_eq!(channels, 5, "{wallet}");
    net.stop();
}

/// A node restarted with doubled prices bills its existing channel at the old ones; a failed
/// request costs nothing; renewing at half a lease bills half a lease.
#[test]
fn prices_stay_pinned_failures_are_free_and_renewals_bill_the_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    random_file(&a, 3 << 20, 11);
    random_file(&b, 3 << 20, 12);
    let net = Devnet::start(&dir, 3, &["--block-secs", "0.5"]);
    let cap_a = put(&net, &a);
    let first: Vec<Row> = (0..3).map(|i| earnings(&net, i).0[0]).collect();
    net.stop();
    for i in 0..3 {
        edit_node_config(&dir, i, "storage_sat_per_gb_month = 1000000", "storage_sat_per_gb_month = 2000000");
        edit_node_config(&dir, i, "egress_sat_per_gb = 1000000", "egress_sat_per_gb = 2000000");
    }
    let net = Devnet::start(&dir, 3, &["--block-secs", "0.5"]);
    put(&net, &b);
    for (i, before) in first.iter().enumerate() {
        let (rows, _, text) = earnings(&net, i);
        assert_eq!(rows.len(), 1, "the old channel is used: {text}");
        assert_eq!(rows[0].2 - before.2, before.2, "same share, same (old) price: {text}");
    }
    // A renewal of a file no node holds fails everywhere and bills nothing.
    let ghost = "bb:chk:ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijba:kxv5rtgvqn6bugw4u4xcqlz4up3csrtmcbss7myw25efeiefgjfa:3:3:100003";
    let before: Vec<Row> = (0..3).map(|i| earnings(&net, i).0[0]).collect();
    assert!(!net.run(&["renew", ghost, "--days", "40"]).status.success());
    let after: Vec<Row> = (0..3).map(|i| earnings(&net, i).0[0]).collect();
    assert_eq!(before, after, "a failed request costs nothing");
    // Leased for 31 days at the put; renewed to 46.5 days from now: half a lease is billed.
    assert!(net.run(&["renew", &cap_a, "--days", "46.5"]).status.success());
    for (i, old) in before.iter().enumerate() {
        let (rows, _, text) = earnings(&net, i);
        let share_len = old.0 / u128::from(blackbox_core::DEFAULT_LEASE_SECS) / 2; // two files' shares
        let added = rows[0].0 - old.0;
        let half = share_len * u128::from(blackbox_core::DEFAULT_LEASE_SECS) / 2;
        let slack = share_len * 600; // the minutes between the put and the renewal
        assert!(added >= half && added <= half + slack, "billed {added} byte-seconds, half a lease is {half}: {text}");
    }
    net.stop();
}
