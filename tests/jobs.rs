//! Jobs on a devnet (real node processes, payments on): a word count over a file in the grid, paid
//! to the satoshi; limits (fuel, memory, cores, RAM, the daily window) enforced; a verified run
//! catching a node that lies about its result; a node killed mid-job.

use std::process::{Command, Stdio};
use std::time::Duration;

use blackbox_tests::*;

const JOBS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../compute/jobs/");

fn job(name: &str) -> String {
    format!("{JOBS}{name}")
}

/// The columns of the wallet's row for `peer`: capacity, paid, owed, left, job fuel.
fn wallet_row(net: &Devnet, peer: &str) -> [u64; 5] {
    let text = stdout(&net.run(&["wallet"]));
    let suffix = &peer[peer.len() - 6..];
    let line = text.lines().find(|l| l.contains(suffix)).unwrap_or_else(|| panic!("no row for {peer}:\n{text}"));
    let f: Vec<u64> = line.split_whitespace().skip(1).take(5).map(|x| x.parse().unwrap()).collect();
    [f[0], f[1], f[2], f[3], f[4]]
}

/// The node's earnings row whose job fuel is not zero: (core-seconds, fuel, earned).
fn job_row(net: &Devnet, i: usize) -> Option<(u64, u64, u64)> {
    let (_, _, text) = earnings(net, i);
    text.lines().filter(|l| l.contains(":0 ") || l.contains(":1 ")).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let fuel: u64 = f[4].parse().unwrap();
        (fuel > 0).then(|| (f[3].parse().unwrap(), fuel, f[5].parse().unwrap()))
    })
}

#[test]
fn jobs_compute_are_limited_verified_and_paid_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let net = Devnet::start(&dir, 6, &["--block-secs", "0.5"]);
    // Node 3 lies about results and asks the lowest fuel price (so `auto` picks it); node 5 runs
    // jobs only in a daily window two hours from now.
    net.stop();
    let minute = (blackbox_util::now_secs() / 60 % 1440) as u32;
    let hm = |m: u32| format!("{:02}:{:02}", m / 60 % 24, m % 60);
    let window = format!("{}-{}", hm((minute + 120) % 1440), hm((minute + 180) % 1440));
    edit_node_config(&dir, 3, "fault_wrong_job_results = false", "fault_wrong_job_results = true");
    edit_node_config(&dir, 3, "fuel_sat_per_gfuel = 1000", "fuel_sat_per_gfuel = 500");
    edit_node_config(&dir, 5, "availability = \"always\"", &format!("availability = \"{window}\""));
    let net = Devnet::start(&dir, 6, &["--block-secs", "0.5"]);

    // A word count over a file in the grid, on node 0.
    let words = "the quick brown fox jumps over the lazy dog\n".repeat(20_000);
    let text = tmp.path().join("words.txt");
    std::fs::write(&text, &words).unwrap();
    let out = net.run(&["put", text.to_str().unwrap(), "/words.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let peer0 = net.peer_of(0);
    let wc = job("wordcount.wat");
    let out = net.run(&["job", "run", &wc, "--input", "/words.txt", "--arg", "words.txt", "--node", &peer0]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "180000\n");
    // The buyer's wallet and the node's books agree, to the satoshi and the fuel unit.
    let (cores, fuel, earned) = job_row(&net, 0).expect("node 0 billed the job's fuel");
    let row = wallet_row(&net, &peer0);
    assert_eq!((row[2], row[4]), (earned, fuel), "wallet {row:?} vs node ({cores} core-s, {fuel} fuel, {earned} sat)");
    assert!(stderr(&out).contains(&format!("fuel {fuel},")), "{}", stderr(&out));

    // An endless loop stops at exactly its fuel (more than the node's credit: it is paid as it
    // runs) and is billed exactly that.
    let peer1 = net.peer_of(1);
    let out = net.run(&["job", "run", &job("spin.wat"), "--node", &peer1, "--fuel", "3000000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("out of fuel"), "{}", stderr(&out));
    let (_, fuel, earned) = job_row(&net, 1).expect("node 1 billed");
    assert_eq!(fuel, 3_000_000_000);
    let row = wallet_row(&net, &peer1);
    assert_eq!((row[2], row[4]), (earned, 3_000_000_000), "wallet {row:?}");

    // A memory bomb stops at its memory limit.
    let out = net.run(&["job", "run", &job("membomb.wat"), "--node", &peer1, "--memory", "32MiB"]);
    assert!(stderr(&out).contains("memory limit reached"), "{}", stderr(&out));
    // Refused before starting: more cores or RAM than offered, outside the window.
    let out = net.run(&["job", "run", &wc, "--node", &peer1, "--cores", "3"]);
    assert!(!out.status.success() && stderr(&out).contains("asked 3 cores"), "{}", stderr(&out));
    let out = net.run(&["job", "run", &wc, "--node", &peer1, "--memory", "4GiB"]);
    assert!(!out.status.success() && stderr(&out).contains("bytes of memory"), "{}", stderr(&out));
    let out = net.run(&["job", "run", &wc, "--node", &net.peer_of(5)]);
    assert!(!out.status.success() && stderr(&out).contains("only between"), "{}", stderr(&out));
    assert!(job_row(&net, 5).is_none(), "a refused job costs nothing");

    // Verified: node 3 (cheapest, so picked) returns a wrong answer; a third replica decides.
    let out = net.run(&["job", "run", &wc, "--input", "/words.txt", "--arg", "words.txt", "--replicas", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "180000\n");
    let peer3 = net.peer_of(3);
    assert!(stderr(&out).contains(&format!("node {peer3} returned a different result")), "{}", stderr(&out));
    assert!(job_row(&net, 3).is_none(), "nothing paid for the wrong result");
    let rep = std::fs::read_to_string(dir.join("client-data/reputation.toml")).unwrap();
    let at = rep.find(&peer3).expect("node 3 in the reputation file");
    let bad: f64 = rep[at..].lines().find(|l| l.starts_with("bad = ")).unwrap()[6..].parse().unwrap();
    assert!(bad >= 1.0, "reputation lowered:\n{rep}");

    // kill -9 of the node mid-job: a clear error, and at most one slice paid beyond the node's
    // receipts (the poll in flight: never more than the node's credit of 2·10^9 fuel, 2,000 sat).
    let peer4 = net.peer_of(4);
    let child = Command::new(bin())
        .args(["--config", net.config().to_str().unwrap(), "job", "run", &job("spin.wat"), "--node", &peer4])
        .args(["--fuel", "1000000000000", "--timeout", "10m"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    net.kill_node(4);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped answering"), "{}", stderr(&out));
    let row = wallet_row(&net, &peer4);
    assert!(row[1] <= row[2] + 2_000 + 10, "paid {} for {} owed: more than a slice ahead", row[1], row[2]);
    net.stop();
}
