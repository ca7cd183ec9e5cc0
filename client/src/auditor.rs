//! The auditor: a worker that owns its config and schedule and, on every pass, audits each
//! watched file, repairs it below the threshold and renews its leases past half their length.
//! It is stopped by a cancellation token; what it finds is handed to the caller as events.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use blackbox_core::{SlotVerifyCap, VerifyCap};
use blackbox_util::now_secs;

use crate::watch::WatchList;
use crate::{ClientConfig, ClientError, Reached, RepairReport, Session};

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
    /// Where it was reached in the namespace (`None`: from the watch list); a directory's root
    /// version and tree nodes are named `PATH (root)` and `PATH (tree node)`.
    pub path: Option<String>,
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

/// How an object is kept track of: in the watch list (with its recorded lease expiry), or
/// reached in the namespace (a directory root version with its slot).
enum Kept {
    Watched(u64),
    Reached(Option<SlotVerifyCap>),
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

    /// One pass over every watched file and everything reachable from the root directory (when
    /// the data dir has a `root.cap`); returns (fully healthy files, files).
    pub async fn pass(&self, report: &mut impl FnMut(AuditorEvent)) -> Result<(usize, usize), ClientError> {
        let session = Session::connect(self.cfg.clone()).await?;
        let files = WatchList::load(&self.cfg.data_dir).files;
        let (mut healthy, mut total) = (0, 0);
        let mut count = |pass: FilePass, report: &mut dyn FnMut(AuditorEvent)| {
            healthy += usize::from(pass.fully_healthy());
            total += 1;
            report(AuditorEvent::File(Box::new(pass)));
        };
        for file in &files {
            let pass = match file.verify_cap() {
                Ok(cap) => self.tend(&session, cap, Kept::Watched(file.lease_expires)).await,
                Err(e) => FilePass { cap: None, path: None, outcome: FileOutcome::Skipped(e.to_string()) },
            };
            count(pass, report);
        }
        if self.cfg.data_dir.join("root.cap").exists() {
            for (path, cap, kept) in self.namespace(&session).await {
                let mut pass = self.tend(&session, cap, kept).await;
                pass.path = Some(path);
                count(pass, report);
            }
        }
        report(AuditorEvent::PassDone { healthy, total });
        Ok((healthy, total))
    }

    /// Every stored object reachable from the root: files, each directory's root version and
    /// the nodes of its tree.
    async fn namespace(&self, session: &Session) -> Vec<(String, VerifyCap, Kept)> {
        let reached = match session.reachable("/").await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot walk the root directory");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for r in reached {
            match r {
                Reached::File { path, cap } => out.push((path, cap, Kept::Reached(None))),
                Reached::Dir { path, slot, nodes } => {
                    let state = session.client.slot_state(&slot).await;
                    if let Some(v) = state.readable() {
                        out.push((format!("{path} (root)"), v.content_cap(), Kept::Reached(Some(slot))));
                    }
                    let label = format!("{path} (tree node)");
                    out.extend(nodes.into_iter().map(|n| (label.clone(), n, Kept::Reached(None))));
                }
            }
        }
        out
    }

    /// Audits one object, repairs it below the threshold and renews its leases past half their length.
    async fn tend(&self, session: &Session, cap: VerifyCap, kept: Kept) -> FilePass {
        let fail = |cap, e| FilePass { cap: Some(cap), path: None, outcome: FileOutcome::Unrecoverable(e) };
        let opts = match session.audit_options(Some(self.cfg.audit.count), None) {
            Ok(o) => o,
            Err(e) => return fail(cap, e),
        };
        let audit = match &kept {
            Kept::Watched(_) => session.audit_file(&cap, &opts).await,
            Kept::Reached(_) => session.client.audit(&cap, &[], &opts).await.map(|(a, _)| a),
        };
        let audit = match audit {
            Ok(a) => a,
            Err(e) => return fail(cap, e),
        };
        let healthy = audit.healthy_shares().len();
        let lease = self.cfg.lease_secs;
        let repair = if healthy >= self.threshold() {
            None
        } else {
            Some(match &kept {
                Kept::Watched(_) => session.repair_file(&cap, &opts).await,
                Kept::Reached(Some(slot)) => session.client.repair_slot(slot, &opts, lease).await,
                Kept::Reached(None) => session.client.repair(&cap, &[], &opts, lease).await,
            })
        };
        if let (None, Kept::Watched(_)) = (&repair, &kept) {
            let placements = audit.healthy_placements();
            let saved = WatchList::update(&self.cfg.data_dir, |l| l.entry(&cap).set_placements(&placements));
            if let Err(e) = saved {
                tracing::warn!(error = %e, "cannot save the watch list");
            }
        }
        let expires = match kept {
            Kept::Watched(e) => e,
            Kept::Reached(_) => session.leases(&cap).await.iter().map(|(_, _, e)| *e).min().unwrap_or(0),
        };
        let half = u64::from(lease) / 2;
        let renewed = if expires == 0 || expires < now_secs() + half {
            Some(session.renew_file(&cap, lease).await.is_ok_and(|r| !r.is_empty()))
        } else {
            None
        };
        let failing = audit.failed_nodes().len();
        FilePass { cap: Some(cap), path: None, outcome: FileOutcome::Audited { healthy, failing, repair, renewed } }
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
