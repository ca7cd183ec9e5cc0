//! `blackbox mount`: a directory of the namespace as a folder, until Ctrl-C, SIGTERM or umount.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

/// `mount` arguments.
#[derive(Args)]
pub struct MountArgs {
    /// The directory to mount (a path or a dircap), then the mount point; with one argument, the
    /// root is mounted there.
    #[arg(value_name = "PATH_OR_DIRCAP] [MOUNTPOINT", num_args = 1..=2, required = true)]
    targets: Vec<String>,
    /// Refuse every change (a read-only dircap always mounts read-only).
    #[arg(long)]
    read_only: bool,
    /// Where files being written are kept until stored (default: `mount-cache` in the data dir).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

pub(crate) async fn mount(config: Option<PathBuf>, args: MountArgs) -> Result<ExitCode> {
    let (dir, mountpoint) = match args.targets.as_slice() {
        [m] => ("/".to_string(), PathBuf::from(m)),
        [d, m] => (d.clone(), PathBuf::from(m)),
        _ => anyhow::bail!("give the mount point, and optionally the directory before it"),
    };
    let session = Arc::new(crate::commands::session(config).await?);
    // (Reading the user's root this way also makes it on first use.)
    let root = match session.stat(&dir).await.with_context(|| format!("cannot mount {dir}"))? {
        blackbox_client::namespace::Stat::Dir(d) => d,
        blackbox_client::namespace::Stat::Entry(_) => anyhow::bail!("cannot mount {dir}: not a directory"),
    };
    let cfg = blackbox_fuse::MountConfig {
        read_only: args.read_only,
        cache_dir: args.cache_dir.unwrap_or_else(|| session.cfg.data_dir.join("mount-cache")),
        threads: args.threads,
    };
    let rt = tokio::runtime::Handle::current();
    let (s, m, c) = (session.clone(), mountpoint.clone(), cfg.clone());
    let mounted = tokio::task::spawn_blocking(move || {
        let drive = blackbox_fuse::Drive::new(s, rt, root, &c)?;
        blackbox_fuse::mount(drive, &m, &c)
    })
    .await??;
    println!("mounted {dir} at {}", mountpoint.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            // Unmounted from outside (umount, fusermount3 -u): the session has ended.
            _ = tick.tick() => if mounted.guard.is_finished() { break },
        }
    }
    tokio::task::spawn_blocking(move || mounted.umount_and_join()).await?.context("unmount")?;
    eprintln!("unmounted {}", mountpoint.display());
    Ok(ExitCode::SUCCESS)
}
