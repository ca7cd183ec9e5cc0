//! Looking after stored files with only their verify caps: audit, renew, repair, and the
//! background auditor.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use rand::Rng;

use blackbox_client::watch::WatchList;
use blackbox_client::{AuditOptions, AuditReport, Client, ClientConfig, Verdict};
use blackbox_core::VerifyCap;
use blackbox_net::{Libp2pTransport, PeerId};
use blackbox_storage_node::daemon::now_secs;

use crate::commands::{client, load_config, parse_any_cap, record_outcomes, short};

/// `audit` options.
#[derive(Args)]
pub struct AuditArgs {
    /// Read or verify caps to audit (default: every watched file).
    caps: Vec<String>,
    /// Pieces (1 KiB) asked of each share; default: a day of the auditor's schedule.
    #[arg(long)]
    count: Option<u32>,
    /// Seconds a node has to answer each challenge; default from the config.
    #[arg(long)]
    deadline: Option<f64>,
}

/// `renew` options.
#[derive(Args)]
pub struct RenewArgs {
    /// Read or verify caps (default: every watched file).
    caps: Vec<String>,
    /// New lease length from now, in days; default from the config.
    #[arg(long)]
    days: Option<f64>,
}

/// `repair` options.
#[derive(Args)]
pub struct RepairArgs {
    /// Read or verify cap of the file.
    cap: String,
    /// Pieces asked of each share in the audit that decides what to rebuild.
    #[arg(long)]
    count: Option<u32>,
    /// Seconds a node has to answer each challenge.
    #[arg(long)]
    deadline: Option<f64>,
}

/// `auditor` actions.
#[derive(Subcommand)]
pub enum AuditorAction {
    /// Watch a file (verify or read cap; only the verify cap is kept).
    Add {
        /// The cap.
        cap: String,
    },
    /// List the watched files.
    List,
    /// Audit, renew and repair the watched files on the schedule of the config's [audit] section,
    /// until interrupted.
    Run {
        /// One pass over every file, then exit (1 if any file is not fully healthy).
        #[arg(long)]
        once: bool,
    },
}

fn audit_options(cfg: &ClientConfig, count: Option<u32>, deadline: Option<f64>) -> Result<AuditOptions> {
    let day = cfg.audit.count.saturating_mul((86_400 / cfg.audit.interval_secs.max(1)) as u32).max(1);
    let deadline = deadline.unwrap_or(cfg.audit.deadline_secs as f64);
    if !(deadline.is_finite() && deadline > 0.0) {
        bail!("--deadline must be a positive number of seconds");
    }
    Ok(AuditOptions { count: count.unwrap_or(day).max(1), deadline: Duration::from_secs_f64(deadline) })
}

fn lease_secs(days: f64) -> Result<u32> {
    let secs = days * 86_400.0;
    if !(secs.is_finite() && secs >= 1.0 && secs <= u32::MAX as f64) {
        bail!("lease must be between 1 second and {} days", u32::MAX / 86_400);
    }
    Ok(secs as u32)
}

/// Caps from the command line, or every watched file.
fn caps_or_watched(cfg: &ClientConfig, caps: &[String]) -> Result<Vec<VerifyCap>> {
    if !caps.is_empty() {
        return caps.iter().map(|c| parse_any_cap(c)).collect();
    }
    let list = WatchList::load(&cfg.data_dir);
    if list.files.is_empty() {
        bail!("no cap given and no watched files (`blackbox put` and `blackbox auditor add` watch files)");
    }
    list.files.iter().map(|f| f.verify_cap().map_err(anyhow::Error::msg)).collect()
}

/// A short name for a file in the auditor's log: the start of its verify cap and its size.
fn label(cap: &VerifyCap) -> String {
    let text = cap.to_string();
    format!("{}… ({} bytes)", &text[..text.len().min(30)], cap.size)
}

fn print_audit(cap: &VerifyCap, report: &AuditReport) {
    println!("file {cap}");
    for r in &report.results {
        let what = match &r.verdict {
            Verdict::Passed => format!("ok ({} ms)", r.millis),
            Verdict::Missing => "FAIL: share missing".into(),
            Verdict::BadProof(why) => format!("FAIL: bad proof: {why}"),
            Verdict::Late => format!("FAIL: no answer within the deadline ({} ms)", r.millis),
            Verdict::Unreachable(why) => format!("FAIL: unreachable: {why}"),
        };
        println!("  share {:>3} on {}: {what}", r.share, short(&r.peer.to_string()));
    }
    let missing: Vec<String> = report.missing_shares().iter().map(ToString::to_string).collect();
    let failed: Vec<String> = report.failed_nodes().iter().map(|p| p.to_string()).collect();
    println!(
        "  {} of {} shares healthy (need {}); missing shares: {}; failing nodes: {}",
        report.healthy_shares().len(),
        report.n,
        report.k,
        if missing.is_empty() { "none".into() } else { missing.join(", ") },
        if failed.is_empty() { "none".into() } else { failed.join(", ") }
    );
}

/// Updates a watched file's placements with what an audit proved.
fn remember(cfg: &ClientConfig, cap: &VerifyCap, placements: &[(u8, PeerId)], lease_expires: Option<u64>) {
    let mut list = WatchList::load(&cfg.data_dir);
    let entry = list.entry(cap);
    entry.set_placements(placements);
    if let Some(e) = lease_expires {
        entry.lease_expires = e;
    }
    if let Err(e) = list.save() {
        tracing::warn!(error = %e, "cannot save the watch list");
    }
}

fn expected(cfg: &ClientConfig, cap: &VerifyCap) -> Vec<(u8, PeerId)> {
    WatchList::load(&cfg.data_dir).get(cap).map(|w| w.expected()).unwrap_or_default()
}

pub async fn audit(config: Option<PathBuf>, args: AuditArgs) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let caps = caps_or_watched(&cfg, &args.caps)?;
    let opts = audit_options(&cfg, args.count, args.deadline)?;
    let c = client(&cfg).await?;
    let mut healthy = true;
    for cap in &caps {
        let exp = expected(&cfg, cap);
        let r = c.audit(cap, &exp, &opts).await;
        record_outcomes(&cfg, &c);
        match r {
            Ok((report, _)) => {
                print_audit(cap, &report);
                healthy &= report.failed_nodes().is_empty() && report.missing_shares().is_empty();
            }
            Err(e) => {
                println!("file {cap}\n  NOT RECOVERABLE: {e}");
                healthy = false;
            }
        }
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub async fn renew(config: Option<PathBuf>, args: RenewArgs) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let caps = caps_or_watched(&cfg, &args.caps)?;
    let lease = match args.days {
        Some(d) => lease_secs(d)?,
        None => cfg.lease_secs,
    };
    let c = client(&cfg).await?;
    let mut ok = true;
    for cap in &caps {
        ok &= renew_one(&cfg, &c, cap, lease, true).await;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Renews one file's leases; prints per node if `verbose`. False if no node renewed.
async fn renew_one(
    cfg: &ClientConfig,
    c: &Client<Libp2pTransport>,
    cap: &VerifyCap,
    lease: u32,
    verbose: bool,
) -> bool {
    let r = c.renew(cap, lease).await;
    record_outcomes(cfg, c);
    match r {
        Ok(renewed) if !renewed.is_empty() => {
            let earliest = renewed.iter().map(|(_, _, e)| *e).min().unwrap_or(0);
            if verbose {
                println!("file {cap}");
                for (peer, shares, expires) in &renewed {
                    println!("  {}: {shares} share(s) leased until {expires} (unix)", short(&peer.to_string()));
                }
            }
            let mut list = WatchList::load(&cfg.data_dir);
            if list.get(cap).is_some() {
                list.entry(cap).lease_expires = earliest;
                if let Err(e) = list.save() {
                    tracing::warn!(error = %e, "cannot save the watch list");
                }
            }
            true
        }
        Ok(_) => {
            println!("file {cap}\n  no node renewed its leases");
            false
        }
        Err(e) => {
            println!("file {cap}\n  cannot renew: {e}");
            false
        }
    }
}

pub async fn repair(config: Option<PathBuf>, args: RepairArgs) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let cap = parse_any_cap(&args.cap)?;
    let opts = audit_options(&cfg, args.count, args.deadline)?;
    let c = client(&cfg).await?;
    let ok = repair_one(&cfg, &c, &cap, &opts, true).await?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Audits and repairs one file; true if every share is healthy afterwards.
async fn repair_one(
    cfg: &ClientConfig,
    c: &Client<Libp2pTransport>,
    cap: &VerifyCap,
    opts: &AuditOptions,
    verbose: bool,
) -> Result<bool> {
    let exp = expected(cfg, cap);
    let r = c.repair(cap, &exp, opts, cfg.lease_secs).await;
    record_outcomes(cfg, c);
    let report = r?;
    if verbose {
        print_audit(cap, &report.audit);
    }
    for (share, peer) in &report.rebuilt {
        println!("  rebuilt share {share} on {}", short(&peer.to_string()));
    }
    for (share, why) in &report.failed {
        println!("  could not rebuild share {share}: {why}");
    }
    let mut placements = report.audit.healthy_placements();
    placements.extend(report.rebuilt.iter().copied());
    remember(cfg, cap, &placements, None);
    let after = report.healthy_after();
    println!("  {after} of {} shares healthy after repair", cap.n);
    Ok(after == cap.n as usize)
}

pub async fn auditor(config: Option<PathBuf>, action: AuditorAction) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    match action {
        AuditorAction::Add { cap } => {
            let cap = parse_any_cap(&cap)?;
            let mut list = WatchList::load(&cfg.data_dir);
            list.entry(&cap);
            list.save()?;
            println!("watching {cap}");
            Ok(ExitCode::SUCCESS)
        }
        AuditorAction::List => {
            for f in &WatchList::load(&cfg.data_dir).files {
                println!("{}  {} placements, lease until {}", f.cap, f.placements.len(), f.lease_expires);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditorAction::Run { once } => run_auditor(&cfg, once).await,
    }
}

/// One pass over every watched file: audit, renew leases past half their length, repair below
/// the threshold. Returns how many files are fully healthy and how many there are.
async fn pass(cfg: &ClientConfig, c: &Client<Libp2pTransport>) -> Result<(usize, usize)> {
    let list = WatchList::load(&cfg.data_dir);
    let opts = audit_options(cfg, Some(cfg.audit.count), None)?;
    let threshold = if cfg.audit.repair_below == 0 { cfg.happy } else { cfg.audit.repair_below };
    let mut healthy_files = 0;
    for file in &list.files {
        let cap = match file.verify_cap() {
            Ok(cap) => cap,
            Err(e) => {
                println!("skipping: {e}");
                continue;
            }
        };
        let r = c.audit(&cap, &file.expected(), &opts).await;
        record_outcomes(cfg, c);
        let report = match r {
            Ok((report, _)) => report,
            Err(e) => {
                println!("{}: NOT RECOVERABLE: {e}", label(&cap));
                continue;
            }
        };
        let healthy = report.healthy_shares().len();
        let failed = report.failed_nodes().len();
        println!(
            "{}: {healthy}/{} shares healthy, {failed} failing node(s){}",
            label(&cap),
            cap.n,
            if healthy < threshold { "; repairing" } else { "" }
        );
        let mut placements = report.healthy_placements();
        if healthy < threshold {
            match repair_one(cfg, c, &cap, &opts, false).await {
                Ok(true) => healthy_files += 1,
                Ok(false) => {}
                Err(e) => println!("  repair failed: {e}"),
            }
            placements = WatchList::load(&cfg.data_dir).get(&cap).map(|w| w.expected()).unwrap_or(placements);
        } else if healthy == cap.n as usize && failed == 0 {
            healthy_files += 1;
        }
        remember(cfg, &cap, &placements, None);
        let now = now_secs();
        let half = u64::from(cfg.lease_secs) / 2;
        if file.lease_expires == 0 || file.lease_expires < now + half {
            renew_one(cfg, c, &cap, cfg.lease_secs, false).await;
        }
    }
    Ok((healthy_files, list.files.len()))
}

async fn run_auditor(cfg: &ClientConfig, once: bool) -> Result<ExitCode> {
    loop {
        let c = client(cfg).await?;
        let (healthy, total) = pass(cfg, &c).await?;
        println!("auditor pass done: {healthy} of {total} files fully healthy");
        if once {
            return Ok(if healthy == total { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        // ±10% jitter so that many files and auditors do not fall into step.
        let base = cfg.audit.interval_secs.max(1) as f64;
        let wait = base * rand::thread_rng().gen_range(0.9..1.1);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}
