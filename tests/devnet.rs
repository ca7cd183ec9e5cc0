//! Acceptance of the foundation: real node processes on 127.0.0.1 driven through the CLI.

use blackbox_tests::*;

/// Put 200 MiB, kill -9 seven nodes, read it back; an eighth kill makes it unrecoverable.
#[test]
fn survives_seven_of_ten_nodes_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let file = tmp.path().join("big");
    random_file(&file, 200 << 20, 7);
    let cap = put(&net, &file);

    // Kill seven, in a scrambled order that includes nodes holding data shares.
    for i in [3, 9, 0, 6, 1, 8, 4] {
        net.kill_node(i);
    }
    let out_path = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", out_path.to_str().unwrap()]);
    assert!(out.status.success(), "get after 7 kills failed: {}", stderr(&out));
    assert!(same_file(&file, &out_path), "downloaded bytes differ");

    net.kill_node(2);
    let failed = tmp.path().join("never");
    let out = net.run(&["get", &cap, "-o", failed.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("found 2") && err.contains("need 3"), "unclear error: {err}");
    assert_eq!(err.trim().lines().count(), 1, "error is not one line: {err}");
    assert!(!failed.exists(), "a failed get left a file behind");
    let out = net.run(&["check", &cap]);
    assert!(!out.status.success(), "check says recoverable with 2 of 3 shares");
}

/// Bytes overwritten inside one node's stored data are detected; the download still succeeds.
#[test]
fn corrupted_node_storage_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let file = tmp.path().join("f");
    random_file(&file, 24 << 20, 11);
    let net = Devnet::start(&dir, 10, &[]);
    let cap = put(&net, &file);
    let victim = net.node_dir(5);
    net.stop(); // clean stop flushes every node's data into its files

    // Overwrite bytes in the middle of every share file of node 5.
    let mut hit = 0;
    let mut stack = vec![victim.join("store").join("shares")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let len = std::fs::metadata(&path).unwrap().len();
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            use std::io::{Seek, SeekFrom, Write};
            for at in [len / 3, len / 2, 2 * len / 3] {
                f.seek(SeekFrom::Start(at)).unwrap();
                f.write_all(&[0xA5; 64]).unwrap();
            }
            hit += 1;
        }
    }
    assert_eq!(hit, 1, "node 5 should hold exactly one share file");

    let net = Devnet::start(&dir, 10, &[]);
    let out_path = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", out_path.to_str().unwrap()]);
    assert!(out.status.success(), "get failed: {}", stderr(&out));
    assert!(same_file(&file, &out_path));
    let out = net.run(&["check", "--verify", &cap]);
    assert!(out.status.success(), "check --verify failed: {}", stderr(&out));
    let report = stdout(&out);
    assert_eq!(report.matches("BAD").count(), 1, "expected exactly one bad share:\n{report}");
}

/// A client killed mid-upload leaves no partial share on any node; a new upload then succeeds.
#[test]
fn killed_upload_leaves_nothing_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let file = tmp.path().join("f");
    random_file(&file, 200 << 20, 13);
    let net = Devnet::start(&dir, 10, &[]);
    let mut put_proc = spawn_put(&net, &file);
    // Wait until nodes are receiving blocks, then kill the client.
    assert!(wait_for_upload(&net).is_some(), "upload never started");
    put_proc.kill().unwrap();
    let _ = put_proc.wait();
    net.stop();

    let net = Devnet::start(&dir, 10, &[]);
    let counts = node_counts(&net);
    assert_eq!(counts.len(), 10, "not every node answered: {counts:?}");
    for (i, shares, pending, used) in counts {
        assert_eq!((shares, pending, used), (0, 0, 0), "node {i} kept part of the killed upload");
    }
    let cap = put(&net, &file);
    let out_path = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", out_path.to_str().unwrap()]);
    assert!(out.status.success(), "get failed: {}", stderr(&out));
    assert!(same_file(&file, &out_path));
}

/// Bad input and a full grid each give one clear line and a non-zero exit, never a panic.
#[test]
fn bad_input_gives_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["get", "bb:chk:nonsense"], "invalid read capability"),
        (vec!["check", "hello"], "invalid capability"),
        (vec!["put", "--frobnicate", "x"], "unexpected argument"),
        (vec!["put", "/etc/hostname"], "no client config"),
    ];
    for (args, want) in cases {
        let out = blackbox(None, &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(!err.contains("panicked"));
    }
    let missing = tmp.path().join("missing.toml");
    let out = blackbox(Some(&missing), &["nodes"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read config"), "{}", stderr(&out));

    // A grid of full nodes refuses the upload with a clear reason.
    let net = Devnet::start(&tmp.path().join("net"), 3, &["--quota", "64KiB"]);
    let file = tmp.path().join("f");
    random_file(&file, 1 << 20, 3);
    let out = net.run(&["put", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("node full"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    // A range outside the file is refused before any transfer.
    let small = tmp.path().join("s");
    random_file(&small, 1000, 5);
    let cap = put(&net, &small);
    let out = net.run(&["get", &cap, "--offset", "2000"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("outside the file"), "{}", stderr(&out));
    let out = net.run(&["get", &cap, "--offset", "100", "--length", "10"]);
    assert!(out.status.success());
    let mut want = vec![0u8; 1000];
    want.copy_from_slice(&std::fs::read(&small).unwrap());
    assert_eq!(out.stdout, want[100..110]);
}

/// A node killed (-9) in the middle of an upload: the client places its share elsewhere.
#[test]
fn upload_fails_over_when_a_node_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 11, &[]);
    let file = tmp.path().join("f");
    random_file(&file, 200 << 20, 17);
    let put_proc = spawn_put(&net, &file);
    // Kill the first node seen receiving blocks.
    let victim = wait_for_upload(&net).expect("upload never started");
    net.kill_node(victim);
    let out = put_proc.wait_with_output().unwrap();
    assert!(out.status.success(), "put failed after a node died: {}", stderr(&out));
    let cap = stdout(&out).trim().to_string();
    let report = net.run(&["check", &cap]);
    assert!(report.status.success());
    assert!(stdout(&report).contains("10 of 10 shares found"), "{}", stdout(&report));
    let back = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", back.to_str().unwrap()]);
    assert!(out.status.success(), "get failed: {}", stderr(&out));
    assert!(same_file(&file, &back));
}

/// Parses `put --explain` rows into (peer prefix, price, shares placed).
fn explain_rows(stderr: &str) -> Vec<(String, u64, bool)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("12D3KooW"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[2].parse().expect("price"), cols.last() != Some(&"-"))
        })
        .collect()
}

/// Discovery through one bootstrap node, cheapest-first placement, and dead nodes avoided.
#[test]
fn discovery_and_price_ranked_placement() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 12, &["--price-spread", "4"]);
    let config = std::fs::read_to_string(net.config()).unwrap();
    assert!(config.contains("bootstrap") && !config.contains("[[nodes]]"), "client config: {config}");
    let listed = net.run(&["nodes", "--json"]);
    let up = stdout(&listed).lines().filter(|l| l.contains("\"up\":true") && l.contains("storage_sat")).count();
    assert_eq!(up, 12, "{}", stdout(&listed));

    let file = tmp.path().join("f");
    random_file(&file, 3 << 20, 21);
    let out = net.run(&["put", "--explain", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = explain_rows(&stderr(&out));
    assert_eq!(rows.len(), 12, "{}", stderr(&out));
    let max_used = rows.iter().filter(|r| r.2).map(|r| r.1).max().unwrap();
    let min_unused = rows.iter().filter(|r| !r.2).map(|r| r.1).min().unwrap();
    assert!(max_used < min_unused, "a dearer node got a share before a cheaper one: {rows:?}");

    // Kill the two cheapest nodes: they drop out and new puts avoid them.
    let cheapest: Vec<usize> = vec![0, 1];
    for &i in &cheapest {
        net.kill_node(i);
    }
    let listed = net.run(&["nodes", "--json"]);
    let up = stdout(&listed).lines().filter(|l| l.contains("\"up\":true")).count();
    assert_eq!(up, 10, "{}", stdout(&listed));
    let out = net.run(&["put", "--explain", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = explain_rows(&stderr(&out));
    assert_eq!(rows.len(), 10, "dead nodes are still candidates: {}", stderr(&out));
    assert!(rows.iter().all(|r| r.2), "every live node should hold a share: {rows:?}");
}

/// A node made to corrupt what it serves (test-only fault flag) is caught, demoted in the client's
/// reputation store, and gets no share of the next upload.
#[test]
fn corrupting_node_is_demoted_and_avoided() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let file = tmp.path().join("f");
    random_file(&file, 2 << 20, 23);
    // Ten nodes for ten shares: the node made to lie holds one.
    let net = Devnet::start(&dir, 10, &[]);
    let cap = put(&net, &file);
    let liar_dir = net.node_dir(4);
    let liar_peer = {
        let info = std::fs::read_to_string(liar_dir.join("node.info")).unwrap();
        let at = info.find("12D3KooW").unwrap();
        info[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>()
    };
    net.stop();
    let cfg_path = liar_dir.join("node.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    assert!(cfg.contains("fault_corrupt_reads = false"), "{cfg}");
    std::fs::write(&cfg_path, cfg.replace("fault_corrupt_reads = false", "fault_corrupt_reads = true")).unwrap();

    let net = Devnet::start(&dir, 10, &[]);
    let out = net.run(&["check", "--verify", &cap]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    let suffix = &liar_peer[liar_peer.len() - 6..];
    let liar_line = report.lines().find(|l| l.contains(suffix) && l.contains(" on ")).unwrap_or_default();
    assert!(liar_line.contains("BAD (corrupt)"), "{report}");
    let reputation = std::fs::read_to_string(dir.join("client-data").join("reputation.toml")).unwrap();
    assert!(reputation.contains(&liar_peer), "{reputation}");

    let out = net.run(&["put", "--explain", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let explained = stderr(&out);
    assert!(!explained.contains(suffix), "the demoted node is still a candidate:\n{explained}");
    assert_eq!(explain_rows(&explained).len(), 9, "{explained}");
}

/// Stopping a devnet right after it says ready stops every node (no orphan keeps a store locked).
#[test]
fn stop_right_after_ready_leaves_no_node_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    for _ in 0..3 {
        Devnet::start(&dir, 3, &[]).stop();
        let needle = dir.to_string_lossy().to_string();
        let alive: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("node run") && c.contains(&needle))
            .collect();
        assert!(alive.is_empty(), "nodes outlived their devnet: {alive:?}");
    }
}

/// `devnet up --netns` (root): every node in a network namespace of its own, 3 nodes per /24 on a
/// private bridge with shaped links. A 3-of-4 file's shares land in four distinct /24s (the
/// network-group rule on real addresses, no declared regions), the file reads back, and the
/// namespaces and the bridge are gone once the devnet stops.
#[test]
fn netns_devnet_spreads_shares_over_subnets() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("netns_devnet_spreads_shares_over_subnets needs root: not run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let args = ["--netns", "--per-subnet", "3", "--node-rate", "400mbit", "--no-payments"];
    let net = Devnet::start(&dir, 12, &args);
    let client = dir.join("client.toml");
    let text = std::fs::read_to_string(&client).unwrap();
    let text = text.replace("total = 10", "total = 4").replace("happy = 7", "happy = 4");
    std::fs::write(&client, text).unwrap();
    let info = std::fs::read_to_string(net.node_dir(4).join("node.info")).unwrap();
    assert!(info.contains("/ip4/198.18.2.3/tcp/"), "{info}");

    let file = tmp.path().join("f");
    random_file(&file, 6 << 20, 9);
    let cap = put(&net, &file);
    let out = net.run(&["check", &cap]);
    let report = stdout(&out);
    assert!(report.contains("4 of 4 shares found"), "{report}");
    let subnets: std::collections::HashSet<usize> = report
        .lines()
        .filter(|l| l.trim_start().starts_with("share "))
        .map(|l| {
            let i = (0..12).find(|&i| l.ends_with(&net.peer_of(i)[46..])).expect("holder is a devnet node");
            i / 3
        })
        .collect();
    assert_eq!(subnets.len(), 4, "shares share a /24:\n{report}");
    let back = tmp.path().join("back");
    let out = net.run(&["get", &cap, "-o", back.to_str().unwrap()]);
    assert!(out.status.success() && same_file(&file, &back), "{}", stderr(&out));

    net.stop();
    let left = std::process::Command::new("ip").args(["-o", "addr", "show", "to", "198.18.0.1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "bridge left behind");
    let namespaces = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("bb")).count())
        .unwrap_or(0);
    assert_eq!(namespaces, 0, "network namespaces left behind");
}
