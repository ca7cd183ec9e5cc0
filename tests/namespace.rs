//! The namespace end to end: directories and paths through the CLI on real node processes, with
//! hostile nodes, killed nodes, a killed writer and racing writers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use blackbox_tests::*;

/// Runs the CLI and asserts it succeeded; returns stdout.
fn ok(net: &Devnet, args: &[&str]) -> String {
    let out = net.run(args);
    assert!(out.status.success(), "blackbox {args:?} failed:\n{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// Runs the CLI and asserts it failed; returns stderr.
fn fails(net: &Devnet, args: &[&str]) -> String {
    let out = net.run(args);
    assert!(!out.status.success(), "blackbox {args:?} should fail:\n{}", stdout(&out));
    stderr(&out)
}

fn names(listing: &str) -> Vec<&str> {
    listing.lines().collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn paths_round_trip_and_read_caps_only_read() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let (big, small) = (tmp.path().join("big.bin"), tmp.path().join("small.txt"));
    random_file(&big, 3 << 20, 1);
    std::fs::write(&small, b"hello, namespace\n").unwrap();

    ok(&net, &["mkdir", "/docs"]);
    let root_cap = net.dir.join("client-data").join("root.cap");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&root_cap).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(ok(&net, &["put", s(&small), "/docs/small.txt"]).starts_with("bb:lit:"), "small files are literal");
    assert!(ok(&net, &["put", s(&big), "/docs/"]).starts_with("bb:chk:"));
    let mut child = Command::new(bin())
        .args(["--config", s(&net.config()), "put", "-", "/docs/from stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&random_bytes(5000, 9)).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(names(&ok(&net, &["ls", "/docs"])), ["big.bin", "from stdin", "small.txt"]);
    assert_eq!(names(&ok(&net, &["ls"])), ["docs/"]);
    let long = ok(&net, &["ls", "-l", "/docs"]);
    assert!(
        long.lines().any(|l| l.starts_with("-rw-r--r--") && l.contains(" 3145728 ") && l.ends_with("big.bin")),
        "{long}"
    );
    let json = ok(&net, &["ls", "--json", "/docs"]);
    assert!(
        json.lines().any(|l| l.contains("\"name\":\"small.txt\"") && l.contains("\"content_type\":\"text/plain\"")),
        "{json}"
    );

    let back = tmp.path().join("back");
    ok(&net, &["get", "/docs/big.bin", "-o", s(&back)]);
    assert!(same_file(&big, &back));
    assert_eq!(ok(&net, &["get", "/docs/small.txt"]), "hello, namespace\n");
    assert_eq!(net.run(&["get", "/docs/from stdin"]).stdout, random_bytes(5000, 9));

    // Errors a user meets.
    assert!(fails(&net, &["get", "/docs/nope"]).contains("no such file or directory"));
    assert!(fails(&net, &["put", s(&small), "/docs/small.txt"]).contains("already exists"));
    ok(&net, &["put", "--force", s(&big), "/docs/small.txt"]);
    assert!(fails(&net, &["get", "/docs"]).contains("is a directory"));
    assert!(fails(&net, &["ls", "docs"]).contains("starts with /"));
    assert!(fails(&net, &["mkdir", "/docs"]).contains("already exists"));
    assert!(fails(&net, &["mkdir", "/x/y"]).contains("no such file"));

    // mv within a directory and across; mkdir -p; rm; ln; cap.
    ok(&net, &["mv", "/docs/small.txt", "/docs/renamed"]);
    ok(&net, &["mkdir", "-p", "/a/b/c"]);
    ok(&net, &["mkdir", "-p", "/a/b"]);
    ok(&net, &["mv", "/docs/renamed", "/a/b/"]);
    assert_eq!(names(&ok(&net, &["ls", "/a/b"])), ["c/", "renamed"]);
    assert!(fails(&net, &["mv", "/a", "/a/b/inside"]).contains("into itself"));
    assert!(fails(&net, &["put", s(tmp.path()), "/a/dir"]).contains("not a regular file"));
    ok(&net, &["mv", "/a/b/c", "/docs/c2"]);
    ok(&net, &["put", s(&small), "/docs/c2/inner"]);
    assert_eq!(ok(&net, &["get", "/docs/c2/inner"]), "hello, namespace\n");
    let cap = ok(&net, &["cap", "/docs/big.bin"]).trim().to_string();
    ok(&net, &["ln", &cap, "/a/linked"]);
    let back2 = tmp.path().join("back2");
    ok(&net, &["get", "/a/linked", "-o", s(&back2)]);
    assert!(same_file(&big, &back2));
    assert!(ok(&net, &["cap", "--verify", "/a/linked"]).starts_with("bb:chk-verify:"));
    assert!(fails(&net, &["rm", "/a"]).contains("not empty"));
    ok(&net, &["rm", "/a/linked"]);
    ok(&net, &["rm", "-r", "/a"]);
    assert_eq!(names(&ok(&net, &["ls"])), ["docs/"]);

    // A read cap lists and reads, and every write through it is refused by the client.
    let write = ok(&net, &["cap", "/docs"]).trim().to_string();
    let read = ok(&net, &["cap", "--read-only", "/docs"]).trim().to_string();
    assert!(write.starts_with("bb:slot-rw:") && read.starts_with("bb:slot-ro:"));
    assert!(ok(&net, &["ls", &read]).contains("big.bin"));
    assert_eq!(ok(&net, &["get", &format!("{read}/c2/inner")]), "hello, namespace\n");
    assert!(ok(&net, &["cap", &format!("{read}/c2")]).starts_with("bb:slot-ro:"), "no write cap below a read cap");
    for args in [
        vec!["put", s(&small), &format!("{read}/new")],
        vec!["mkdir", &format!("{read}/d")],
        vec!["rm", &format!("{read}/big.bin")],
        vec!["mv", &format!("{read}/big.bin"), &format!("{read}/b2")],
        vec!["put", s(&small), &format!("{read}/c2/new")],
    ] {
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        assert!(fails(&net, &args).contains("read-only"), "{args:?}");
    }
    // The write cap, from anywhere, writes.
    ok(&net, &["put", s(&small), &format!("{write}/via-cap")]);
    assert!(ok(&net, &["ls", "/docs"]).contains("via-cap"));
}

#[test]
fn racing_writers_both_land_and_one_name_has_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let file = tmp.path().join("f");
    random_file(&file, 4000, 3);
    ok(&net, &["mkdir", "/shared"]);
    let spawn = |dest: String| {
        Command::new(bin())
            .args(["--config", s(&net.config()), "put", s(&file), &dest])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Different names from six processes at once: all land.
    let children: Vec<_> = (0..6).map(|i| spawn(format!("/shared/n{i}"))).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(names(&ok(&net, &["ls", "/shared"])), ["n0", "n1", "n2", "n3", "n4", "n5"]);
    // One name from four processes: one winner, the others are told it exists.
    let children: Vec<_> = (0..4).map(|_| spawn("/shared/same".into())).collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let winners = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        winners,
        1,
        "{:?}",
        outs.iter().map(|o| String::from_utf8_lossy(&o.stderr).to_string()).collect::<Vec<_>>()
    );
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("already exists"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(names(&ok(&net, &["ls", "/shared"])).len(), 7);
}

#[test]
fn a_killed_writer_leaves_the_old_or_the_new_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let file = tmp.path().join("f");
    random_file(&file, 100_000, 4);
    ok(&net, &["mkdir", "/d"]);
    ok(&net, &["put", s(&file), "/d/base"]);
    for (i, delay_ms) in [5u64, 20, 40, 70, 100, 150, 250].into_iter().enumerate() {
        let mut writer = Command::new(bin())
            .args(["--config", s(&net.config()), "put", s(&file), &format!("/d/w{i}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = writer.kill(); // SIGKILL
        let _ = writer.wait();
        let listing = ok(&net, &["ls", "/d"]);
        assert!(listing.lines().any(|l| l == "base"), "lost an older entry:\n{listing}");
        assert!(listing.lines().all(|l| l == "base" || l.starts_with('w')), "{listing}");
    }
    // The directory still takes writes, and every entry listed reads back.
    ok(&net, &["put", s(&file), "/d/after"]);
    for name in names(&ok(&net, &["ls", "/d"])) {
        let out = tmp.path().join("out");
        ok(&net, &["get", &format!("/d/{name}"), "-o", s(&out)]);
        assert!(same_file(&file, &out), "{name}");
    }
}

#[test]
fn directories_survive_seven_of_ten_nodes_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let file = tmp.path().join("f");
    random_file(&file, 2 << 20, 5);
    ok(&net, &["mkdir", "-p", "/a/b"]);
    ok(&net, &["put", s(&file), "/a/b/f"]);
    for i in 0..5 {
        ok(&net, &["put", s(&file), &format!("/a/g{i}")]);
    }
    for i in [3, 9, 0, 6, 1, 8, 4] {
        net.kill_node(i);
    }
    assert_eq!(names(&ok(&net, &["ls", "/a"])), ["b/", "g0", "g1", "g2", "g3", "g4"]);
    let out = tmp.path().join("out");
    ok(&net, &["get", "/a/b/f", "-o", s(&out)]);
    assert!(same_file(&file, &out));
}

#[test]
fn a_stale_node_is_outvoted_and_a_forging_node_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    Devnet::start(&dir, 10, &[]).stop();
    edit_node_config(&dir, 2, "fault_stale_slots = false", "fault_stale_slots = true");
    edit_node_config(&dir, 6, "fault_corrupt_reads = false", "fault_corrupt_reads = true");
    let net = Devnet::start(&dir, 10, &[]);
    let file = tmp.path().join("f");
    random_file(&file, 50_000, 6);
    ok(&net, &["mkdir", "/d"]);
    for i in 0..6 {
        ok(&net, &["put", s(&file), &format!("/d/f{i}")]);
    }
    // Node 2 reports the first version of every slot share it saw, node 6 flips bytes in every
    // block it serves: readers still see the newest directory and correct files.
    assert_eq!(names(&ok(&net, &["ls", "/d"])), ["f0", "f1", "f2", "f3", "f4", "f5"]);
    let out = tmp.path().join("out");
    ok(&net, &["get", "/d/f5", "-o", s(&out)]);
    assert!(same_file(&file, &out));
    // Every share checked block by block (the first file was placed on every node, the forger
    // included): the forger's blocks are caught and recorded against it.
    let forger = net.peer_of(6);
    for i in 0..6 {
        let cap = ok(&net, &["cap", &format!("/d/f{i}")]).trim().to_string();
        let _ = net.run(&["check", "--verify", &cap]);
    }
    let nodes = ok(&net, &["nodes", "--json"]);
    let line = nodes.lines().find(|l| l.contains(&forger)).unwrap();
    let rep: f64 = line.split("\"reputation\":").nth(1).unwrap().split([',', '}']).next().unwrap().parse().unwrap();
    assert!(rep < 0.5, "the forging node kept its reputation: {line}");
}

#[test]
fn recursive_audit_and_repair_restore_full_health() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let net = Devnet::start(&dir, 10, &[]);
    let (file, page) = (tmp.path().join("f"), tmp.path().join("p"));
    random_file(&file, 1 << 20, 7);
    random_file(&page, 1000, 8);
    ok(&net, &["mkdir", "-p", "/a/b"]);
    ok(&net, &["put", s(&file), "/a/b/f"]);
    ok(&net, &["put", s(&file), "/top"]);
    // Enough entries (literal files of 1000 bytes) that /many is a tree of several nodes.
    ok(&net, &["mkdir", "/many"]);
    for i in 0..50 {
        ok(&net, &["put", s(&page), &format!("/many/entry-{i:03}")]);
    }
    let report = ok(&net, &["check", "--recursive", "/"]);
    let many = report.lines().find(|l| l.starts_with("/many: root")).unwrap();
    assert!(!many.contains("; 0 tree nodes"), "/many is one node: {report}");
    assert!(report.ends_with("6 of 6 objects healthy\n"), "{report}");
    net.stop();
    for i in [2, 7] {
        std::fs::remove_dir_all(dir.join(format!("node-{i:02}")).join("store")).unwrap();
    }
    let net = Devnet::start(&dir, 10, &[]);
    let out = net.run(&["audit", "--recursive", "/"]);
    assert!(!out.status.success(), "audit passed after two nodes lost everything:\n{}", stdout(&out));
    let report = ok(&net, &["repair", "--recursive", "/"]);
    assert!(report.ends_with("6 of 6 objects healthy\n"), "{report}");
    let report = ok(&net, &["audit", "--recursive", "/"]);
    assert!(report.ends_with("6 of 6 objects healthy\n"), "{report}");
    let report = ok(&net, &["check", "--recursive", "/"]);
    assert_eq!(report.matches("10 of 10 shares").count(), report.lines().count() - 1, "{report}");
    assert_eq!(names(&ok(&net, &["ls", "/many"])).len(), 50);
}

/// Peer id and listen addresses of devnet node `i`.
fn node(net: &Devnet, i: usize) -> (blackbox_net::PeerId, Vec<blackbox_net::Multiaddr>) {
    let info: toml::Value =
        toml::from_str(&std::fs::read_to_string(net.node_dir(i).join("node.info")).unwrap()).unwrap();
    let peer = info["peer_id"].as_str().unwrap().parse().unwrap();
    let addrs = info["addrs"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().parse().unwrap()).collect();
    (peer, addrs)
}

/// Someone holding only a directory's read cap forges new versions on the wire: a header signed
/// by another key, a replay of an old signed header, a header for another slot. Every node
/// refuses every one, and the directory is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_refuses_forged_slot_versions() {
    use blackbox_core::slot::SlotReadCap;
    use blackbox_core::{SignedSlotHeader, SlotHeader, SlotWriteCap};
    use blackbox_net::{ErrorCode, Libp2pTransport, Request, Response, Transport};

    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let file = tmp.path().join("f");
    random_file(&file, 3000, 2);
    ok(&net, &["mkdir", "/d"]);
    ok(&net, &["put", s(&file), "/d/one"]);
    ok(&net, &["put", s(&file), "/d/two"]);
    let read: SlotReadCap = ok(&net, &["cap", "--read-only", "/d"]).trim().parse().unwrap();
    let verify = read.verify_cap();
    let si = verify.storage_index();
    let attacker = Libp2pTransport::new(Duration::from_secs(20)).unwrap();
    let mut refused = 0;
    for i in 0..10 {
        let (peer, addrs) = node(&net, i);
        let ask = |req: Request| {
            let (t, addrs) = (attacker.clone(), addrs.clone());
            async move { t.request(peer, &addrs, req).await.unwrap() }
        };
        let Response::Slot(groups) = ask(Request::SlotRead { si }).await else { panic!("no slot answer") };
        for g in groups {
            let current = SignedSlotHeader::decode(&g.header).unwrap();
            let seq = current.header.sequence;
            let share = g.shares[0];
            let forged =
                SlotWriteCap { seed: [7; 32] }.sign(SlotHeader { sequence: seq + 1, ..current.header.clone() });
            let mut flipped = current.clone();
            flipped.header.sequence = seq + 1; // signature no longer matches
            let other_slot = SlotWriteCap { seed: [8; 32] };
            let attempts = [
                (forged.encode(), seq, verify.verifying_key),
                (flipped.encode(), seq, verify.verifying_key),
                (current.encode(), seq - 1, verify.verifying_key), // replay as a swap on an older version
                (
                    other_slot.sign(SlotHeader { sequence: seq + 1, ..current.header.clone() }).encode(),
                    seq,
                    other_slot.read_cap().verifying_key,
                ),
            ];
            for (header, replaces, verifying_key) in attempts {
                let req =
                    Request::SlotAllocate { si, share, verifying_key, header: header.into(), replaces, lease_secs: 0 };
                match ask(req).await {
                    Response::Error { code, .. } => {
                        assert_ne!(code, ErrorCode::Internal);
                        refused += 1;
                    }
                    other => panic!("node {i} accepted a forged version: {other:?}"),
                }
            }
        }
    }
    assert_eq!(refused, 40, "four forgeries refused by each of ten nodes");
    assert_eq!(names(&ok(&net, &["ls", "/d"])), ["one", "two"]);
    ok(&net, &["put", s(&file), "/d/three"]);
    assert_eq!(names(&ok(&net, &["ls", "/d"])), ["one", "three", "two"]);
}

/// The auditor looks after the whole namespace, not only the watch list: after four nodes lose
/// everything, one pass repairs every file and directory reachable from the root.
#[test]
fn the_auditor_repairs_everything_reachable_from_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let net = Devnet::start(&dir, 10, &[]);
    let file = tmp.path().join("f");
    random_file(&file, 300_000, 12);
    ok(&net, &["mkdir", "-p", "/a/b"]);
    ok(&net, &["put", s(&file), "/a/b/f"]);
    net.stop();
    for i in [1, 4, 5, 8] {
        std::fs::remove_dir_all(dir.join(format!("node-{i:02}")).join("store")).unwrap();
    }
    let net = Devnet::start(&dir, 10, &[]);
    let pass = ok(&net, &["auditor", "run", "--once"]);
    for path in ["/ (root)", "/a (root)", "/a/b (root)", "/a/b/f"] {
        let line =
            pass.lines().find(|l| l.starts_with(&format!("{path}:"))).unwrap_or_else(|| panic!("{path}:\n{pass}"));
        assert!(line.contains("6/10 shares healthy") && line.contains("repairing"), "{line}\n{pass}");
    }
    assert!(pass.contains("4 objects fully healthy"), "{pass}");
    let report = ok(&net, &["check", "--recursive", "/"]);
    assert!(report.ends_with("4 of 4 objects healthy\n"), "{report}");
}
