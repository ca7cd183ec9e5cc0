//! Looking after stored files with only their verify caps: audit, renew and repair through a
//! [`Session`], keeping the watch list's placements and lease expiries up to date.

use std::time::Duration;

use blackbox_core::VerifyCap;
use blackbox_net::PeerId;

use crate::watch::WatchList;
use crate::{AuditOptions, AuditReport, ClientError, RepairReport, Session};

/// Shares renewed per node: (node, shares, new expiry in Unix seconds).
pub type Renewed = Vec<(PeerId, u32, u64)>;

impl Session {
    /// Audit options: `count` pieces per share (default: a day of the auditor's schedule) and
    /// `deadline` seconds per answer (default from the config).
    pub fn audit_options(&self, count: Option<u32>, deadline: Option<f64>) -> Result<AuditOptions, ClientError> {
        let audit = &self.cfg.audit;
        let day = audit.count.saturating_mul((86_400 / audit.interval_secs.max(1)) as u32).max(1);
        let deadline = deadline.unwrap_or(audit.deadline_secs as f64);
        if !(deadline.is_finite() && deadline > 0.0 && deadline < 1e9) {
            return Err(ClientError::BadDeadline(deadline));
        }
        Ok(AuditOptions { count: count.unwrap_or(day).max(1), deadline: Duration::from_secs_f64(deadline) })
    }

    /// The caps given (read or verify caps), or every watched file when none is.
    pub fn caps_or_watched(&self, caps: &[String]) -> Result<Vec<VerifyCap>, ClientError> {
        if !caps.is_empty() {
            return caps.iter().map(|c| crate::parse_any_cap(c)).collect();
        }
        let list = WatchList::load(&self.cfg.data_dir);
        if list.files.is_empty() {
            return Err(ClientError::NothingWatched);
        }
        list.files.iter().map(|f| Ok(f.verify_cap()?)).collect()
    }

    /// Where the watch list last saw each share of `cap`.
    fn expected(&self, cap: &VerifyCap) -> Vec<(u8, PeerId)> {
        WatchList::load(&self.cfg.data_dir).get(cap).map(|w| w.expected()).unwrap_or_default()
    }

    /// Challenges every share of the file (proofs of retrievability).
    pub async fn audit_file(&self, cap: &VerifyCap, opts: &AuditOptions) -> Result<AuditReport, ClientError> {
        let exp = self.expected(cap);
        Ok(self.recorded(self.client.audit(cap, &exp, opts)).await?.0)
    }

    /// Extends the file's leases by `lease_secs` on every node holding its shares; a watched file
    /// records the earliest new expiry.
    pub async fn renew_file(&self, cap: &VerifyCap, lease_secs: u32) -> Result<Renewed, ClientError> {
        let renewed = self.recorded(self.client.renew(cap, lease_secs)).await?;
        if let Some(earliest) = renewed.iter().map(|(_, _, e)| *e).min() {
            WatchList::update(&self.cfg.data_dir, |list| {
                if list.get(cap).is_some() {
                    list.entry(cap).lease_expires = earliest;
                }
            })
            .map_err(|source| ClientError::State { what: "the watch list", source })?;
        }
        Ok(renewed)
    }

    /// Audits the file and rebuilds the shares no node proved onto other nodes; the watch list
    /// then holds the proved and rebuilt placements.
    pub async fn repair_file(&self, cap: &VerifyCap, opts: &AuditOptions) -> Result<RepairReport, ClientError> {
        let exp = self.expected(cap);
        let report = self.recorded(self.client.repair(cap, &exp, opts, self.cfg.lease_secs)).await?;
        let mut placements = report.audit.healthy_placements();
        placements.extend(report.rebuilt.iter().copied());
        WatchList::update(&self.cfg.data_dir, |list| list.entry(cap).set_placements(&placements))
            .map_err(|source| ClientError::State { what: "the watch list", source })?;
        Ok(report)
    }

    /// Adds a file to the watch list (only its verify cap is kept).
    pub fn watch(&self, cap: &VerifyCap) -> Result<(), ClientError> {
        WatchList::update(&self.cfg.data_dir, |list| {
            list.entry(cap);
        })
        .map_err(|source| ClientError::State { what: "the watch list", source })
    }
}
