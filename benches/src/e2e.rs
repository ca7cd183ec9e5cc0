//! `blackbox bench e2e`: put and get of one file on a fresh devnet of real node processes,
//! timed, with the client's peak RSS and CPU time (from `wait4`), the nodes' and the chain's CPU
//! time (from `/proc`), node 0's peak RSS and, with `profile`, where each of them spent it.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blackbox_util::{ByteSize, Xorshift};

use crate::cpu::{self, Cpu, Perf, Samples, Shares};

/// What to run.
#[derive(Debug, Clone)]
pub struct E2eConfig {
    /// The `blackbox` executable.
    pub exe: PathBuf,
    /// Nodes in the devnet.
    pub nodes: usize,
    /// File size in bytes.
    pub size: u64,
    /// Work directory (default: a new one under the system temp dir, removed afterwards).
    pub dir: Option<PathBuf>,
    /// Run the devnet with payments.
    pub payments: bool,
    /// Gets after the put (each timed).
    pub gets: usize,
    /// Sample every CPU with `perf record` during each transfer and break the CPU time down.
    pub profile: bool,
    /// Bytes per second one node is limited to (test-only fault), to measure the long tail.
    pub slow_node: Option<u64>,
    /// Run the devnet in network namespaces with shaped links (`devnet up --netns`).
    pub links: Option<Links>,
}

/// Shaped links of a `--netns` devnet: tc rates as given and in bits per second.
#[derive(Debug, Clone)]
pub struct Links {
    /// Each node's link, e.g. `100mbit`.
    pub node: (String, u64),
    /// The client's uplink, if shaped.
    pub client: Option<(String, u64)>,
}

impl Links {
    /// The link-limited ideal in bytes/s: a put sends n/k times the file through the client's
    /// link and spreads it over all nodes' links; a get takes k shares' blocks from k nodes.
    pub fn ideal(&self, nodes: usize, (k, n): (usize, usize), put: bool) -> f64 {
        let node = self.node.1 as f64 / 8.0;
        let client = self.client.as_ref().map_or(f64::INFINITY, |c| c.1 as f64 / 8.0);
        if put {
            client.min(node * nodes.min(n) as f64) * k as f64 / n as f64
        } else {
            client.min(node * k as f64)
        }
    }
}

impl E2eConfig {
    /// What [`start_devnet`] needs, for benches that only want a devnet of `nodes` to run on.
    pub fn devnet(exe: PathBuf, nodes: usize, payments: bool) -> Self {
        Self { exe, nodes, size: 0, dir: None, payments, gets: 0, profile: false, slow_node: None, links: None }
    }
}

/// Why the benchmark could not finish.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// Local I/O (the input file, the work directory) or spawning a process failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The devnet exited before it was ready.
    #[error("devnet did not start")]
    Devnet,
    /// A `blackbox` command failed.
    #[error("command failed with status {0}")]
    Command(i32),
    /// A client library operation failed.
    #[error("{0}")]
    Client(String),
    /// The bytes read back are not those stored.
    #[error("downloaded file differs from the original")]
    Differs,
    /// `--slow-node` with a binary that has no test faults.
    #[error("--slow-node needs a blackbox built with `--features faults` (node configs have no fault_data_rate)")]
    NoFaults,
}

/// A finished child process: wall time and its own peak RSS and CPU time.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Wall seconds.
    pub secs: f64,
    /// Peak resident set, KiB.
    pub max_rss_kib: i64,
    /// Its CPU time.
    pub cpu: Cpu,
    /// What it printed.
    pub stdout: String,
    /// Its process id (to find its samples in a profile).
    pub pid: u32,
}

/// One transfer: the client, and what the devnet spent meanwhile.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// The client process.
    pub client: Measured,
    /// All storage nodes together.
    pub nodes: Cpu,
    /// The devnet process (the chain and its JSON-RPC server).
    pub chain: Cpu,
    /// Share of each category in the client's and the nodes' samples, when profiled.
    pub profile: Option<(Shares, Shares)>,
}

/// The measurements.
#[derive(Debug, Clone)]
pub struct E2eReport {
    /// What ran.
    pub cfg: E2eConfig,
    /// The put.
    pub put: Transfer,
    /// Each get.
    pub gets: Vec<Transfer>,
    /// Node 0's peak RSS, KiB.
    pub node_rss_kib: Option<u64>,
}

pub(crate) fn run_measured(cmd: &mut Command) -> Result<Measured, E2eError> {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting on our own child with valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    if r != pid {
        return Err(std::io::Error::last_os_error().into());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(E2eError::Command(status));
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = Cpu { user: tv(usage.ru_utime), sys: tv(usage.ru_stime) };
    Ok(Measured { secs, max_rss_kib: usage.ru_maxrss, cpu, stdout, pid: pid as u32 })
}

pub(crate) fn write_random(path: &Path, len: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = Xorshift::new(0x9e3779b97f4a7c15u64 ^ u64::from(std::process::id()));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        rng.fill(&mut buf);
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()
}

pub(crate) fn files_equal(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

pub(crate) fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `blackbox devnet up` and waits for "devnet ready".
pub(crate) fn start_devnet(cfg: &E2eConfig, net_dir: &Path) -> Result<Child, E2eError> {
    let mut devnet = Command::new(&cfg.exe)
        .args(["devnet", "up", "--nodes", &cfg.nodes.to_string(), "--dir"])
        .arg(net_dir)
        .args(if cfg.payments { &[][..] } else { &["--no-payments"][..] })
        .args(cfg.links.iter().flat_map(|l| {
            let mut a = vec!["--netns".to_string(), "--node-rate".into(), l.node.0.clone()];
            a.extend(l.client.iter().flat_map(|c| ["--client-rate".to_string(), c.0.clone()]));
            a
        }))
        .env_remove("BLACKBOX_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = devnet.stdout.take().ok_or(E2eError::Devnet)?;
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        if line?.starts_with("devnet ready") {
            // Keep reading: a closed pipe would fail the devnet's next line of output.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(devnet);
        }
    }
    Err(E2eError::Devnet)
}

/// Stops the devnet with SIGTERM (SIGKILL after 30 s).
pub(crate) fn stop_devnet(mut devnet: Child) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(devnet.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(devnet.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = devnet.kill();
    let _ = devnet.wait();
}

/// The node processes of the devnet in `net_dir`.
fn node_pids(net_dir: &Path) -> Vec<u32> {
    let Ok(dirs) = std::fs::read_dir(net_dir) else { return Vec::new() };
    let mut pids: Vec<u32> = dirs
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("node.pid")).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Runs one client command, counting the nodes' and the chain's CPU meanwhile.
fn transfer(cfg: &E2eConfig, cmd: &mut Command, nodes: &[u32], chain: u32, dir: &Path) -> Result<Transfer, E2eError> {
    let perf = if cfg.profile { Perf::start(&dir.join("perf.data")) } else { None };
    let (n0, c0) = (cpu::of_all(nodes), cpu::of_all(&[chain]));
    let client = run_measured(cmd)?;
    let (nodes_cpu, chain_cpu) = (cpu::of_all(nodes).since(&n0), cpu::of_all(&[chain]).since(&c0));
    let samples: Option<Samples> = perf.and_then(Perf::stop);
    let profile = samples.map(|s| (s.shares(&[client.pid]), s.shares(nodes)));
    Ok(Transfer { client, nodes: nodes_cpu, chain: chain_cpu, profile })
}

/// The put and the gets; with a slow node the devnet is restarted before the gets with the
/// holder of data share 0 slow instead (the put left the first slow node out).
fn measure(cfg: &E2eConfig, dir: &Path, net_dir: &Path, devnet: &mut Option<Child>) -> Result<E2eReport, E2eError> {
    let config = net_dir.join("client.toml");
    let (file, back) = (dir.join("input"), dir.join("output"));
    eprintln!("writing a {} random file…", ByteSize(cfg.size));
    write_random(&file, cfg.size)?;
    let chain = |d: &Option<Child>| d.as_ref().map_or(0, Child::id);
    let nodes = node_pids(net_dir);
    let mut put = Command::new(&cfg.exe);
    put.arg("--config").arg(&config).arg("put").arg(&file);
    let put = transfer(cfg, &mut put, &nodes, chain(devnet), dir)?;
    let cap = put.client.stdout.trim().to_string();
    if let Some(rate) = cfg.slow_node {
        slow_down_share_0(cfg, net_dir, devnet, &cap, rate)?;
    }
    let nodes = node_pids(net_dir);
    let mut gets = Vec::new();
    for _ in 0..cfg.gets.max(1) {
        let _ = std::fs::remove_file(&back);
        let mut get = Command::new(&cfg.exe);
        get.arg("--config").arg(&config).args(["get", &cap, "-o"]).arg(&back);
        gets.push(transfer(cfg, &mut get, &nodes, chain(devnet), dir)?);
        if !files_equal(&file, &back)? {
            return Err(E2eError::Differs);
        }
    }
    let node_pid = std::fs::read_to_string(net_dir.join("node-00").join("node.pid")).unwrap_or_default();
    Ok(E2eReport { cfg: cfg.clone(), put, gets, node_rss_kib: vm_hwm_kib(&node_pid) })
}

/// Sets node `i`'s test-only data rate (0: no limit) in its config.
fn set_rate(net_dir: &Path, i: usize, rate: u64) -> Result<(), E2eError> {
    let path = net_dir.join(format!("node-{i:02}")).join("node.toml");
    let text = std::fs::read_to_string(&path)?;
    let line = text.lines().find(|l| l.starts_with("fault_data_rate =")).ok_or(E2eError::NoFaults)?;
    std::fs::write(&path, text.replace(line, &format!("fault_data_rate = {rate}")))?;
    Ok(())
}

/// Restarts the devnet with only the node holding share 0 of `cap` slow.
fn slow_down_share_0(
    cfg: &E2eConfig,
    net_dir: &Path,
    devnet: &mut Option<Child>,
    cap: &str,
    rate: u64,
) -> Result<(), E2eError> {
    let config = net_dir.join("client.toml");
    let check = run_measured(Command::new(&cfg.exe).arg("--config").arg(&config).args(["check", cap]))?;
    let line = check.stdout.lines().find(|l| l.trim_start().starts_with("share   0:")).ok_or(E2eError::Devnet)?;
    let holder = (0..cfg.nodes).find(|i| {
        let info = std::fs::read_to_string(net_dir.join(format!("node-{i:02}")).join("node.info")).unwrap_or_default();
        let peer: String = info
            .find("12D3")
            .map_or(String::new(), |at| info[at..].chars().take_while(char::is_ascii_alphanumeric).collect());
        peer.len() > 6 && line.ends_with(&peer[peer.len() - 6..])
    });
    if let Some(d) = devnet.take() {
        stop_devnet(d);
    }
    set_rate(net_dir, SLOW_NODE, 0)?;
    set_rate(net_dir, holder.ok_or(E2eError::Devnet)?, rate)?;
    eprintln!("restarting the devnet with the holder of share 0 slow…");
    *devnet = Some(start_devnet(cfg, net_dir)?);
    Ok(())
}

/// The node that is slow during the put.
const SLOW_NODE: usize = 3;

/// Runs the benchmark: a fresh devnet, one put, `gets` gets, every byte compared.
pub fn run(cfg: &E2eConfig) -> Result<E2eReport, E2eError> {
    let (dir, remove) = match &cfg.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("blackbox-bench-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&dir)?;
    let net_dir = dir.join("net");
    let mut devnet = Some(start_devnet(cfg, &net_dir)?);
    let result = (|| {
        if let Some(rate) = cfg.slow_node {
            if let Some(d) = devnet.take() {
                stop_devnet(d);
            }
            set_rate(&net_dir, SLOW_NODE, rate)?;
            devnet = Some(start_devnet(cfg, &net_dir)?);
        }
        measure(cfg, &dir, &net_dir, &mut devnet)
    })();
    if let Some(d) = devnet {
        stop_devnet(d);
    }
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

impl fmt::Display for E2eReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cfg = &self.cfg;
        let mb = cfg.size as f64 / 1e6;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let payments = if cfg.payments { "on" } else { "off" };
        let mut slow = cfg.slow_node.map_or(String::new(), |r| format!(", one node slowed to {}/s", ByteSize(r)));
        if let Some(l) = &cfg.links {
            let client = l.client.as_ref().map_or("unshaped".to_string(), |c| c.0.clone());
            slow += &format!(", node links {}, client link {client}", l.node.0);
        }
        writeln!(
            f,
            "e2e on devnet of {} nodes, {} file ({mb:.0} MB), {cores}-core machine, payments {payments}{slow}:",
            cfg.nodes,
            ByteSize(cfg.size)
        )?;
        let gib = cfg.size as f64 / f64::from(1u32 << 30);
        for (what, t) in std::iter::once(("put", &self.put)).chain(self.gets.iter().map(|g| ("get", g))) {
            let m = &t.client;
            writeln!(
                f,
                "  {what}: {:.2} s = {:.0} MB/s, client peak RSS {:.0} MiB",
                m.secs,
                mb / m.secs,
                m.max_rss_kib as f64 / 1024.0
            )?;
            if let Some(l) = &cfg.links {
                let ideal = l.ideal(cfg.nodes, (3, cfg.nodes.min(10)), what == "put") / 1e6;
                writeln!(f, "    link-limited ideal {ideal:.1} MB/s: {:.0}% of it", mb / m.secs / ideal * 100.0)?;
            }
            let total = m.cpu.total() + t.nodes.total() + t.chain.total();
            writeln!(
                f,
                "    CPU-s per GiB: client {:.2} (user {:.2}, kernel {:.2}), nodes {:.2} (user {:.2}, kernel {:.2}), chain {:.2}; all {:.2}",
                m.cpu.total() / gib,
                m.cpu.user / gib,
                m.cpu.sys / gib,
                t.nodes.total() / gib,
                t.nodes.user / gib,
                t.nodes.sys / gib,
                t.chain.total() / gib,
                total / gib
            )?;
            if let Some((client, nodes)) = &t.profile {
                breakdown(f, "client", client, m.cpu.total() / gib)?;
                breakdown(f, "nodes", nodes, t.nodes.total() / gib)?;
            }
        }
        let rss = self.node_rss_kib.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        writeln!(f, "  node-00 peak RSS: {rss}")?;
        write!(f, "  bytes identical: yes")
    }
}

/// One line of "category CPU-s/GiB (share)" for a process group, largest first.
fn breakdown(f: &mut fmt::Formatter<'_>, who: &str, shares: &[(&str, f64)], per_gib: f64) -> fmt::Result {
    let parts: Vec<String> =
        shares.iter().map(|(c, s)| format!("{c} {:.2} ({:.0}%)", s * per_gib, s * 100.0)).collect();
    writeln!(f, "    {who} by perf: {}", if parts.is_empty() { "no samples".into() } else { parts.join(", ") })
}
