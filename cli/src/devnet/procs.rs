//! The devnet's node processes: spawned from this executable, waited for until ready, watched,
//! and stopped with SIGTERM (then SIGKILL) on shutdown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};
use tracing::{info, warn};

use blackbox_net::{parse_bootstrap, Discovery, Libp2pTransport};
use blackbox_storage_node::daemon::{NodeInfo, INFO_FILE};

pub(super) struct NodeProc {
    pub(super) dir: PathBuf,
    pub(super) child: Child,
    pub(super) alive: bool,
}

pub(super) fn node_dir(root: &Path, i: usize) -> PathBuf {
    root.join(format!("node-{i:02}"))
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string()
}

/// Starts node `i` from `config` (inside network namespace `ns` if given).
pub(super) fn spawn_node(exe: &Path, dir: &Path, config: &Path, (i, ns): (usize, Option<String>)) -> Result<Child> {
    let _ = std::fs::remove_file(dir.join(INFO_FILE));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .with_context(|| format!("cannot open log in {}", dir.display()))?;
    let mut cmd = match ns {
        // `ip netns exec` execs the node: the child is the node process itself.
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg("node")
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("BLACKBOX_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start node {i}"))
}

/// Waits (up to 30 s) until a client that knows only the bootstrap node finds all `n` nodes.
pub(super) async fn wait_discoverable(bootstrap: &str, n: usize) {
    let Ok(boot) = parse_bootstrap(&[bootstrap.to_string()]) else { return };
    let Ok(transport) = Libp2pTransport::with_discovery(Duration::from_secs(10), &Discovery { bootstrap: boot }) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = 0;
    while Instant::now() < deadline {
        found = transport.find_storage_providers().await.map_or(0, |p| p.len());
        if found >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    warn!(found, expected = n, "not every node is discoverable yet");
}

/// Waits until every node has written its info file, or fails with the first node's error.
pub(super) async fn wait_ready(procs: &mut [NodeProc]) -> Result<Vec<NodeInfo>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut infos: Vec<Option<NodeInfo>> = vec![None; procs.len()];
    loop {
        for (i, p) in procs.iter_mut().enumerate() {
            if infos[i].is_some() {
                continue;
            }
            if let Some(status) = p.child.try_wait()? {
                bail!("node {i} exited during start ({status}): {}", log_tail(&p.dir));
            }
            if let Ok(text) = std::fs::read_to_string(p.dir.join(INFO_FILE)) {
                infos[i] = Some(toml::from_str(&text).with_context(|| format!("bad info file of node {i}"))?);
            }
        }
        if infos.iter().all(Option::is_some) {
            return Ok(infos.into_iter().flatten().collect());
        }
        if Instant::now() > deadline {
            bail!("nodes did not start within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGINT and SIGTERM, caught from the start of `devnet up`.
pub(super) struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    pub(super) fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Watches the nodes until SIGINT/SIGTERM, reporting any that exit, then stops them all.
pub(super) async fn supervise(procs: &mut [NodeProc], stop: &mut Stop) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = tick.tick() => {
                for (i, p) in procs.iter_mut().enumerate() {
                    if p.alive {
                        if let Ok(Some(status)) = p.child.try_wait() {
                            p.alive = false;
                            warn!(node = i, %status, "node exited");
                        }
                    }
                }
            }
        }
    }
    info!("stopping nodes");
    stop_all(procs).await;
}

pub(super) async fn stop_all(procs: &mut [NodeProc]) {
    for p in procs.iter_mut() {
        if let Some(pid) = p.child.id() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for p in procs.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, p.child.wait()).await.is_err() {
            let _ = p.child.kill().await;
        }
    }
}
