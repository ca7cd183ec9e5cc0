//! `blackbox bench s3`: the S3 gateway against the CLI on one fresh devnet. A large file with
//! `aws s3 cp` (multipart, default settings) up and down beside `blackbox put`/`get` of the same
//! file, the gateway's peak RSS, and 1,000 objects of 4 KiB with 16 parallel clients.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use blackbox_util::ByteSize;

use crate::e2e::{files_equal, run_measured, start_devnet, stop_devnet, vm_hwm_kib, E2eConfig, E2eError};

/// What to run.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The `blackbox` executable.
    pub exe: PathBuf,
    /// Nodes in the devnet.
    pub nodes: usize,
    /// Size of the large file.
    pub size: u64,
    /// The Python virtualenv with awscli and boto3 (`scripts/setup.sh` makes `.venv`).
    pub venv: PathBuf,
    /// The directory of `tests/s3` (its `bench.py` drives the small-object run).
    pub suite: PathBuf,
    /// Rounds of the large-file transfers (CLI and gateway alternate; medians are reported).
    pub rounds: usize,
}

/// One transfer: wall seconds and CPU seconds of every process involved (client, gateway, nodes).
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Wall seconds.
    pub secs: f64,
    /// User + system CPU seconds of the client, the gateway (if any) and the nodes.
    pub cpu_secs: f64,
}

/// The median of each transfer over the rounds.
#[derive(Debug, Clone)]
pub struct S3Report {
    /// What ran.
    pub cfg: S3Config,
    /// `blackbox put` and `get`.
    pub cli: (Transfer, Transfer),
    /// `aws s3 cp` up and down.
    pub aws: (Transfer, Transfer),
    /// The gateway's peak RSS, KiB.
    pub gateway_rss_kib: Option<u64>,
    /// What `bench.py` printed (objects/s for PUT, GET, LIST).
    pub small: String,
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(exe: &Path, net: &Path) -> Result<(Gateway, String), E2eError> {
    let mut child = Command::new(exe)
        .args(["gateway", "--config"])
        .arg(net.join("gateway.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child.stdout.take().ok_or(E2eError::Devnet)?;
    let gateway = Gateway(child);
    let line = BufReader::new(out).lines().next().ok_or(E2eError::Devnet)??;
    let endpoint = line.rsplit(' ').next().unwrap_or_default().to_string();
    Ok((gateway, endpoint))
}

/// The first key pair of the devnet's gateway config.
fn key_pair(net: &Path) -> Result<(String, String), E2eError> {
    let cfg = blackbox_gateway::GatewayConfig::load(&net.join("gateway.toml"))
        .map_err(|e| E2eError::Client(e.to_string()))?;
    let k = cfg.keys.first().ok_or_else(|| E2eError::Client("gateway.toml has no key".into()))?;
    Ok((k.access_key_id.clone(), k.secret_access_key.clone()))
}

/// Runs the benchmark on a fresh devnet.
pub fn run(cfg: &S3Config) -> Result<S3Report, E2eError> {
    let dir = std::env::temp_dir().join(format!("blackbox-bench-s3-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let net = dir.join("net");
    let e2e = E2eConfig::devnet(cfg.exe.clone(), cfg.nodes, true);
    let devnet = start_devnet(&e2e, &net)?;
    let result = measure(cfg, &dir, &net, devnet.id());
    stop_devnet(devnet);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs `cmd`, counting its CPU and that of the devnet (and the gateway, when given).
fn transfer(cmd: &mut Command, devnet: u32, gateway: Option<u32>) -> Result<(Transfer, String), E2eError> {
    let others = || crate::cpu::of_tree(devnet).total() + gateway.map_or(0.0, |g| crate::cpu::of_tree(g).total());
    let before = others();
    let m = run_measured(cmd)?;
    let cpu_secs = m.cpu.total() + others() - before;
    Ok((Transfer { secs: m.secs, cpu_secs }, m.stdout))
}

fn median(mut v: Vec<Transfer>) -> Transfer {
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    v[v.len() / 2]
}

fn measure(cfg: &S3Config, dir: &Path, net: &Path, devnet: u32) -> Result<S3Report, E2eError> {
    let (file, back) = (dir.join("input"), dir.join("output"));
    eprintln!("writing a {} random file…", ByteSize(cfg.size));
    crate::e2e::write_random(&file, cfg.size)?;
    let config = net.join("client.toml");
    let cli = |args: &[&str]| {
        let mut c = Command::new(&cfg.exe);
        c.arg("--config").arg(&config).args(args);
        c
    };
    let (gateway, endpoint) = start_gateway(&cfg.exe, net)?;
    let gw = Some(gateway.0.id());
    let (key, secret) = key_pair(net)?;
    let aws = |args: &[&str]| {
        let mut c = Command::new(cfg.venv.join("bin").join("aws"));
        c.args(["--endpoint-url", &endpoint]).args(args);
        c.env("AWS_ACCESS_KEY_ID", &key).env("AWS_SECRET_ACCESS_KEY", &secret);
        c.env("AWS_DEFAULT_REGION", "us-east-1").env("AWS_CONFIG_FILE", "/dev/null");
        c
    };
    run_measured(&mut aws(&["s3", "mb", "s3://bench"]))?;
    let file_s = file.to_string_lossy().to_string();
    let back_s = back.to_string_lossy().to_string();
    let mut runs: [Vec<Transfer>; 4] = Default::default();
    for round in 0..cfg.rounds.max(1) {
        eprintln!("round {} of {}…", round + 1, cfg.rounds.max(1));
        let (put, cap) = transfer(cli(&["put"]).arg(&file), devnet, None)?;
        let (get, _) = transfer(cli(&["get", cap.trim(), "-o"]).arg(&back), devnet, None)?;
        if !files_equal(&file, &back)? {
            return Err(E2eError::Differs);
        }
        let _ = std::fs::remove_file(&back);
        let (up, _) = transfer(&mut aws(&["s3", "cp", "--only-show-errors", &file_s, "s3://bench/big"]), devnet, gw)?;
        let (down, _) = transfer(&mut aws(&["s3", "cp", "--only-show-errors", "s3://bench/big", &back_s]), devnet, gw)?;
        if !files_equal(&file, &back)? {
            return Err(E2eError::Differs);
        }
        let _ = std::fs::remove_file(&back);
        for (v, t) in runs.iter_mut().zip([put, get, up, down]) {
            v.push(t);
        }
    }
    let small = run_measured(
        Command::new(cfg.venv.join("bin").join("python"))
            .arg(cfg.suite.join("bench.py"))
            .env("BB_S3_ENDPOINT", &endpoint)
            .env("BB_S3_KEY", &key)
            .env("BB_S3_SECRET", &secret),
    )?;
    let gateway_rss_kib = vm_hwm_kib(&gateway.0.id().to_string());
    drop(gateway);
    let [put, get, up, down] = runs.map(median);
    Ok(S3Report {
        cfg: cfg.clone(),
        cli: (put, get),
        aws: (up, down),
        gateway_rss_kib,
        small: small.stdout.trim().into(),
    })
}

impl fmt::Display for S3Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = self.cfg.size as f64 / 1e6;
        writeln!(
            f,
            "S3 gateway on a devnet of {} nodes, {} file, payments on:",
            self.cfg.nodes,
            ByteSize(self.cfg.size)
        )?;
        let rate = |t: &Transfer| mb / t.secs;
        let per_gib = |t: &Transfer| t.cpu_secs / (self.cfg.size as f64 / f64::from(1u32 << 30));
        let (cp, cg) = (rate(&self.cli.0), rate(&self.cli.1));
        let (ap, ag) = (rate(&self.aws.0), rate(&self.aws.1));
        let (c0, c1, a0, a1) = (per_gib(&self.cli.0), per_gib(&self.cli.1), per_gib(&self.aws.0), per_gib(&self.aws.1));
        writeln!(f, "  medians of {} rounds; CPU-s/GiB counts the client, the gateway and all nodes", self.cfg.rounds)?;
        writeln!(f, "  blackbox put {cp:.0} MB/s ({c0:.1} CPU-s/GiB), get {cg:.0} MB/s ({c1:.1} CPU-s/GiB)")?;
        writeln!(
            f,
            "  aws s3 cp up {ap:.0} MB/s ({:.0}% of put, {a0:.1} CPU-s/GiB), down {ag:.0} MB/s ({:.0}% of get, {a1:.1} CPU-s/GiB)",
            100.0 * ap / cp,
            100.0 * ag / cg
        )?;
        let rss = self.gateway_rss_kib.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        writeln!(f, "  gateway peak RSS: {rss}")?;
        write!(f, "  4 KiB objects, 16 parallel boto3 clients: {}", self.small)
    }
}
