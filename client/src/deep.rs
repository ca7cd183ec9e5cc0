//! Everything reachable from a directory (Tahoe's deep-check): every file, every directory's
//! current root version and every node of its tree, for check, audit, renew and repair.

use std::collections::HashSet;

use blackbox_core::dir::Kind;
use blackbox_core::{MultiCap, ReadCap, SlotVerifyCap, VerifyCap};

use crate::{AuditOptions, ClientError, Session};

/// Entries listed per page while walking.
const PAGE: usize = 1000;

/// One stored object reachable from a directory.
#[derive(Debug, Clone)]
pub enum Reached {
    /// A file (immutable, on the grid).
    File {
        /// Its path from the walk's start.
        path: String,
        /// Its verify cap.
        cap: VerifyCap,
    },
    /// A directory: its root slot and the immutable nodes of its tree.
    Dir {
        /// Its path from the walk's start.
        path: String,
        /// The root slot's verify cap.
        slot: SlotVerifyCap,
        /// The tree's immutable nodes.
        nodes: Vec<VerifyCap>,
    },
}

impl Reached {
    /// The path it was reached by.
    pub fn path(&self) -> &str {
        match self {
            Reached::File { path, .. } | Reached::Dir { path, .. } => path,
        }
    }
}

/// What one recursive operation did to one object.
#[derive(Debug)]
pub struct DeepOutcome {
    /// The object.
    pub reached: Reached,
    /// Whether it is fully healthy, with a one-line summary; or why the operation failed.
    pub result: Result<(bool, String), ClientError>,
}

/// Which recursive operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeepOp {
    /// Count the shares on the nodes.
    Check,
    /// Challenge every share.
    Audit,
    /// Extend every lease.
    Renew,
    /// Audit, and rebuild what no node proved.
    Repair,
}

impl Session {
    /// Walks every directory reachable from `path` (each once, cycles included) and returns
    /// what it holds; literal files (nothing stored) and symlinks are skipped.
    pub async fn reachable(&self, path: &str) -> Result<Vec<Reached>, ClientError> {
        let start = self.resolve_dir(path).await?;
        let mut seen = HashSet::new();
        let mut todo = vec![(path.trim_end_matches('/').to_string(), start)];
        let mut out = Vec::new();
        while let Some((at, dir)) = todo.pop() {
            let read = dir.read();
            if !seen.insert(read.verify_cap().storage_index()) {
                continue;
            }
            let snap = self.client.dir_read(&read).await?;
            let nodes = self.client.dir_node_caps(&read, &snap).await?;
            out.push(Reached::Dir {
                path: if at.is_empty() { "/".into() } else { at.clone() },
                slot: read.verify_cap(),
                nodes: nodes.iter().map(ReadCap::verify_cap).collect(),
            });
            let mut after: Option<String> = None;
            loop {
                let page = self.client.dir_list(&read, &snap, after.as_deref(), PAGE).await?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (name, entry) in page {
                    let child_path = format!("{at}/{name}");
                    match entry.kind {
                        Kind::Dir => match Session::child_dir(&dir, &entry, &child_path) {
                            Ok(d) => todo.push((child_path, d)),
                            Err(e) => tracing::warn!(path = %child_path, error = %e, "skipping a bad directory entry"),
                        },
                        Kind::File => self.reach_file(&child_path, &entry.cap, &mut out).await,
                        Kind::Symlink => {}
                    }
                }
            }
        }
        Ok(out)
    }

    /// The stored files behind one file cap: itself, or a multi-part file's manifest and parts
    /// (literal files hold nothing on the grid).
    async fn reach_file(&self, path: &str, cap: &str, out: &mut Vec<Reached>) {
        if let Ok(r) = cap.parse::<ReadCap>() {
            out.push(Reached::File { path: path.to_string(), cap: r.verify_cap() });
            return;
        }
        let Ok(m) = cap.parse::<MultiCap>() else { return };
        if let Ok(r) = m.manifest.parse::<ReadCap>() {
            out.push(Reached::File { path: format!("{path} (manifest)"), cap: r.verify_cap() });
        }
        match self.client.manifest(&m).await {
            Ok(manifest) => {
                for (i, part) in manifest.parts.iter().enumerate() {
                    if let Ok(r) = part.cap.parse::<ReadCap>() {
                        out.push(Reached::File { path: format!("{path} (part {})", i + 1), cap: r.verify_cap() });
                    }
                }
            }
            Err(e) => tracing::warn!(%path, error = %e, "cannot read a multi-part file's manifest"),
        }
    }

    /// Applies `op` to everything reachable from `path`, calling `each` as objects finish.
    pub async fn deep(
        &self,
        path: &str,
        op: DeepOp,
        opts: &AuditOptions,
        mut each: impl FnMut(&DeepOutcome),
    ) -> Result<Vec<DeepOutcome>, ClientError> {
        let mut outcomes = Vec::new();
        for reached in self.reachable(path).await? {
            let result = match &reached {
                Reached::File { cap, .. } => self.deep_file(cap, op, opts).await,
                Reached::Dir { slot, nodes, .. } => self.deep_dir(slot, nodes, op, opts).await,
            };
            let outcome = DeepOutcome { reached, result };
            each(&outcome);
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn deep_file(&self, cap: &VerifyCap, op: DeepOp, opts: &AuditOptions) -> Result<(bool, String), ClientError> {
        let lease = self.cfg.lease_secs;
        let c = &self.client;
        Ok(match op {
            DeepOp::Check => {
                let r = self.recorded(c.check(cap)).await;
                if !r.recoverable() {
                    return Err(ClientError::NotEnoughShares {
                        found: r.distinct(),
                        needed: cap.k as usize,
                        asked: r.asked,
                        answered: r.answered,
                    });
                }
                (
                    r.distinct() == cap.n as usize,
                    format!("{} of {} shares, happiness {}", r.distinct(), cap.n, r.happiness),
                )
            }
            DeepOp::Audit => {
                let (a, _) = self.recorded(c.audit(cap, &[], opts)).await?;
                let ok = a.failed_nodes().is_empty() && a.missing_shares().is_empty();
                (ok, format!("{} of {} shares proved", a.healthy_shares().len(), cap.n))
            }
            DeepOp::Renew => {
                let r = self.recorded(c.renew(cap, lease)).await?;
                // A lease already running at least that long counts as renewed (leases only grow).
                let want = blackbox_util::now_secs() + u64::from(lease).saturating_sub(60);
                let until = r.iter().map(|(_, _, e)| *e).min().unwrap_or(0);
                let ok = !r.is_empty() && until >= want;
                (ok, format!("{} nodes hold leases until {}", r.len(), blackbox_util::utc(until)))
            }
            DeepOp::Repair => {
                let r = self.recorded(c.repair(cap, &[], opts, lease)).await?;
                let ok = r.healthy_after() == cap.n as usize;
                (ok, format!("{} of {} shares healthy ({} rebuilt)", r.healthy_after(), cap.n, r.rebuilt.len()))
            }
        })
    }

    async fn deep_dir(
        &self,
        slot: &SlotVerifyCap,
        nodes: &[VerifyCap],
        op: DeepOp,
        opts: &AuditOptions,
    ) -> Result<(bool, String), ClientError> {
        let lease = self.cfg.lease_secs;
        let (mut ok, root) = match op {
            DeepOp::Repair => {
                let state = self.client.slot_state(slot).await;
                let n = state.readable().map_or(0, |v| v.header.header.share_header.params.n());
                let r = self.recorded(self.client.repair_slot_from(slot, &state, opts, lease)).await?;
                (
                    r.healthy_after() >= n,
                    format!("root: {} shares healthy ({} rebuilt)", r.healthy_after(), r.rebuilt.len()),
                )
            }
            _ => {
                let state = self.client.slot_state(slot).await;
                let v = state
                    .readable()
                    .ok_or(ClientError::SlotUnreadable { highest: state.max_seen, found: state.answered })?;
                let (ok, text) = self.deep_file(&v.content_cap(), op, opts).await?;
                (ok, format!("root v{}: {text}", v.sequence()))
            }
        };
        let mut bad = 0;
        for n in nodes {
            match self.deep_file(n, op, opts).await {
                Ok((true, _)) => {}
                Ok((false, _)) => bad += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "directory node");
                    bad += 1;
                }
            }
        }
        ok &= bad == 0;
        Ok((ok, format!("{root}; {} tree nodes, {bad} not healthy", nodes.len())))
    }
}
