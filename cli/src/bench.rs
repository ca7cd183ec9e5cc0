//! `blackbox bench`: throughput of the pipeline, and of put/get on a real local devnet.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use blackbox_storage_node::config::ByteSize;

/// What to measure.
#[derive(Subcommand)]
pub enum BenchAction {
    /// Encode and decode MB/s of the pure pipeline on one core, beside its measured ceiling.
    Pipeline {
        /// Seconds per figure.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Put and get of one file on a fresh `devnet up`: MB/s and peak RSS.
    E2e(E2eArgs),
    /// Payment channel updates signed and verified per second on one core.
    Channel {
        /// Seconds to run each side.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Proofs of retrievability: made and verified per second, and audit bandwidth.
    Proofs {
        /// Seconds to run each side.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Kademlia at scale, in one process (in-memory transport): time, hops and DHT requests for
    /// fresh clients to find providers, for each network size given.
    Dht {
        /// Network sizes to simulate.
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        nodes: Vec<usize>,
        /// Nodes that announce themselves as storage providers.
        #[arg(long, default_value_t = 50)]
        providers: usize,
    },
}

/// `bench e2e` options.
#[derive(Args)]
pub struct E2eArgs {
    /// Nodes in the devnet.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// File size, e.g. 1GiB.
    #[arg(long, default_value = "1GiB", value_parser = |s: &str| ByteSize::parse(s))]
    size: ByteSize,
    /// Work directory (default: a new one under the system temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run the devnet without payments (to measure what paying costs).
    #[arg(long)]
    no_payments: bool,
    /// Gets to run after the put (each timed).
    #[arg(long, default_value_t = 1)]
    gets: usize,
}

pub async fn run(_config: Option<PathBuf>, action: BenchAction) -> Result<ExitCode> {
    match action {
        BenchAction::Pipeline { seconds } => {
            for (k, n) in [(3, 10), (29, 80)] {
                let report = tokio::task::spawn_blocking(move || blackbox_benches::measure(k, n, seconds)).await?;
                println!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::Channel { seconds } => {
            let (signed, verified) =
                tokio::task::spawn_blocking(move || blackbox_benches::channel::measure_channel(seconds)).await?;
            println!(
                "channel updates on one core: signed {signed:.0}/s (payer), verified {verified:.0}/s (provider: \
                 its own signature, then libbitcoinconsensus checks both)"
            );
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::Proofs { seconds } => {
            let report = tokio::task::spawn_blocking(move || blackbox_benches::proofs::measure_proofs(seconds)).await?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::E2e(args) => tokio::task::spawn_blocking(move || e2e(args)).await?,
        BenchAction::Dht { nodes, providers } => {
            for n in nodes {
                if n < 2 || providers == 0 || providers >= n {
                    bail!("need at least 2 nodes and between 1 and nodes - 1 providers");
                }
                let r = blackbox_benches::dht::simulate(n, providers, providers).await.map_err(anyhow::Error::msg)?;
                println!("{} nodes, {} providers: setup {:.1} s", r.nodes, r.providers, r.setup_secs);
                for (i, l) in r.lookups.iter().enumerate() {
                    println!(
                        "  client {}: found {} providers, the first {} in {:.0} ms with {} DHT requests; \
                         hops to the first provider record: {}",
                        i + 1,
                        l.found,
                        providers,
                        l.ms,
                        l.requests,
                        l.hops
                    );
                }
                let mut ms: Vec<f64> = r.lookups.iter().map(|l| l.ms).collect();
                ms.sort_by(f64::total_cmp);
                let hops = r.lookups.iter().map(|l| l.hops as f64).sum::<f64>() / r.lookups.len().max(1) as f64;
                println!(
                    "  median {:.0} ms to {} providers; mean {:.1} hops; peak RSS {}",
                    ms[ms.len() / 2],
                    providers,
                    hops,
                    blackbox_benches::dht::peak_rss_mib().map_or("?".into(), |m| format!("{m:.0} MiB"))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A finished child process: wall time and its own peak RSS and CPU time (from wait4).
struct Measured {
    secs: f64,
    max_rss_kib: i64,
    cpu_secs: f64,
    stdout: String,
}

fn run_measured(cmd: &mut Command) -> Result<Measured> {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("spawn")?;
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
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("command failed with status {status}");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured { secs, max_rss_kib: usage.ru_maxrss, cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime), stdout })
}

fn write_random(path: &Path, len: u64) -> Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = blackbox_util::Xorshift::new(0x9e3779b97f4a7c15u64 ^ std::process::id() as u64);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        rng.fill(&mut buf);
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn files_equal(a: &Path, b: &Path) -> Result<bool> {
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

fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn e2e(args: E2eArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe()?;
    let (dir, remove) = match args.dir {
        Some(d) => (d, false),
        None => (std::env::temp_dir().join(format!("blackbox-bench-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&dir)?;
    let net_dir = dir.join("net");
    let mut devnet = Command::new(&exe)
        .args(["devnet", "up", "--nodes", &args.nodes.to_string(), "--dir"])
        .arg(&net_dir)
        .args(if args.no_payments { &["--no-payments"][..] } else { &[][..] })
        .env_remove("BLACKBOX_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting devnet")?;
    let result = (|| -> Result<()> {
        let out = devnet.stdout.take().context("devnet stdout")?;
        let mut lines = BufReader::new(out).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("devnet ready") => break,
                Some(Ok(_)) => {}
                _ => bail!("devnet did not start"),
            }
        }
        let config = net_dir.join("client.toml");
        let file = dir.join("input");
        let back = dir.join("output");
        let size = args.size.0;
        eprintln!("writing a {} random file…", ByteSize(size));
        write_random(&file, size)?;
        let mb = size as f64 / 1e6;
        let put = run_measured(Command::new(&exe).arg("--config").arg(&config).arg("put").arg(&file))?;
        let cap = put.stdout.trim().to_string();
        let mut gets = Vec::new();
        for _ in 0..args.gets.max(1) {
            let _ = std::fs::remove_file(&back);
            gets.push(run_measured(
                Command::new(&exe).arg("--config").arg(&config).args(["get", &cap, "-o"]).arg(&back),
            )?);
            if !files_equal(&file, &back)? {
                bail!("downloaded file differs from the original");
            }
        }
        let node_pid = std::fs::read_to_string(net_dir.join("node-00").join("node.pid")).unwrap_or_default();
        let node_rss = vm_hwm_kib(&node_pid).map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        println!(
            "e2e on devnet of {} nodes, {} file ({mb:.0} MB), {}-core machine, payments {}:",
            args.nodes,
            ByteSize(size),
            num_cpus(),
            if args.no_payments { "off" } else { "on" }
        );
        println!(
            "  put: {:.2} s = {:.0} MB/s, client peak RSS {:.0} MiB, client CPU {:.2} s",
            put.secs,
            mb / put.secs,
            put.max_rss_kib as f64 / 1024.0,
            put.cpu_secs
        );
        for get in &gets {
            println!(
                "  get: {:.2} s = {:.0} MB/s, client peak RSS {:.0} MiB, client CPU {:.2} s",
                get.secs,
                mb / get.secs,
                get.max_rss_kib as f64 / 1024.0,
                get.cpu_secs
            );
        }
        println!("  node-00 peak RSS: {node_rss}");
        println!("  bytes identical: yes");
        Ok(())
    })();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(devnet.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while devnet.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = devnet.kill();
    let _ = devnet.wait();
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|_| ExitCode::SUCCESS)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
