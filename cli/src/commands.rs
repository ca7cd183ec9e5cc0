//! Client commands: put, get, check, nodes. Each parses its arguments, calls the client library
//! once and prints.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use blackbox_client::{parse_any_cap, ClientConfig, PutOptions, Session, ShareHealth};
use blackbox_core::ReadCap;
use blackbox_util::ByteSize;

use crate::show;

/// `put` options.
#[derive(Args)]
pub struct PutArgs {
    /// File to store (`-`: standard input, with a PATH).
    file: PathBuf,
    /// Also link it at this path (`/dir/name`, or `/dir/` to keep the file's name).
    path: Option<String>,
    /// Replace an existing entry at PATH.
    #[arg(short, long, requires = "path")]
    force: bool,
    /// Shares needed to rebuild (k); default from the config.
    #[arg(long, short = 'k')]
    needed: Option<usize>,
    /// Shares to make (n); default from the config.
    #[arg(long, short = 'n')]
    total: Option<usize>,
    /// Distinct nodes that must hold shares; default from the config (capped at n).
    #[arg(long)]
    happy: Option<usize>,
    /// Segment size, e.g. 1MiB; default from the config.
    #[arg(long, value_parser = |s: &str| ByteSize::parse(s).map(|b| b.0))]
    segment_size: Option<u64>,
    /// Show on stderr how every candidate node was ranked and where each share went.
    #[arg(long)]
    explain: bool,
}

/// `get` options.
#[derive(Args)]
pub struct GetArgs {
    /// Read capability (`bb:chk:…`) or path (`/dir/name`, `DIRCAP/name`).
    cap: String,
    /// Write to this file (atomically) instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// First byte to read (range read).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Bytes to read from the offset (default: to the end).
    #[arg(long)]
    length: Option<u64>,
}

/// `check` options.
#[derive(Args)]
pub struct CheckArgs {
    /// Read or verify capability.
    #[arg(required_unless_present = "recursive")]
    cap: Option<String>,
    /// Check every file and directory reachable from this directory path instead.
    #[arg(short, long, value_name = "PATH", conflicts_with_all = ["cap", "verify", "leases"])]
    recursive: Option<String>,
    /// Also download every share and check every block (no decryption).
    #[arg(long)]
    verify: bool,
    /// Also print each share's node and lease expiry (UTC).
    #[arg(long)]
    leases: bool,
}

/// `nodes` options.
#[derive(Args)]
pub struct NodesArgs {
    /// One JSON object per node and line instead of a table.
    #[arg(long)]
    json: bool,
}

/// The client config (`--config` or `BLACKBOX_CONFIG`), loaded.
pub(crate) fn client_config(config: Option<PathBuf>) -> Result<ClientConfig> {
    let Some(path) = config else {
        bail!("no client config: pass --config FILE or set BLACKBOX_CONFIG (`blackbox devnet up` writes one)");
    };
    Ok(ClientConfig::load(&path)?)
}

/// Connects the client of the config.
pub(crate) async fn session(config: Option<PathBuf>) -> Result<Session> {
    Ok(Session::connect(client_config(config)?).await?)
}

/// Shows a byte progress bar on stderr while `work` runs, if stderr is a terminal.
async fn with_progress<F: std::future::Future>(total: u64, counter: Arc<AtomicU64>, work: F) -> F::Output {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(counter.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let out = work.await;
    ticker.abort();
    bar.finish_and_clear();
    out
}

pub async fn put(config: Option<PathBuf>, args: PutArgs) -> Result<ExitCode> {
    let overrides =
        PutOptions { needed: args.needed, total: args.total, happy: args.happy, segment_size: args.segment_size };
    if let Some(dest) = &args.path {
        if !crate::paths::is_path(dest) {
            bail!("{dest}: a path starts with / (your root) or with a directory cap");
        }
        return crate::paths::put_path(config, &args.file, dest, &overrides, args.force).await;
    }
    if args.file == std::path::Path::new("-") {
        bail!("`put -` reads standard input into a path: give one (`blackbox put - /dir/name`)");
    }
    let path = args.file.clone();
    let meta = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let s = session(config).await?;
    let opts = s.upload_options(&overrides)?;
    let counter = Arc::new(AtomicU64::new(0));
    let work = s.put(move || std::fs::File::open(&path), meta.len(), &opts, counter.clone());
    let report = with_progress(meta.len(), counter, work).await?;
    if args.explain {
        show::explain(&report);
    }
    println!("{}", report.cap);
    Ok(ExitCode::SUCCESS)
}

pub async fn get(config: Option<PathBuf>, args: GetArgs) -> Result<ExitCode> {
    if crate::paths::is_path(&args.cap) {
        if args.offset != 0 || args.length.is_some() {
            bail!("--offset and --length take a file cap (`blackbox cap PATH` prints it)");
        }
        return crate::paths::get_path(config, &args.cap, args.output.as_deref()).await;
    }
    let cap: ReadCap = args.cap.parse().context("invalid read capability")?;
    let s = session(config).await?;
    let length = args.length.unwrap_or(cap.size.saturating_sub(args.offset));
    let range = Some((args.offset, length));
    let counter = Arc::new(AtomicU64::new(0));
    match &args.output {
        Some(out) => {
            let work = s.get_to_file(&cap, range, out, counter.clone());
            with_progress(length, counter, work).await?;
        }
        None => {
            let mut lock = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            s.get(&cap, range, &mut lock, counter).await?;
            lock.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn check(config: Option<PathBuf>, args: CheckArgs) -> Result<ExitCode> {
    if let Some(path) = &args.recursive {
        let s = session(config).await?;
        let opts = s.audit_options(None, None)?;
        return crate::paths::deep(&s, path, blackbox_client::DeepOp::Check, &opts).await;
    }
    let vcap = parse_any_cap(args.cap.as_deref().unwrap_or_default())?;
    let s = session(config).await?;
    let (report, verified) = s.check(&vcap, args.verify).await?;
    show::check(&vcap, &report);
    if args.leases {
        for (share, peer, expires) in s.leases(&vcap).await {
            println!(
                "  share {share:>3} on {}: lease until {}",
                show::short(&peer.to_string()),
                blackbox_util::utc(expires)
            );
        }
    }
    let (recoverable, found) = match &verified {
        Some(v) => {
            for (share, peer, health) in &v.shares {
                let what = match health {
                    ShareHealth::Good => "good".to_string(),
                    ShareHealth::Corrupt(why) => format!("BAD (corrupt): {why}"),
                    ShareHealth::Unreadable(why) => format!("BAD (unreadable): {why}"),
                };
                println!("  share {share:>3} on {}: {what}", show::short(&peer.to_string()));
            }
            println!("{} distinct shares verified good (need {})", v.good_distinct(), v.needed);
            (v.recoverable(), v.good_distinct())
        }
        None => (report.recoverable(), report.distinct()),
    };
    if recoverable {
        println!("recoverable");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: not recoverable: found {found} distinct good shares, need {}", report.needed);
        Ok(ExitCode::FAILURE)
    }
}

pub async fn nodes(config: Option<PathBuf>, args: NodesArgs) -> Result<ExitCode> {
    let s = session(config).await?;
    let rows = s.node_rows().await;
    if args.json {
        rows.iter().for_each(|r| println!("{}", show::node_json(r)));
        return Ok(ExitCode::SUCCESS);
    }
    show::node_table(&rows);
    Ok(ExitCode::SUCCESS)
}
