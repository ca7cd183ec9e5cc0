//! Looking after stored files with only their verify caps: audit, renew, repair, and the
//! background auditor.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use blackbox_client::auditor::{Auditor, AuditorEvent, FileOutcome};
use blackbox_client::watch::WatchList;
use blackbox_client::{parse_any_cap, RepairReport};
use blackbox_core::VerifyCap;

use crate::commands::{client_config, session};
use crate::show;

/// `audit` options.
#[derive(Args)]
pub struct AuditArgs {
    /// Read or verify caps to audit (default: every watched file).
    caps: Vec<String>,
    /// Audit every file and directory reachable from this directory path instead.
    #[arg(short, long, value_name = "PATH", conflicts_with = "caps")]
    recursive: Option<String>,
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
    /// Renew every file and directory reachable from this directory path instead.
    #[arg(short, long, value_name = "PATH", conflicts_with = "caps")]
    recursive: Option<String>,
    /// New lease length from now, in days; default from the config.
    #[arg(long)]
    days: Option<f64>,
}

/// `repair` options.
#[derive(Args)]
pub struct RepairArgs {
    /// Read or verify cap of the file.
    #[arg(required_unless_present = "recursive")]
    cap: Option<String>,
    /// Repair every file and directory reachable from this directory path instead.
    #[arg(short, long, value_name = "PATH", conflicts_with = "cap")]
    recursive: Option<String>,
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

fn lease_secs(days: f64) -> Result<u32> {
    let secs = days * 86_400.0;
    if !(secs.is_finite() && secs >= 1.0 && secs <= u32::MAX as f64) {
        bail!("lease must be between 1 second and {} days", u32::MAX / 86_400);
    }
    Ok(secs as u32)
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub async fn audit(config: Option<PathBuf>, args: AuditArgs) -> Result<ExitCode> {
    let s = session(config).await?;
    let opts = s.audit_options(args.count, args.deadline)?;
    if let Some(path) = &args.recursive {
        return crate::paths::deep(&s, path, blackbox_client::DeepOp::Audit, &opts).await;
    }
    let caps = s.caps_or_watched(&args.caps)?;
    let mut healthy = true;
    for cap in &caps {
        match s.audit_file(cap, &opts).await {
            Ok(report) => {
                show::audit(cap, &report);
                healthy &= report.failed_nodes().is_empty() && report.missing_shares().is_empty();
            }
            Err(e) => {
                println!("file {cap}\n  NOT RECOVERABLE: {e}");
                healthy = false;
            }
        }
    }
    Ok(exit(healthy))
}

pub async fn renew(config: Option<PathBuf>, args: RenewArgs) -> Result<ExitCode> {
    let mut s = session(config).await?;
    let lease = args.days.map(lease_secs).transpose()?.unwrap_or(s.cfg.lease_secs);
    if let Some(path) = &args.recursive {
        s.cfg.lease_secs = lease;
        let opts = s.audit_options(None, None)?;
        return crate::paths::deep(&s, path, blackbox_client::DeepOp::Renew, &opts).await;
    }
    let caps = s.caps_or_watched(&args.caps)?;
    let mut ok = true;
    for cap in &caps {
        println!("file {cap}");
        match s.renew_file(cap, lease).await {
            Ok(renewed) if !renewed.is_empty() => {
                for (peer, shares, expires) in &renewed {
                    println!("  {}: {shares} share(s) leased until {expires} (unix)", show::short(&peer.to_string()));
                }
            }
            Ok(_) => {
                println!("  no node renewed its leases");
                ok = false;
            }
            Err(e) => {
                println!("  cannot renew: {e}");
                ok = false;
            }
        }
    }
    Ok(exit(ok))
}

fn print_repair(cap: &VerifyCap, report: &RepairReport) {
    show::audit(cap, &report.audit);
    for (share, peer) in &report.rebuilt {
        println!("  rebuilt share {share} on {}", show::short(&peer.to_string()));
    }
    for (share, why) in &report.failed {
        println!("  could not rebuild share {share}: {why}");
    }
    println!("  {} of {} shares healthy after repair", report.healthy_after(), cap.n);
}

pub async fn repair(config: Option<PathBuf>, args: RepairArgs) -> Result<ExitCode> {
    let s = session(config).await?;
    let opts = s.audit_options(args.count, args.deadline)?;
    if let Some(path) = &args.recursive {
        return crate::paths::deep(&s, path, blackbox_client::DeepOp::Repair, &opts).await;
    }
    let cap = parse_any_cap(args.cap.as_deref().unwrap_or_default())?;
    let report = s.repair_file(&cap, &opts).await?;
    print_repair(&cap, &report);
    Ok(exit(report.healthy_after() == cap.n as usize))
}

pub async fn auditor(config: Option<PathBuf>, action: AuditorAction) -> Result<ExitCode> {
    let cfg = client_config(config)?;
    match action {
        AuditorAction::Add { cap } => {
            let cap = parse_any_cap(&cap)?;
            WatchList::update(&cfg.data_dir, |list| {
                list.entry(&cap);
            })?;
            println!("watching {cap}");
        }
        AuditorAction::List => {
            for f in &WatchList::load(&cfg.data_dir).files {
                println!("{}  {} placements, lease until {}", f.cap, f.placements.len(), f.lease_expires);
            }
        }
        AuditorAction::Run { once: true } => {
            let (healthy, total) = Auditor::new(cfg).pass(&mut print_event).await?;
            return Ok(exit(healthy == total));
        }
        AuditorAction::Run { once: false } => {
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
            Auditor::new(cfg).run(cancel, print_event).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A short name for a file in the auditor's log: the start of its verify cap and its size.
fn label(cap: &VerifyCap) -> String {
    let text = cap.to_string();
    format!("{}… ({} bytes)", &text[..text.len().min(30)], cap.size)
}

fn print_event(event: AuditorEvent) {
    let pass = match event {
        AuditorEvent::PassDone { healthy, total } => {
            return println!("auditor pass done: {healthy} of {total} objects fully healthy");
        }
        AuditorEvent::File(pass) => pass,
    };
    let Some(cap) = &pass.cap else {
        if let FileOutcome::Skipped(why) = &pass.outcome {
            println!("skipping: {why}");
        }
        return;
    };
    let name = pass.path.clone().unwrap_or_else(|| label(cap));
    match &pass.outcome {
        FileOutcome::Unrecoverable(e) => println!("{name}: NOT RECOVERABLE: {e}"),
        FileOutcome::Audited { healthy, failing, repair, .. } => {
            let repairing = if repair.is_some() { "; repairing" } else { "" };
            println!("{name}: {healthy}/{} shares healthy, {failing} failing node(s){repairing}", cap.n);
            match repair {
                Some(Ok(r)) => {
                    for (share, peer) in &r.rebuilt {
                        println!("  rebuilt share {share} on {}", show::short(&peer.to_string()));
                    }
                    println!("  {} of {} shares healthy after repair", r.healthy_after(), cap.n);
                }
                Some(Err(e)) => println!("  repair failed: {e}"),
                None => {}
            }
        }
        FileOutcome::Skipped(_) => {}
    }
}
