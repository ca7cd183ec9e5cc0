//! `blackbox bench mount`: the FUSE drive against the CLI on one fresh devnet. A large file written
//! with `dd … conv=fsync` and read with `dd bs=1M` beside `blackbox put`/`get` of the same file;
//! `ls -l` of a 10,000-entry folder; `find` over a tree of 10,000 files; the mount's peak RSS.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use blackbox_client::namespace::{new_entry, DirCap};
use blackbox_client::{PutOptions, Session};
use blackbox_core::dir::{Entry, Kind};
use blackbox_core::LiteralCap;
use blackbox_util::ByteSize;

use crate::e2e::{files_equal, run_measured, start_devnet, stop_devnet, vm_hwm_kib, E2eConfig, E2eError, Measured};

/// What to run.
#[derive(Debug, Clone)]
pub struct MountBenchConfig {
    /// The `blackbox` executable.
    pub exe: PathBuf,
    /// Nodes in the devnet.
    pub nodes: usize,
    /// Size of the large file.
    pub size: u64,
}

/// The measurements.
#[derive(Debug, Clone)]
pub struct MountReport {
    /// What ran.
    pub cfg: MountBenchConfig,
    /// `blackbox put` and `get` of the file.
    pub cli: (Measured, Measured),
    /// `dd` onto the mount with `conv=fsync`, and back off it.
    pub dd: (Measured, Measured),
    /// `ls -l` of the 10,000-entry folder.
    pub ls: Measured,
    /// `find` over the tree of 10,000 files.
    pub find: Measured,
    /// The mount's peak RSS, KiB.
    pub mount_rss_kib: Option<u64>,
}

/// Folders of the tree `find` walks, and files in each.
const TREE: (usize, usize) = (100, 100);
/// Entries of the folder `ls -l` lists.
const FLAT: usize = 10_000;

struct Mounted(Child, PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.1).stderr(Stdio::null()).status();
    }
}

fn err(e: blackbox_client::ClientError) -> E2eError {
    E2eError::Client(e.to_string())
}

fn tiny(i: usize) -> Entry {
    new_entry(Kind::File, LiteralCap { data: format!("{i}\n").into_bytes() }.to_string(), 0)
}

/// `/bench-ls` with [`FLAT`] files and `/bench-tree` with [`TREE`] folders of files, built in bulk.
async fn populate(s: &Session) -> Result<(), E2eError> {
    let opts = s.upload_options(&PutOptions::default()).map_err(err)?;
    let DirCap::Write(flat) = s.mkdir("/bench-ls", true).await.map_err(err)? else { return Err(E2eError::Devnet) };
    let entries = (0..FLAT).map(|i| (format!("file-{i:05}.txt"), tiny(i))).collect();
    s.client.dir_replace_all(&flat, entries, &opts).await.map_err(err)?;
    let tree = s.mkdir("/bench-tree", true).await.map_err(err)?;
    let DirCap::Write(tw) = &tree else { return Err(E2eError::Devnet) };
    let mut dirs = Vec::new();
    for d in 0..TREE.0 {
        let child = s.client.dir_create(&opts).await.map_err(err)?;
        let files = (0..TREE.1).map(|i| (format!("f{i:03}"), tiny(i))).collect();
        s.client.dir_replace_all(&child, files, &opts).await.map_err(err)?;
        dirs.push((format!("d{d:03}"), s.entry_for_cap(&tree, &child.to_string()).map_err(err)?));
    }
    s.client.dir_replace_all(tw, dirs, &opts).await.map_err(err)?;
    Ok(())
}

fn mount(cfg: &MountBenchConfig, config: &Path, point: &Path) -> Result<Mounted, E2eError> {
    std::fs::create_dir_all(point)?;
    let mut child = Command::new(&cfg.exe)
        .arg("--config")
        .arg(config)
        .arg("mount")
        .arg(point)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child.stdout.take().ok_or(E2eError::Devnet)?;
    let mounted = Mounted(child, point.to_path_buf());
    let line = BufReader::new(out).lines().next().ok_or(E2eError::Devnet)??;
    if !line.starts_with("mounted") {
        return Err(E2eError::Devnet);
    }
    Ok(mounted)
}

fn bash(script: &str) -> Result<Measured, E2eError> {
    run_measured(Command::new("bash").args(["-euo", "pipefail", "-c", script]))
}

/// Runs the benchmark on a fresh devnet.
pub async fn run(cfg: &MountBenchConfig) -> Result<MountReport, E2eError> {
    let dir = std::env::temp_dir().join(format!("blackbox-bench-mount-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let net = dir.join("net");
    let e2e = E2eConfig::devnet(cfg.exe.clone(), cfg.nodes, true);
    let devnet = start_devnet(&e2e, &net)?;
    let result = measure(cfg, &dir, &net).await;
    stop_devnet(devnet);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(cfg: &MountBenchConfig, dir: &Path, net: &Path) -> Result<MountReport, E2eError> {
    let (file, back, point) = (dir.join("input"), dir.join("output"), dir.join("mnt"));
    eprintln!("writing a {} random file…", ByteSize(cfg.size));
    crate::e2e::write_random(&file, cfg.size)?;
    let config = net.join("client.toml");
    let cli = |args: &[&str]| {
        let mut c = Command::new(&cfg.exe);
        c.arg("--config").arg(&config).args(args);
        c
    };
    let put = run_measured(cli(&["put"]).arg(&file))?;
    let get = run_measured(cli(&["get", put.stdout.trim(), "-o"]).arg(&back))?;
    if !files_equal(&file, &back)? {
        return Err(E2eError::Differs);
    }
    eprintln!("building a {FLAT}-entry folder and a tree of {} files…", TREE.0 * TREE.1);
    let s = Session::open(&config).await.map_err(err)?;
    populate(&s).await?;
    let mounted = mount(cfg, &config, &point)?;
    let (f, p) = (file.display(), point.display());
    let write = bash(&format!("dd if={f} of={p}/big.bin bs=1M conv=fsync status=none"))?;
    let read = bash(&format!("dd if={p}/big.bin of=/dev/null bs=1M status=none"))?;
    if !files_equal(&file, &point.join("big.bin"))? {
        return Err(E2eError::Differs);
    }
    let ls = bash(&format!("ls -l {p}/bench-ls | wc -l"))?;
    let find = bash(&format!("find {p}/bench-tree -type f | wc -l"))?;
    if ls.stdout.trim() != (FLAT + 1).to_string() || find.stdout.trim() != (TREE.0 * TREE.1).to_string() {
        return Err(E2eError::Client(format!("listed {} and found {}", ls.stdout.trim(), find.stdout.trim())));
    }
    let mount_rss_kib = vm_hwm_kib(&mounted.0.id().to_string());
    drop(mounted);
    Ok(MountReport { cfg: cfg.clone(), cli: (put, get), dd: (write, read), ls, find, mount_rss_kib })
}

impl fmt::Display for MountReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = self.cfg.size as f64 / 1e6;
        writeln!(
            f,
            "FUSE drive on a devnet of {} nodes, {} file, payments on:",
            self.cfg.nodes,
            ByteSize(self.cfg.size)
        )?;
        let rate = |m: &Measured| mb / m.secs;
        let (cp, cg, dw, dr) = (rate(&self.cli.0), rate(&self.cli.1), rate(&self.dd.0), rate(&self.dd.1));
        writeln!(f, "  blackbox put {cp:.0} MB/s, get {cg:.0} MB/s")?;
        writeln!(
            f,
            "  dd write + fsync {dw:.0} MB/s ({:.0}% of put), dd read {dr:.0} MB/s ({:.0}% of get)",
            100.0 * dw / cp,
            100.0 * dr / cg
        )?;
        writeln!(
            f,
            "  ls -l of {FLAT} entries: {:.2} s; find over {} files: {:.2} s",
            self.ls.secs,
            TREE.0 * TREE.1,
            self.find.secs
        )?;
        let rss = self.mount_rss_kib.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        write!(f, "  mount peak RSS: {rss}")
    }
}
