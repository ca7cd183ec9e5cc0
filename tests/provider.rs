//! A provider's life on a devnet, as its operator sees it: `node init` on a fresh directory,
//! `node run`, a put that pays it, the dashboard read in headless Chromium and compared with
//! `node earnings --json`, the API's token checks, `node economics` against a hand calculation,
//! and `node withdraw` of the settled earnings to the client's wallet.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blackbox_tests::*;
use serde_json::Value;

/// A GET to the dashboard (`host:port`), with an optional bearer token: status and body.
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the dashboard");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn node(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["node"];
    all.extend_from_slice(&args[..1]);
    all.extend_from_slice(&["--dir", dir.to_str().unwrap()]);
    all.extend_from_slice(&args[1..]);
    blackbox(None, &all)
}

/// Starts `node run --dir DIR` and returns it with the dashboard URL from its summary.
fn run_node(dir: &Path) -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["node", "run", "--dir", dir.to_str().unwrap()])
        .env_remove("BLACKBOX_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node run");
    // Read to the end on a thread: the node keeps printing, and a closed pipe would stop it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut url = None;
    while url.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("the node prints its summary");
        url = line.trim().strip_prefix("dashboard").and_then(|r| r.split_whitespace().next()).map(str::to_string);
    }
    (child, url.expect("the summary names the dashboard"))
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[test]
fn provider_init_run_dashboard_and_withdraw() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 5, &["--channel-blocks", "40", "--block-secs", "0.5"]);
    let wallet_addr = stdout(&net.run(&["wallet", "--address"])).trim().to_string();
    assert!(wallet_addr.starts_with("bcrt1"), "{wallet_addr}");
    let info = std::fs::read_to_string(net.node_dir(0).join("node.info")).unwrap();
    let addr0 = info.lines().find(|l| l.starts_with("addrs")).unwrap().split('"').nth(1).unwrap().to_string();
    let bootstrap = format!("{addr0}/p2p/{}", net.peer_of(0));
    let chain = net.dir.join("chain/rpc.toml");

    // Set-up in one command; secrets owner-only; a second init refuses to overwrite.
    let dir = tmp.path().join("provider");
    let d = dir.to_str().unwrap();
    let out = blackbox(
        None,
        &[
            "node",
            "init",
            "--dir",
            d,
            "--storage",
            "1GiB",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--dashboard",
            "127.0.0.1:0",
            "--bootstrap",
            &bootstrap,
            "--chain",
            chain.to_str().unwrap(),
            "--payout",
            &wallet_addr,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("next: blackbox node run --config {d}/node.toml")), "{}", stdout(&out));
    for f in ["node.toml", "identity.key", "payment.key", "dashboard.token"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let again = blackbox(None, &["node", "init", "--dir", d]);
    assert!(!again.status.success() && stderr(&again).contains("exists already"), "{}", stderr(&again));
    let bad = blackbox(None, &["node", "init", "--dir", &format!("{d}-2"), "--payout", "not-an-address"]);
    assert!(!bad.status.success() && stderr(&bad).contains("--payout"), "{}", stderr(&bad));

    // The operator edits the commented config: devnet prices, close everything at shutdown.
    let toml_path = dir.join("node.toml");
    let text = std::fs::read_to_string(&toml_path).unwrap();
    assert!(text.contains("# Price: satoshis per GB (10^9 bytes) stored per 30 days."), "{text}");
    let text = text
        .replace("storage_sat_per_gb_month = 100\n", "storage_sat_per_gb_month = 1000000\n")
        .replace("egress_sat_per_gb = 10\n", "egress_sat_per_gb = 1000000\n")
        .replace("close_all_on_shutdown = false", "close_all_on_shutdown = true");
    std::fs::write(&toml_path, text).unwrap();

    let (mut child, url) = run_node(&dir);
    let host = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    assert!(host.starts_with("127.0.0.1:"), "{url}");
    let token = std::fs::read_to_string(dir.join("dashboard.token")).unwrap().trim().to_string();
    let node_info = std::fs::read_to_string(dir.join("node.info")).unwrap();
    assert!(node_info.contains(&format!("dashboard = \"{url}\"")), "{node_info}");

    // The API and /metrics refuse requests without the token.
    assert_eq!(get(&host, "/api/v1/status", None).0, 401);
    assert_eq!(get(&host, "/metrics", None).0, 401);
    assert_eq!(get(&host, "/api/v1/status", Some("0123456789abcdef0123456789abcdef")).0, 401);
    assert_eq!(get(&host, "/", None).0, 200, "the page itself carries no data");

    // A put over six nodes (the five and this one) pays it for one share.
    let client = std::fs::read_to_string(net.config()).unwrap();
    std::fs::write(net.config(), client.replace("total = 5", "total = 6")).unwrap();
    let file = tmp.path().join("f");
    random_file(&file, 3 << 20, 5);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let out = net.run(&["put", file.to_str().unwrap()]);
        let (code, body) = get(&host, "/api/v1/status", Some(&token));
        assert_eq!(code, 200, "{body}");
        let s: Value = serde_json::from_str(&body).unwrap();
        if s["storage"]["shares"].as_u64() > Some(0) {
            break s;
        }
        assert!(Instant::now() < deadline, "no share reached the new node: {}", stderr(&out));
        std::thread::sleep(Duration::from_secs(2));
    };
    std::thread::sleep(Duration::from_secs(3));
    let earned = json_of(&node(&dir, &["earnings", "--json"]));
    assert!(earned["earned_sat"].as_u64().unwrap() > 546, "{earned}");
    assert!(status["storage"]["used"].as_u64().unwrap() > 1 << 20, "{status}");

    // The page, in headless Chromium: logs in, reads the figures, shows the same as the CLI.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/dashboard.mjs");
    let shot = tmp.path().join("dashboard.png");
    let out = Command::new("node").arg(script).arg(&url).arg(&token).arg(&shot).output().expect("node (Node.js)");
    let page = json_of(&out);
    let (_, body) = get(&host, "/api/v1/status", Some(&token));
    let api: Value = serde_json::from_str(&body).unwrap();
    for key in ["earned_sat", "received_sat", "settled_sat"] {
        assert_eq!(page[key], earned[key], "{key}: page {page} vs node earnings {earned}");
    }
    assert_eq!(page["storage_used"], api["storage"]["used"], "{page} vs {api}");
    assert_eq!(page["storage_offered"].as_u64(), Some(1 << 30), "{page}");
    assert_eq!(page["channels_open"].as_u64(), Some(1), "{page}");
    let today = &api["earnings"]["per_day"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["sat"], earned["received_sat"], "today's bar is what was received today: {api}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a screenshot was saved");
    let _ = std::fs::copy(&shot, std::env::temp_dir().join("blackbox-dashboard.png"));
    let (code, metrics) = get(&host, "/metrics", Some(&token));
    assert_eq!(code, 200);
    let used = api["storage"]["used"].as_u64().unwrap();
    assert!(metrics.contains(&format!("\nblackbox_storage_used_bytes {used}\n")), "{metrics}");
    assert!(metrics.contains(&format!("\nblackbox_earned_sat {}\n", earned["earned_sat"])), "{metrics}");

    // Withdraw: the shutdown closes the channel; once confirmed, the settled sats go to the wallet.
    terminate(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let settled = loop {
        let e = json_of(&node(&dir, &["earnings", "--json"]));
        if let Some(s) = e["settled_sat"].as_u64().filter(|s| *s > 0) {
            break s;
        }
        assert!(Instant::now() < deadline, "the close never confirmed: {e}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let mainnet = node(&dir, &["withdraw", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"]);
    assert!(stderr(&mainnet).contains("not an address of the regtest network"), "{}", stderr(&mainnet));
    let out = node(&dir, &["withdraw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let words: Vec<&str> = text.split_whitespace().collect();
    let (sent, txid): (u64, bitcoin::Txid) = (words[1].parse().unwrap(), words[4].parse().unwrap());
    assert!(text.contains(&format!("balance was {settled} sat")), "{text}");
    assert!(sent > 0 && sent < settled, "{text}");
    // On chain: the wallet's address holds the withdrawal's output once it is mined.
    let rpc: blackbox_chain::RpcConfig = toml::from_str(&std::fs::read_to_string(&chain).unwrap()).unwrap();
    let rpc = blackbox_chain::BitcoindRpc::new(rpc).unwrap();
    let to: bitcoin::Address<bitcoin::address::NetworkUnchecked> = wallet_addr.parse().unwrap();
    let script = to.assume_checked().script_pubkey();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        use blackbox_chain::Chain;
        let coins = rpc.unspent(&script).unwrap();
        if coins.iter().any(|u| u.outpoint.txid == txid && u.txout.value.to_sat() == sent) {
            break;
        }
        assert!(Instant::now() < deadline, "the withdrawal {txid} of {sent} sat never reached the wallet");
        std::thread::sleep(Duration::from_millis(500));
    }
    let empty = node(&dir, &["withdraw"]);
    assert!(!empty.status.success() && stderr(&empty).contains("nothing to sweep"), "{}", stderr(&empty));
}

#[test]
fn economics_matches_a_hand_calculation() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let out = blackbox(None, &["node", "init", "--dir", d, "--storage", "1GiB", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut text = std::fs::read_to_string(tmp.path().join("node.toml")).unwrap();
    text = text.replace("cpu_sat_per_core_hour = 0\n", "cpu_sat_per_core_hour = 30\n");
    text.push_str(
        "\n[power]\nwatts_idle = 40.0\nwatts_per_core = 15.0\nwatts_per_tb = 8.0\nwh_per_gb_egress = 4.0\n\
         local_price_per_kwh = 0.2\nsat_per_local_unit = 1000.0\nmargin = 1.25\nfuel_per_core_sec = 0.0\n\
         [[power.tariff]]\nhours = \"18:00-22:00\"\nlocal_price_per_kwh = 2.0\n",
    );
    std::fs::write(tmp.path().join("node.toml"), text).unwrap();
    // By hand: 200 sat/kWh base, 2,000 from 18:00 to 22:00; daily average (20 h × 200 + 4 h × 2,000) / 24.
    let avg = (20.0 * 200.0 + 4.0 * 2000.0) / 24.0;
    // CPU: 15 W for an hour = 0.015 kWh: 3 sat at 200, 30 sat at 2,000; sold at 30 sat if ≥ cost × 1.25.
    for (at, cost, sold) in [("17:59", 3.0, true), ("19:00", 30.0, false), ("22:00", 3.0, true)] {
        let e = json_of(&node(tmp.path(), &["economics", "--json", "--at", at]));
        let cpu = &e["lines"][0];
        assert_eq!(cpu["resource"], "cpu");
        assert!((cpu["cost_sat"].as_f64().unwrap() - cost).abs() < 1e-9, "{at}: {e}");
        assert_eq!(cpu["offered"].as_bool(), Some(sold), "{at}: {e}");
        assert!((e["daily_average_sat_per_kwh"].as_f64().unwrap() - avg).abs() < 1e-9, "{e}");
        // Storage: 8 W per TB → 0.008 W per GB × 720 h = 0.00576 kWh per GB-month at the average.
        let storage = &e["lines"][1];
        assert!((storage["cost_sat"].as_f64().unwrap() - 0.00576 * avg).abs() < 1e-9, "{e}");
        // Egress: 4 Wh per GB = 0.004 kWh at the average.
        assert!((e["lines"][2]["cost_sat"].as_f64().unwrap() - 0.004 * avg).abs() < 1e-9, "{e}");
    }
    let e = json_of(&node(tmp.path(), &["economics", "--json"]));
    let sched: Vec<(String, bool)> = e["cpu_schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (format!("{}-{}", p["from"].as_str().unwrap(), p["to"].as_str().unwrap()), p["cpu"].as_bool().unwrap())
        })
        .collect();
    let want = [("00:00-18:00", true), ("18:00-22:00", false), ("22:00-24:00", true)];
    assert_eq!(sched, want.map(|(a, b)| (a.to_string(), b)));
    let shown = stdout(&node(tmp.path(), &["economics", "--at", "19:00"]));
    assert!(
        shown.contains("cpu: 15 W per busy core × 1 h = 0.015000 kWh × 2000.000 sat/kWh = 30.000 sat per core-hour"),
        "{shown}"
    );
    assert!(
        shown.contains("NOT SOLD") && shown.contains("cpu by hour (UTC): 00:00-18:00 sold, 18:00-22:00 withdrawn"),
        "{shown}"
    );
    // A dashboard told to listen beyond loopback says so loudly, in the summary and the API.
    let open = tempfile::tempdir().unwrap();
    let o = open.path().to_str().unwrap();
    let out = blackbox(
        None,
        &[
            "node",
            "init",
            "--dir",
            o,
            "--storage",
            "1GiB",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--dashboard",
            "0.0.0.0:0",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut child = Command::new(bin())
        .args(["node", "run", "--dir", o])
        .env_remove("BLACKBOX_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut summary = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        summary.push_str(&line);
        summary.push('\n');
        if line.starts_with("warning: the dashboard listens") {
            break;
        }
    }
    terminate(&mut child);
    assert!(summary.contains("THE DASHBOARD IS REACHABLE FROM OTHER MACHINES"), "{summary}");
    assert!(summary.contains("warning: the dashboard listens on 0.0.0.0:"), "{summary}");
    // A config without [power] says so.
    let other = tempfile::tempdir().unwrap();
    let out = blackbox(None, &["node", "init", "--dir", other.path().to_str().unwrap(), "--storage", "1GiB"]);
    assert!(out.status.success());
    assert!(stderr(&node(other.path(), &["economics"])).contains("no [power] section"));
}
