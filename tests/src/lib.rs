//! Test support shared by every blackbox test suite: the devnet harness that runs `blackbox devnet
//! up` and the CLI as real processes on 127.0.0.1, and seeded pseudo-random data.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use blackbox_util::Xorshift;

/// The `blackbox` binary the tests run: `$BLACKBOX_BIN`, or the workspace's own, built once per
/// test process (with the test-only `faults` feature) into the target directory of the tests.
pub fn bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("BLACKBOX_BIN") {
            return PathBuf::from(path);
        }
        // target/<profile>/deps/<test> -> target/<profile>/blackbox
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "blackbox-cli", "--bin", "blackbox", "--features", "faults"])
            .args(["--profile", &profile])
            .env("CARGO_TARGET_DIR", profile_dir.parent().expect("target directory"))
            .status()
            .expect("run cargo build for the blackbox binary");
        assert!(status.success(), "building the blackbox binary failed");
        profile_dir.join("blackbox")
    })
}

/// A running devnet: the supervisor process and its directory.
pub struct Devnet {
    pub dir: PathBuf,
    pub nodes: usize,
    child: Option<Child>,
}

impl Devnet {
    /// Starts `nodes` nodes under `dir` (reusing their data if present) and waits until ready.
    pub fn start(dir: &Path, nodes: usize, extra: &[&str]) -> Devnet {
        let mut child = Command::new(bin())
            .args(["devnet", "up", "--nodes", &nodes.to_string(), "--dir"])
            .arg(dir)
            .args(extra)
            .env_remove("BLACKBOX_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start devnet");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with("devnet ready") => break,
                Ok(_) => continue,
                Err(e) => panic!("devnet did not become ready: {e}"),
            }
        }
        Devnet { dir: dir.to_path_buf(), nodes, child: Some(child) }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{i:02}"))
    }

    pub fn node_pid(&self, i: usize) -> i32 {
        let text = std::fs::read_to_string(self.node_dir(i).join("node.pid")).expect("pid file");
        text.trim().parse().expect("pid")
    }

    /// Index of the node with this peer id (from its `node.info`).
    pub fn node_index(&self, peer: &str) -> usize {
        (0..self.nodes)
            .find(|&i| std::fs::read_to_string(self.node_dir(i).join("node.info")).is_ok_and(|t| t.contains(peer)))
            .unwrap_or_else(|| panic!("no node has peer id {peer}"))
    }

    /// kill -9 one node process.
    pub fn kill_node(&self, i: usize) {
        let pid = self.node_pid(i);
        let status = Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
        assert!(status.success());
        // Wait until the process is gone (the supervisor reaps it).
        for _ in 0..200 {
            if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("node {i} did not die");
    }

    /// Stops the devnet with SIGTERM and waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Runs the CLI with this devnet's client config.
    pub fn run(&self, args: &[&str]) -> Output {
        blackbox(Some(&self.config()), args)
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// Runs `blackbox` with an optional client config.
pub fn blackbox(config: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.env_remove("BLACKBOX_CONFIG");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(args).output().expect("run blackbox")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `len` pseudo-random bytes from `seed` (the same on every run).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    Xorshift::new(seed).bytes(len)
}

/// Writes `len` pseudo-random bytes (seeded) to `path`.
pub fn random_file(path: &Path, len: usize, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut rng = Xorshift::new(seed);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        rng.fill(&mut buf);
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).expect("write");
        left -= n;
    }
    f.flush().expect("flush");
}

/// Whether two files have identical contents.
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (std::fs::File::open(a).expect("open a"), std::fs::File::open(b).expect("open b"));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    use std::io::Read;
    loop {
        let na = fa.read(&mut ba).expect("read a");
        let mut nb = 0;
        while nb < na {
            let r = fb.read(&mut bb[nb..na]).expect("read b");
            if r == 0 {
                return false;
            }
            nb += r;
        }
        if na == 0 {
            return fb.read(&mut bb[..1]).expect("read b") == 0;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
    }
}

/// `put` a file and return its cap.
pub fn put(net: &Devnet, file: &Path) -> String {
    let out = net.run(&["put", file.to_str().expect("utf8 path")]);
    assert!(out.status.success(), "put failed: {}", stderr(&out));
    let cap = stdout(&out).trim().to_string();
    assert!(cap.starts_with("bb:chk:"), "unexpected put output {cap:?}");
    cap
}

/// (node index, shares, pending, used bytes) of every node that answers, from `nodes --json`.
pub fn node_counts(net: &Devnet) -> Vec<(usize, u64, u64, u64)> {
    let out = net.run(&["nodes", "--json"]);
    assert!(out.status.success(), "nodes failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| l.contains("\"shares\""))
        .map(|l| {
            let field = |name: &str| -> u64 {
                let at = l.find(&format!("\"{name}\":")).expect("field") + name.len() + 3;
                l[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().expect("number")
            };
            let at = l.find("\"peer\":\"").expect("peer") + 8;
            let peer: String = l[at..].chars().take_while(|c| *c != '"').collect();
            (net.node_index(&peer), field("shares"), field("pending"), field("used"))
        })
        .collect()
}

/// Starts `blackbox put FILE` in the background with output captured.
pub fn spawn_put(net: &Devnet, file: &Path) -> Child {
    Command::new(bin())
        .arg("--config")
        .arg(net.config())
        .arg("put")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn put")
}

/// Waits (up to ~10 s) until some node holds an upload in progress with bytes; returns its index.
pub fn wait_for_upload(net: &Devnet) -> Option<usize> {
    for _ in 0..400 {
        if let Some((i, ..)) = node_counts(net).iter().find(|(_, _, pending, used)| *pending > 0 && *used > 0) {
            return Some(*i);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

impl Devnet {
    /// Peer id of node `i` (from its `node.info`).
    pub fn peer_of(&self, i: usize) -> String {
        let info = std::fs::read_to_string(self.node_dir(i).join("node.info")).expect("node.info");
        let at = info.find("12D3KooW").expect("peer id in node.info");
        info[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect()
    }
}

/// Replaces `from` by `to` in the config of node `i` of the devnet in `dir` (stopped).
pub fn edit_node_config(dir: &Path, i: usize, from: &str, to: &str) {
    let path = dir.join(format!("node-{i:02}")).join("node.toml");
    let cfg = std::fs::read_to_string(&path).expect("node.toml");
    assert!(cfg.contains(from), "{from:?} not in {}:\n{cfg}", path.display());
    std::fs::write(&path, cfg.replace(from, to)).expect("write node.toml");
}

/// The line of a report that names the peer `peer` (by the last 6 characters CLI tables show).
pub fn line_of<'a>(report: &'a str, peer: &str) -> &'a str {
    let suffix = &peer[peer.len() - 6..];
    report.lines().find(|l| l.contains(suffix) && l.contains(" on ")).unwrap_or("")
}

/// One channel row of `node earnings`: stored byte-seconds, served bytes, earned, received.
pub type Row = (u128, u64, u64, u64);

/// The core-seconds and job fuel of the channel rows of a `node earnings` text, summed.
pub fn job_usage(earnings_text: &str) -> (u64, u64) {
    let rows = earnings_text.lines().filter(|l| l.contains(":0 ") || l.contains(":1 "));
    rows.map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[3].parse::<u64>().unwrap(), f[4].parse::<u64>().unwrap())
    })
    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Parses `node earnings`: the channel rows, the number of confirmed closes, and the text.
pub fn earnings(net: &Devnet, i: usize) -> (Vec<Row>, usize, String) {
    let cfg = net.node_dir(i).join("node.toml");
    let out = blackbox(None, &["--config", cfg.to_str().unwrap(), "node", "earnings"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows = text
        .lines()
        .filter(|l| l.contains(":0 ") || l.contains(":1 "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap(), f[5].parse().unwrap(), f[6].parse().unwrap())
        })
        .collect();
    let confirmed = text.matches("confirmed (").count();
    (rows, confirmed, text)
}

/// Satoshis node `i` says it received in commitments, over all its channels.
pub fn received(net: &Devnet, i: usize) -> u64 {
    let (_, _, text) = earnings(net, i);
    let line = text.lines().find(|l| l.starts_with("earned ")).unwrap_or_else(|| panic!("no totals in:\n{text}"));
    let at = line.find("received ").expect("received") + "received ".len();
    line[at..].split_whitespace().next().and_then(|n| n.parse().ok()).expect("number")
}
