//! Proofs of retrievability, leases and repair, end to end: real node processes on 127.0.0.1.

use blackbox_tests::*;

/// Two nodes lose their data: `audit` names the two missing shares and the two nodes; `repair`
/// rebuilds both from the verify cap alone onto nodes that hold no other share of the file.
#[test]
fn audit_finds_lost_shares_and_repair_restores_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let file = tmp.path().join("f");
    random_file(&file, 12 << 20, 41);
    let net = Devnet::start(&dir, 10, &[]);
    let cap = put(&net, &file);
    let out = net.run(&["audit"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("10 of 10 shares healthy"), "{}", stdout(&out));
    let (a, b) = (3, 7);
    let lost = [net.peer_of(a), net.peer_of(b)];
    net.stop();
    for i in [a, b] {
        std::fs::remove_dir_all(net_node_store(&dir, i)).unwrap();
    }

    let net = Devnet::start(&dir, 10, &[]);
    // Only the verify cap: the read cap's key is never needed.
    let vcap = {
        let out = net.run(&["check", &cap]);
        stdout(&out).lines().find_map(|l| l.strip_prefix("verify cap: ")).unwrap().to_string()
    };
    let out = net.run(&["audit", &vcap]);
    let report = stdout(&out);
    assert!(!out.status.success(), "audit should fail:\n{report}");
    assert!(report.contains("8 of 10 shares healthy"), "{report}");
    let failing = report.lines().find(|l| l.contains("failing nodes:")).unwrap();
    for peer in &lost {
        assert!(failing.contains(peer.as_str()), "{peer} not failing:\n{report}");
        assert!(line_of(&report, peer).contains("FAIL: share missing"), "{report}");
    }
    assert_eq!(report.matches(": ok (").count(), 8, "{report}");

    let out = net.run(&["repair", &vcap]);
    let report = stdout(&out);
    assert!(out.status.success(), "repair failed:\n{report}{}", stderr(&out));
    assert!(report.contains("10 of 10 shares healthy after repair"), "{report}");
    let rebuilt: Vec<&str> = report.lines().filter(|l| l.contains("rebuilt share")).collect();
    assert_eq!(rebuilt.len(), 2, "{report}");
    for peer in &lost {
        let suffix = &peer[peer.len() - 6..];
        assert!(rebuilt.iter().any(|l| l.ends_with(suffix)), "{peer} got no share:\n{report}");
    }
    // Every node holds exactly one share again, all ten prove them, and the file reads back.
    let counts = node_counts(&net);
    assert_eq!(counts.len(), 10);
    assert!(counts.iter().all(|(_, shares, _, _)| *shares == 1), "{counts:?}");
    let out = net.run(&["check", &vcap]);
    assert!(stdout(&out).contains("10 of 10 shares found"), "{}", stdout(&out));
    let out = net.run(&["audit", &vcap]);
    assert!(out.status.success(), "{}", stdout(&out));
    let back = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(same_file(&file, &back));
}

fn net_node_store(dir: &std::path::Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("node-{i:02}")).join("store")
}

/// A disk that lost 1% of its blocks, a node answering with another share's blocks and a node
/// answering after the deadline all fail the audit; the honest nodes pass.
#[test]
fn audit_catches_corrupt_wrong_share_and_late_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let (f1, f2) = (tmp.path().join("f1"), tmp.path().join("f2"));
    random_file(&f1, 20 << 20, 5);
    random_file(&f2, 3 << 20, 6);
    let net = Devnet::start(&dir, 10, &[]);
    let cap = put(&net, &f1);
    put(&net, &f2);
    let (corrupt, other, late) = (net.peer_of(2), net.peer_of(5), net.peer_of(8));
    net.stop();
    edit_node_config(&dir, 2, "fault_corrupt_every = 0", "fault_corrupt_every = 100");
    edit_node_config(&dir, 5, "fault_proof_other_share = false", "fault_proof_other_share = true");
    edit_node_config(&dir, 8, "fault_proof_delay_ms = 0", "fault_proof_delay_ms = 4000");

    let net = Devnet::start(&dir, 10, &[]);
    let out = net.run(&["audit", "--deadline", "1.5", &cap]);
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(line_of(&report, &corrupt).contains("FAIL: bad proof"), "{report}");
    assert!(line_of(&report, &other).contains("FAIL: bad proof"), "{report}");
    assert!(line_of(&report, &late).contains("FAIL: no answer within the deadline"), "{report}");
    assert_eq!(report.matches(": ok (").count(), 7, "{report}");
    // Bad proofs cost reputation: the liars are recorded.
    let reputation = std::fs::read_to_string(dir.join("client-data").join("reputation.toml")).unwrap();
    assert!(reputation.contains(&corrupt) && reputation.contains(&other), "{reputation}");
}

/// Shares whose lease ran out are deleted by the nodes' sweep and their space is released;
/// renewed shares survive.
#[test]
fn expired_leases_are_collected_and_renewed_ones_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let (fa, fb) = (tmp.path().join("a"), tmp.path().join("b"));
    random_file(&fa, 3 << 20, 7);
    random_file(&fb, 2 << 20, 8);
    let net = Devnet::start(&dir, 4, &[]);
    net.stop();
    for i in 0..4 {
        edit_node_config(&dir, i, "lease_sweep_secs = 3600", "lease_sweep_secs = 1");
    }
    let client = dir.join("client.toml");
    let text = std::fs::read_to_string(&client).unwrap();
    std::fs::write(&client, text.replace("lease_secs = 2678400", "lease_secs = 12")).unwrap();

    let net = Devnet::start(&dir, 4, &[]);
    let cap_a = put(&net, &fa);
    let cap_b = put(&net, &fb);
    let out = net.run(&["renew", "--days", "1", &cap_b]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).matches("share(s) leased until").count(), 4, "{}", stdout(&out));
    let used_before: u64 = node_counts(&net).iter().map(|c| c.3).sum();
    std::thread::sleep(std::time::Duration::from_secs(16));
    let counts = node_counts(&net);
    assert!(counts.iter().all(|(_, shares, _, _)| *shares == 1), "{counts:?}");
    let used_after: u64 = counts.iter().map(|c| c.3).sum();
    let out = net.run(&["check", &cap_a]);
    assert!(!out.status.success(), "expired file still found: {}", stdout(&out));
    let out = net.run(&["check", &cap_b]);
    assert!(out.status.success(), "{}", stdout(&out));
    // Quota: exactly the bytes of file a's shares were released (3 MiB file, 3-of-4).
    let freed = used_before - used_after;
    let share_len_a = 3 * (((1 << 20) + 16usize).div_ceil(3).div_ceil(64) * 64) as u64;
    assert_eq!(freed, 4 * share_len_a, "before {used_before} after {used_after}");
    let logs: String = (0..4).map(|i| std::fs::read_to_string(net.node_dir(i).join("node.log")).unwrap()).collect();
    assert_eq!(logs.matches("lease expired: share deleted").count(), 4);
    // After a restart the accounting is the same.
    net.stop();
    let net = Devnet::start(&dir, 4, &[]);
    let again: u64 = node_counts(&net).iter().map(|c| c.3).sum();
    assert_eq!(again, used_after);
}

/// The long tail: a node on a link far slower than the others (test-only rate fault) is left out
/// of a put once the file is happy without it, and a get reads another share in place of the
/// one it holds, switching at the next block; both return the same bytes as ever.
#[test]
fn a_slow_node_is_left_out_of_a_put_and_read_around_in_a_get() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let file = tmp.path().join("f");
    random_file(&file, 24 << 20, 77);
    let slow_rate = "fault_data_rate = 500000";
    let net = Devnet::start(&dir, 10, &[]);
    net.stop();
    edit_node_config(&dir, 4, "fault_data_rate = 0", slow_rate);
    let net = Devnet::start(&dir, 10, &[]);
    let slow = net.peer_of(4);
    let out = net.run(&["put", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("node too slow: share left out") && err.contains(&slow), "{err}");
    let cap = stdout(&out).trim().to_string();
    let counts = node_counts(&net);
    let shares_of = |i: usize| counts.iter().find(|c| c.0 == i).map_or(0, |c| c.1);
    assert_eq!(shares_of(4), 0, "{counts:?}");
    let out = net.run(&["check", &cap]);
    assert!(stdout(&out).contains("9 of 10 shares found"), "{}", stdout(&out));
    let back = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", back.to_str().unwrap()]);
    assert!(out.status.success() && same_file(&file, &back), "{}", stderr(&out));

    // Now the node holding data share 0 of a fresh file becomes slow: a get reads around it.
    net.stop();
    edit_node_config(&dir, 4, slow_rate, "fault_data_rate = 0");
    let net = Devnet::start(&dir, 10, &[]);
    let file2 = tmp.path().join("f2");
    random_file(&file2, 24 << 20, 78);
    let cap2 = put(&net, &file2);
    let out = net.run(&["check", &cap2]);
    let line = stdout(&out).lines().find(|l| l.trim_start().starts_with("share   0:")).unwrap().to_string();
    let holder = (0..10)
        .find(|&i| {
            let p = net.peer_of(i);
            line.ends_with(&p[p.len() - 6..])
        })
        .unwrap();
    let slow = net.peer_of(holder);
    net.stop();
    edit_node_config(&dir, holder, "fault_data_rate = 0", slow_rate);
    let net = Devnet::start(&dir, 10, &[]);
    let out = net.run(&["get", &cap2, "-o", back.to_str().unwrap()]);
    assert!(out.status.success() && same_file(&file2, &back), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("node too slow; reading another share in its place") && err.contains(&slow), "{err}");
}
