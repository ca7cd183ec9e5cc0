//! Many processes, one client: concurrent commands on one `client.toml` share its payment
//! channels (opened once, signed on from the newest amount under the record's lock) and all
//! succeed; the client's books and the nodes' agree to the satoshi.

use blackbox_tests::*;

/// Satoshis a node says it received in commitments (`node earnings`).
fn received(net: &Devnet, i: usize) -> u64 {
    let cfg = net.node_dir(i).join("node.toml");
    let out = blackbox(None, &["--config", cfg.to_str().unwrap(), "node", "earnings"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("earned ")).unwrap_or_else(|| panic!("no totals in:\n{text}"));
    let at = line.find("received ").expect("received") + "received ".len();
    line[at..].split_whitespace().next().and_then(|n| n.parse().ok()).expect("number")
}

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
