//! Payments on a devnet: real node processes, the devnet chain, channels opened, billed, closed
//! and refunded on chain.

use blackbox_tests::*;

#[test]
fn devnet_payments_are_exact_closed_on_chain_and_refundable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let file = tmp.path().join("f");
    random_file(&file, 3 << 20, 77);
    // Devnet prices (1,000,000 sat/GB-month, 1,000,000 sat/GB, 3,600 sat/core-hour) make every
    // node earn more than the dust limit from one small file.
    let args = ["--channel-blocks", "40", "--block-secs", "0.5"];
    let net = Devnet::start(&dir, 5, &args);
    let cap = put(&net, &file);
    let back = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(same_file(&file, &back));
    // A job on node 0: 2 cores held while it spins through 10^9 fuel (its cap), billed per fuel
    // unit and per core-second.
    let spin = concat!(env!("CARGO_MANIFEST_DIR"), "/../compute/jobs/spin.wat");
    let out = net.run(&["job", "run", spin, "--node", &net.peer_of(0), "--cores", "2", "--fuel", "1000000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("out of fuel"), "{}", stderr(&out));

    // 3 MiB, 3-of-5, 1 MiB segments: every share is 3 blocks of 349,568 bytes, leased 31 days.
    let share_len: u64 = 3 * 349_568;
    let lease: u128 = 31 * 86_400;
    let (mut total_received, mut servers) = (0u64, 0);
    for i in 0..5 {
        let (rows, _, text) = earnings(&net, i);
        assert_eq!(rows.len(), 1, "{text}");
        let (stored, served, earned, received) = rows[0];
        let (cpu, fuel) = job_usage(&text);
        assert_eq!(fuel, if i == 0 { 1_000_000_000 } else { 0 }, "{text}");
        assert!(if i == 0 { cpu >= 2 && cpu % 2 == 0 } else { cpu == 0 }, "{text}");
        assert_eq!(stored, u128::from(share_len) * lease, "{text}");
        assert!(served == 0 || served == share_len, "{text}");
        servers += usize::from(served > 0);
        // Exact: each charge is its own receipt, rounded up once: the commit's rent
        // ceil(byte-seconds × price / (GB × 30 days)), each read's ceil(bytes × price / GB) (at
        // most one sat above the whole transfer's per block read), the lease's core-seconds.
        let want = (stored * 1_000_000).div_ceil(1_000_000_000 * 2_592_000) as u64
            + (u128::from(served) * 1_000_000).div_ceil(1_000_000_000) as u64
            + (cpu * 3600).div_ceil(3600)
            + (fuel * 1_000).div_ceil(1_000_000_000);
        let reads = served / 349_568;
        assert!(earned >= want && earned <= want + reads, "{earned} vs {want}:\n{text}");
        // Exactly the bill, but for the node running the job: its start signs one satoshi ahead
        // (the envelope names the channel), left as credit when the fuel costs less than asked.
        assert!(received >= earned && received <= earned + u64::from(i == 0), "the client pays the bill:\n{text}");
        total_received += received;
    }
    assert_eq!(servers, 3, "a get reads the 3 data shares");
    let wallet = stdout(&net.run(&["wallet"]));
    assert!(wallet.contains(&format!("paid {total_received} sat in all")), "{wallet}");

    // A client that does not pay is refused service.
    let unpaid = tmp.path().join("unpaid.toml");
    let cfg = std::fs::read_to_string(net.config()).unwrap();
    let cut = cfg.find("[payments]").unwrap();
    std::fs::write(
        &unpaid,
        format!("data_dir = \"{}\"\n{}", tmp.path().join("other").display(), &cfg[..cut])
            .replace("data_dir = \"client-data\"\n", ""),
    )
    .unwrap();
    let out = blackbox(Some(&unpaid), &["get", &cap, "-o", tmp.path().join("x").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("payment required"), "{}", stderr(&out));

    // One provider vanishes before it can close: the payer takes its channel back after the
    // timeout. The others close before the timeout and their closes confirm.
    let gone = 4;
    net.kill_node(gone);
    let mut confirmed = 0;
    for _ in 0..120 {
        confirmed = (0..4).map(|i| earnings(&net, i).1).sum::<usize>();
        if confirmed == 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(confirmed, 4, "every live node closes its channel on chain");
    for i in 0..4 {
        let (_, _, text) = earnings(&net, i);
        let settled: u64 =
            text.split("sat in commitments; ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        let (rows, _, _) = earnings(&net, i);
        assert_eq!(settled, rows[0].3, "settled on chain = received:\n{text}");
    }
    let mut refunded = String::new();
    for _ in 0..60 {
        let out = net.run(&["wallet", "--refund"]);
        refunded = stdout(&out);
        if refunded.contains("(1 conf)") || refunded.contains("(2 conf)") || refunded.contains("(3 conf)") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(refunded.matches("refunded ").count(), 1, "{refunded}");
    assert!(!refunded.contains("(0 conf)"), "{refunded}");
}

/// A node killed with -9 restarts with every payment it accepted and every byte it billed; a
/// client killed mid-download, then run again, pays each request once (what it paid for and did
/// not get stays as credit) and its books agree with the nodes'.
#[test]
fn killed_node_or_client_loses_no_payment_and_pays_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let file = tmp.path().join("f");
    random_file(&file, 64 << 20, 78);
    let args = ["--channel-blocks", "600"];
    let net = Devnet::start(&dir, 4, &args);
    let cap = put(&net, &file);
    let back = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before: Vec<_> = (0..4).map(|i| earnings(&net, i).0).collect();

    // kill -9 a node that served the download, restart the network: nothing lost.
    let victim = (0..4).find(|&i| before[i][0].1 > 0).unwrap();
    net.kill_node(victim);
    net.stop();
    let net = Devnet::start(&dir, 4, &args);
    assert_eq!(earnings(&net, victim).0, before[victim]);

    // A client killed in the middle of a download, then run again.
    let mut get = std::process::Command::new(bin())
        .arg("--config")
        .arg(net.config())
        .args(["get", &cap, "-o", back.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has written part of the file (to a hidden temporary file beside it).
    let partial = || {
        std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.path()).find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            name.starts_with(".back.") && name.ends_with(".tmp")
        })
    };
    for _ in 0..2000 {
        if partial().is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 2 << 20)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = get.kill();
    let _ = get.wait();
    let killed_early = partial().is_some();
    let out = net.run(&["get", &cap, "-o", back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(same_file(&file, &back));
    let mut received_total = 0;
    for (i, old) in before.iter().enumerate() {
        let (rows, _, text) = earnings(&net, i);
        let (_, served, earned, received) = rows[0];
        // Never served unpaid; credit at most what was prepaid when the client died (the reads
        // in flight and the 16 paid ahead, of one 349,568-byte block each) plus rounding.
        assert!(received >= earned, "{text}");
        assert!(received - earned <= (20 * 349_568 * 1_000_000u64).div_ceil(1_000_000_000) + 1, "{text}");
        assert!(served >= old[0].1, "{text}");
        received_total += received;
    }
    let wallet = stdout(&net.run(&["wallet"]));
    assert!(wallet.contains(&format!("paid {received_total} sat in all")), "client and nodes disagree:\n{wallet}");
    assert!(killed_early, "the first download finished before it could be killed");
}

/// A node that dies (`abort`, as `kill -9`) after recording a charge and before sending its
/// receipt: the client fails over, and once the node is back, the next request leaves the client's
/// books and every node's in agreement to the satoshi.
#[test]
fn node_killed_between_a_charge_and_its_receipt_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let file = tmp.path().join("f");
    random_file(&file, 6 << 20, 79);
    let net = Devnet::start(&dir, 4, &[]);
    let cap = put(&net, &file);
    net.stop();
    edit_node_config(&dir, 0, "fault_abort_after_charges = 0", "fault_abort_after_charges = 1");
    let net = Devnet::start(&dir, 4, &[]);
    // A renewal is billed on every node: node 0 records its charge and dies before answering;
    // the other nodes renew.
    let out = net.run(&["renew", &cap, "--days", "40"]);
    assert!(out.status.success(), "{}", stderr(&out));
    net.stop();
    assert!(std::fs::read_to_string(net_log(&dir, 0)).unwrap().contains("dying between a charge and its receipt"));
    edit_node_config(&dir, 0, "fault_abort_after_charges = 1", "fault_abort_after_charges = 0");
    let net = Devnet::start(&dir, 4, &[]);
    // The next requests: a renewal everywhere and a verified read.
    let out = net.run(&["renew", &cap, "--days", "41"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let back = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(same_file(&file, &back));
    let total: u64 = (0..4).map(|i| received(&net, i)).sum();
    let wallet = stdout(&net.run(&["wallet"]));
    assert!(wallet.contains(&format!("paid {total} sat in all")), "client and nodes disagree:\n{wallet}");
    for i in 0..4 {
        let (rows, _, text) = earnings(&net, i);
        assert!(rows.iter().all(|r| r.2 <= r.3), "a node billed more than it was paid:\n{text}");
    }
    net.stop();
}

fn net_log(dir: &std::path::Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("node-{i:02}")).join("node.log")
}
