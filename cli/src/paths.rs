//! Namespace commands: ls, mkdir, mv, rm, ln, cap, and the path forms of put, get and the
//! recursive check, audit, renew and repair. Paths start with `/` (the root in `root.cap`) or
//! with a directory cap (`bb:slot-rw:…/a/b`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use blackbox_client::namespace::{CapKind, Stat};
use blackbox_client::{AuditOptions, ClientError, DeepOp, PutOptions, Session};
use blackbox_core::dir::{Entry, Kind};

use crate::commands::session;

/// Entries fetched per page by `ls`.
const PAGE: usize = 1000;

/// `ls` options.
#[derive(Args)]
pub struct LsArgs {
    /// Directory (or file) to list; default `/`.
    path: Option<String>,
    /// Long format: kind, mode, size, modification time (UTC), name.
    #[arg(short = 'l')]
    long: bool,
    /// One JSON object per entry and line.
    #[arg(long)]
    json: bool,
}

/// `mkdir` options.
#[derive(Args)]
pub struct MkdirArgs {
    /// Directory to create.
    #[arg(required_unless_present = "root")]
    path: Option<String>,
    /// Also create missing parents; an existing directory is not an error.
    #[arg(short, long)]
    parents: bool,
    /// Create a new, unlinked directory and print its write cap (e.g. for a new root.cap).
    #[arg(long, conflicts_with_all = ["path", "parents"])]
    root: bool,
}

/// `mv` options.
#[derive(Args)]
pub struct MvArgs {
    /// Entry to move.
    src: String,
    /// New path, or a directory to move it into.
    dst: String,
    /// Replace an existing entry at the destination.
    #[arg(short, long)]
    force: bool,
}

/// `rm` options.
#[derive(Args)]
pub struct RmArgs {
    /// Entry to remove.
    path: String,
    /// Also remove a directory that is not empty.
    #[arg(short, long)]
    recursive: bool,
}

/// `ln` options.
#[derive(Args)]
pub struct LnArgs {
    /// A cap: file (`bb:chk:`, `bb:lit:`) or directory (`bb:slot-rw:`, `bb:slot-ro:`).
    cap: String,
    /// Where to link it.
    path: String,
    /// Replace an existing entry.
    #[arg(short, long)]
    force: bool,
}

/// `cap` options.
#[derive(Args)]
pub struct CapArgs {
    /// Path whose cap to print.
    path: String,
    /// Print the read cap (never a write cap).
    #[arg(long, conflicts_with = "verify")]
    read_only: bool,
    /// Print the verify cap (find and check, not read).
    #[arg(long)]
    verify: bool,
}

/// Whether a command-line word is a namespace path rather than a file cap.
pub fn is_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("bb:slot-")
}

/// `put FILE PATH`: stores `file` (`-`: stdin) and links it at `dest`.
pub async fn put_path(
    config: Option<PathBuf>,
    file: &Path,
    dest: &str,
    opts: &PutOptions,
    force: bool,
) -> Result<ExitCode> {
    if file != Path::new("-") {
        let meta = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", file.display());
        }
    }
    let s = session(config).await?;
    // Standard input is spooled to a private file first: the upload needs the size up front.
    let spool;
    let local = if file == Path::new("-") {
        spool = tempfile::NamedTempFile::new_in(&s.cfg.data_dir).context("cannot create a spool file")?;
        std::io::copy(&mut std::io::stdin().lock(), &mut spool.as_file()).context("reading stdin")?;
        spool.path().to_path_buf()
    } else {
        file.to_path_buf()
    };
    let dest = if dest.ends_with('/') || matches!(s.stat(dest).await, Ok(Stat::Dir(_))) {
        let Some(name) = file.file_name().filter(|_| file != Path::new("-")) else {
            bail!("{dest} is a directory: name the entry to create (standard input has no name)");
        };
        format!("{}/{}", dest.trim_end_matches('/'), name.to_string_lossy())
    } else {
        dest.to_string()
    };
    let entry = s.put_path(&local, &dest, opts, force).await?;
    println!("{}", entry.cap);
    Ok(ExitCode::SUCCESS)
}

/// `get PATH`: writes the file at `path` to `output` (atomically) or stdout.
pub async fn get_path(config: Option<PathBuf>, path: &str, output: Option<&Path>) -> Result<ExitCode> {
    let s = session(config).await?;
    match output {
        Some(out) => {
            let file = blackbox_util::AtomicFile::create(out)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            s.read_path(path, &mut w).await?;
            w.into_inner().map_err(|e| e.into_error())?.commit()?;
        }
        None => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            s.read_path(path, &mut w).await?;
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn kind_char(k: Kind) -> char {
    match k {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
    }
}

/// `rwxr-xr-x` of the permission bits.
fn mode_string(mode: u32) -> String {
    (0..9).map(|i| if mode & (0o400 >> i) != 0 { ['r', 'w', 'x'][i % 3] } else { '-' }).collect()
}

fn print_entry(name: &str, e: &Entry, args: &LsArgs, out: &mut impl Write) -> std::io::Result<()> {
    let suffix = if e.kind == Kind::Dir { "/" } else { "" };
    if args.json {
        let kind = match e.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        };
        let meta: serde_json::Map<String, serde_json::Value> =
            e.metadata.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        let v = serde_json::json!({
            "name": name, "kind": kind, "size": e.size, "mtime": e.mtime_ns / 1_000_000_000,
            "mode": format!("{:o}", e.mode), "content_type": e.content_type, "metadata": meta, "cap": e.cap,
        });
        writeln!(out, "{v}")
    } else if args.long {
        let when = blackbox_util::utc(e.mtime_ns / 1_000_000_000);
        writeln!(out, "{}{} {:>14} {when} {name}{suffix}", kind_char(e.kind), mode_string(e.mode), e.size)
    } else {
        writeln!(out, "{name}{suffix}")
    }
}

pub async fn ls(config: Option<PathBuf>, args: LsArgs) -> Result<ExitCode> {
    let s = session(config).await?;
    let path = args.path.clone().unwrap_or_else(|| "/".into());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let dir = match s.stat(&path).await? {
        Stat::Entry(e) => {
            let name = path.rsplit('/').next().unwrap_or(&path);
            print_entry(name, &e, &args, &mut out)?;
            return Ok(ExitCode::SUCCESS);
        }
        Stat::Dir(d) => d,
    };
    let mut after: Option<String> = None;
    loop {
        let page = s.list(&dir, after.as_deref(), PAGE).await?;
        for (name, e) in &page {
            print_entry(name, e, &args, &mut out)?;
        }
        out.flush()?;
        match page.last() {
            Some((last, _)) if page.len() == PAGE => after = Some(last.clone()),
            _ => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn mkdir(config: Option<PathBuf>, args: MkdirArgs) -> Result<ExitCode> {
    let s = session(config).await?;
    if args.root {
        let opts = s.upload_options(&PutOptions::default())?;
        println!("{}", s.client.dir_create(&opts).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.path.context("mkdir needs a path")?;
    s.mkdir(&path, args.parents).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn mv(config: Option<PathBuf>, args: MvArgs) -> Result<ExitCode> {
    session(config).await?.rename(&args.src, &args.dst, args.force).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn rm(config: Option<PathBuf>, args: RmArgs) -> Result<ExitCode> {
    session(config).await?.remove(&args.path, args.recursive).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn ln(config: Option<PathBuf>, args: LnArgs) -> Result<ExitCode> {
    let s = session(config).await?;
    let (parent, _) = s.resolve_parent(&args.path).await?;
    let entry = s.entry_for_cap(&parent, &args.cap).map_err(|e| match e {
        ClientError::BadCap(c) => anyhow::anyhow!("not a file or directory cap: {c}"),
        other => other.into(),
    })?;
    s.link(&args.path, entry, args.force).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn cap(config: Option<PathBuf>, args: CapArgs) -> Result<ExitCode> {
    let kind = match (args.read_only, args.verify) {
        (_, true) => CapKind::Verify,
        (true, _) => CapKind::Read,
        _ => CapKind::Best,
    };
    println!("{}", session(config).await?.cap_of(&args.path, kind).await?);
    Ok(ExitCode::SUCCESS)
}

/// `check|audit|renew|repair --recursive PATH`: every file and directory reachable.
pub async fn deep(s: &Session, path: &str, op: DeepOp, opts: &AuditOptions) -> Result<ExitCode> {
    let (mut good, mut total) = (0usize, 0usize);
    s.deep(path, op, opts, |o| {
        total += 1;
        match &o.result {
            Ok((true, text)) => {
                good += 1;
                println!("{}: {text}", o.reached.path());
            }
            Ok((false, text)) => println!("{}: NOT HEALTHY: {text}", o.reached.path()),
            Err(e) => println!("{}: FAILED: {e}", o.reached.path()),
        }
    })
    .await?;
    println!("{good} of {total} objects healthy");
    Ok(if good == total { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
