//! `blackbox bench e2e`: put and get of one file on a fresh devnet of real node processes,
//! timed, with the client's peak RSS and CPU time (from `wait4`) and node 0's peak RSS.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blackbox_util::{ByteSize, Xorshift};

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
}

/// A finished child process: wall time and its own peak RSS and CPU time.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Wall seconds.
    pub secs: f64,
    /// Peak resident set, KiB.
    pub max_rss_kib: i64,
    /// User + system CPU seconds.
    pub cpu_secs: f64,
    /// What it printed.
    pub stdout: String,
}

/// The measurements.
#[derive(Debug, Clone)]
pub struct E2eReport {
    /// What ran.
    pub cfg: E2eConfig,
    /// The put.
    pub put: Measured,
    /// Each get.
    pub gets: Vec<Measured>,
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
    Ok(Measured { secs, max_rss_kib: usage.ru_maxrss, cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime), stdout })
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
        .env_remove("BLACKBOX_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = devnet.stdout.take().ok_or(E2eError::Devnet)?;
    for line in BufReader::new(out).lines() {
        if line?.starts_with("devnet ready") {
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

/// The put and the gets, on a running devnet.
fn measure(cfg: &E2eConfig, dir: &Path, net_dir: &Path) -> Result<E2eReport, E2eError> {
    let config = net_dir.join("client.toml");
    let (file, back) = (dir.join("input"), dir.join("output"));
    eprintln!("writing a {} random file…", ByteSize(cfg.size));
    write_random(&file, cfg.size)?;
    let put = run_measured(Command::new(&cfg.exe).arg("--config").arg(&config).arg("put").arg(&file))?;
    let cap = put.stdout.trim().to_string();
    let mut gets = Vec::new();
    for _ in 0..cfg.gets.max(1) {
        let _ = std::fs::remove_file(&back);
        gets.push(run_measured(
            Command::new(&cfg.exe).arg("--config").arg(&config).args(["get", &cap, "-o"]).arg(&back),
        )?);
        if !files_equal(&file, &back)? {
            return Err(E2eError::Differs);
        }
    }
    let node_pid = std::fs::read_to_string(net_dir.join("node-00").join("node.pid")).unwrap_or_default();
    Ok(E2eReport { cfg: cfg.clone(), put, gets, node_rss_kib: vm_hwm_kib(&node_pid) })
}

/// Runs the benchmark: a fresh devnet, one put, `gets` gets, every byte compared.
pub fn run(cfg: &E2eConfig) -> Result<E2eReport, E2eError> {
    let (dir, remove) = match &cfg.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("blackbox-bench-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&dir)?;
    let net_dir = dir.join("net");
    let devnet = start_devnet(cfg, &net_dir)?;
    let result = measure(cfg, &dir, &net_dir);
    stop_devnet(devnet);
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
        writeln!(
            f,
            "e2e on devnet of {} nodes, {} file ({mb:.0} MB), {cores}-core machine, payments {payments}:",
            cfg.nodes,
            ByteSize(cfg.size)
        )?;
        let line = |f: &mut fmt::Formatter<'_>, what: &str, m: &Measured| {
            writeln!(
                f,
                "  {what}: {:.2} s = {:.0} MB/s, client peak RSS {:.0} MiB, client CPU {:.2} s",
                m.secs,
                mb / m.secs,
                m.max_rss_kib as f64 / 1024.0,
                m.cpu_secs
            )
        };
        line(f, "put", &self.put)?;
        for g in &self.gets {
            line(f, "get", g)?;
        }
        let rss = self.node_rss_kib.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        writeln!(f, "  node-00 peak RSS: {rss}")?;
        write!(f, "  bytes identical: yes")
    }
}
