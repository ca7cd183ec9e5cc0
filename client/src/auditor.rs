//! The auditor: a worker that owns its config and schedule and, on every pass, audits each
//! watched file, repairs it below the threshold and renews its leases past half their length.
//! It is stopped by a cancellation token; what it finds is handed to the caller as events.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use blackbox_core::VerifyCap;
use blackbox_util::now_secs;

use crate::watch::{WatchList, Watched};
use crate::{ClientConfig, ClientError, RepairReport, Session};

/// What one pass did with one watched file.
#[derive(Debug)]
pub enum FileOutcome {
    /// The watch list entry holds no valid cap.
    Skipped(String),
    /// Fewer than k shares could be proved.
    Unrecoverable(ClientError),
    /// Audited (and repaired or renewed where needed).
    Audited {
        /// Distinct shares proved.
        healthy: usize,
        /// Nodes that failed a challenge.
        failing: usize,
        /// The repair, when the file was below the threshold.
        repair: Option<Result<RepairReport, ClientError>>,
        /// Whether a renewal was due and, if so, whether some node renewed.
        renewed: Option<bool>,
    },
}

/// One watched file's line of a pass.
#[derive(Debug)]
pub struct FilePass {
    /// The file, when its cap parsed.
    pub cap: Option<VerifyCap>,
    /// What happened.
    pub outcome: FileOutcome,
}

impl FilePass {
    /// Whether every share is healthy (after repair) and no node failed.
    pub fn fully_healthy(&self) -> bool {
        match (&self.cap, &self.outcome) {
            (Some(cap), FileOutcome::Audited { healthy, failing, repair, .. }) => match repair {
                Some(Ok(r)) => r.healthy_after() == cap.n as usize,
                Some(Err(_)) => false,
                None => *healthy == cap.n as usize && *failing == 0,
            },
            _ => false,
        }
    }
}

/// What the auditor reports as it works.
#[derive(Debug)]
pub enum AuditorEvent {
    /// A file was looked after.
    File(Box<FilePass>),
    /// A pass over every watched file ended.
    PassDone {
        /// Files fully healthy.
        healthy: usize,
        /// Files watched.
        total: usize,
    },
}

/// The auditor worker.
pub struct Auditor {
    cfg: ClientConfig,
}

impl Auditor {
    /// An auditor for the files watched under `cfg`'s data dir, on `cfg`'s `[audit]` schedule.
    pub fn new(cfg: ClientConfig) -> Self {
        Self { cfg }
    }

    /// Repair below this many healthy shares.
    fn threshold(&self) -> usize {
        if self.cfg.audit.repair_below == 0 {
            self.cfg.happy
        } else {
            self.cfg.audit.repair_below
        }
    }

    /// One pass over every watched file; returns (fully healthy files, files).
    pub async fn pass(&self, report: &mut impl FnMut(AuditorEvent)) -> Result<(usize, usize), ClientError> {
        let session = Session::connect(self.cfg.clone()).await?;
        let files = WatchList::load(&self.cfg.data_dir).files;
        let mut healthy = 0;
        for file in &files {
            let pass = self.look_after(&session, file).await;
            healthy += usize::from(pass.fully_healthy());
            report(AuditorEvent::File(Box::new(pass)));
        }
        report(AuditorEvent::PassDone { healthy, total: files.len() });
        Ok((healthy, files.len()))
    }

    async fn look_after(&self, session: &Session, file: &Watched) -> FilePass {
        let cap = match file.verify_cap() {
            Ok(cap) => cap,
            Err(e) => return FilePass { cap: None, outcome: FileOutcome::Skipped(e.to_string()) },
        };
        let opts = match session.audit_options(Some(self.cfg.audit.count), None) {
            Ok(o) => o,
            Err(e) => return FilePass { cap: Some(cap), outcome: FileOutcome::Unrecoverable(e) },
        };
        let audit = match session.audit_file(&cap, &opts).await {
            Ok(a) => a,
            Err(e) => return FilePass { cap: Some(cap), outcome: FileOutcome::Unrecoverable(e) },
        };
        let healthy = audit.healthy_shares().len();
        let repair = if healthy < self.threshold() { Some(session.repair_file(&cap, &opts).await) } else { None };
        if repair.is_none() {
            let placements = audit.healthy_placements();
            let saved = WatchList::update(&self.cfg.data_dir, |l| l.entry(&cap).set_placements(&placements));
            if let Err(e) = saved {
                tracing::warn!(error = %e, "cannot save the watch list");
            }
        }
        let half = u64::from(self.cfg.lease_secs) / 2;
        let renewed = if file.lease_expires == 0 || file.lease_expires < now_secs() + half {
            Some(session.renew_file(&cap, self.cfg.lease_secs).await.is_ok_and(|r| !r.is_empty()))
        } else {
            None
        };
        let failing = audit.failed_nodes().len();
        FilePass { cap: Some(cap), outcome: FileOutcome::Audited { healthy, failing, repair, renewed } }
    }

    /// Runs passes every `[audit] interval_secs` (±10% jitter, so that many files and auditors
    /// do not fall into step) until `cancel` fires; a failed pass is reported and retried.
    pub async fn run(&self, cancel: CancellationToken, mut report: impl FnMut(AuditorEvent)) {
        loop {
            tokio::select! {
                r = self.pass(&mut report) => if let Err(e) = r {
                    tracing::warn!(error = %e, "auditor pass failed");
                },
                _ = cancel.cancelled() => return,
            }
            let base = self.cfg.audit.interval_secs.max(1) as f64;
            let wait = base * rand::thread_rng().gen_range(0.9..1.1);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }
}
