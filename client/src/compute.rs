//! Jobs from a session: inputs named by path or cap, placement (`auto` ranks nodes that sell
//! enough cores and RAM by fuel price, reputation and whether they hold the inputs' shares), and
//! verified runs on several nodes whose results and fuel must agree.

use blackbox_core::ReadCap;
use blackbox_net::offer::SignedOffer;
use blackbox_net::wire::JobSpec;
use blackbox_net::{PeerId, Request, Response};
use blackbox_util::now_secs;

use crate::job::JobRun;
use crate::namespace::CapKind;
use crate::reputation::{Outcome, Reputation};
use crate::{ClientError, NodeRef, Session};

/// Where a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The best-ranked node that sells enough.
    Auto,
    /// This node.
    Node(PeerId),
}

/// What a verified run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobVerdict {
    /// One replica only: nothing compared.
    Unverified,
    /// Every replica reported the same result and fuel.
    Agreed(usize),
    /// Replicas disagreed; a further replica decided. The losers were not paid for their end
    /// and lost reputation.
    Decided { losers: Vec<PeerId> },
    /// No result had a majority; nobody was paid for their end.
    Undecided,
}

/// A job's result.
#[derive(Debug)]
pub struct JobResult {
    /// The run whose result is returned.
    pub run: JobRun,
    /// Its output files.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// What verification found.
    pub verdict: JobVerdict,
}

impl Session {
    /// The file cap an input names: a file cap as it is, else a path's read cap.
    pub async fn input_cap(&self, input: &str) -> Result<String, ClientError> {
        let is_file_cap =
            input.starts_with("bb:lit:") || input.starts_with("bb:multi:") || input.parse::<ReadCap>().is_ok();
        if is_file_cap {
            return Ok(input.to_string());
        }
        self.cap_of(input, CapKind::Read).await
    }

    /// Nodes that sell at least the job's cores and memory, best first.
    pub async fn job_candidates(&self, spec: &JobSpec) -> Vec<NodeRef> {
        let rep = Reputation::load(&self.cfg.data_dir);
        let now = now_secs();
        let inputs: Vec<[u8; 32]> =
            spec.inputs.iter().filter_map(|(_, cap)| cap.parse::<ReadCap>().ok()).map(|c| c.storage_index()).collect();
        let fits = |o: &SignedOffer| {
            let r = &o.offer.resources;
            u64::from(r.cpu_millicores) >= u64::from(spec.cores) * 1000 && r.ram_bytes >= spec.memory
        };
        let mut ranked = Vec::new();
        for (node, offer) in &self.offers {
            let Ok(offer) = offer else { continue };
            if !fits(offer) {
                continue;
            }
            let mut held = 0usize;
            for si in &inputs {
                if let Ok(Response::Shares(s)) = self.client.call_plain(node, Request::ListShares { si: *si }).await {
                    held += s.len();
                }
            }
            let price = offer.offer.prices.fuel_sat_per_gfuel;
            ranked.push((node.clone(), price, rep.score(&node.peer, now), held));
        }
        // Cheapest fuel first; among equal prices, better reputation, then more of the data.
        ranked.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)).then(b.3.cmp(&a.3)));
        ranked.into_iter().map(|r| r.0).collect()
    }

    /// Runs `spec` once (`replicas` ≤ 1) or on `replicas` nodes that must agree, streaming a
    /// single run's output through `on_output`.
    pub async fn run_job(
        &self,
        spec: &JobSpec,
        placement: &Placement,
        replicas: usize,
        mut on_output: impl FnMut(&[u8], &[u8]),
    ) -> Result<JobResult, ClientError> {
        let candidates = match placement {
            Placement::Node(peer) => {
                let n = self.client.nodes().iter().find(|n| n.peer == *peer).cloned();
                vec![n.ok_or(ClientError::JobNoNode { why: format!("node {peer} is not known") })?]
            }
            Placement::Auto => self.job_candidates(spec).await,
        };
        if candidates.is_empty() {
            let why = format!("no node sells {} cores and {} bytes of memory", spec.cores, spec.memory);
            return Err(ClientError::JobNoNode { why });
        }
        let out = if replicas <= 1 {
            self.run_single(spec, &candidates, &mut on_output).await
        } else {
            self.run_verified(spec, &candidates, replicas).await
        };
        self.record_outcomes();
        let result = out?;
        if replicas > 1 {
            on_output(&result.run.stdout, &result.run.stderr);
        }
        Ok(result)
    }

    async fn run_single(
        &self,
        spec: &JobSpec,
        candidates: &[NodeRef],
        on_output: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<JobResult, ClientError> {
        let mut refused = None;
        for node in candidates.iter().take(3) {
            match self.client.job_start(node, spec).await {
                Ok(mut run) => {
                    self.client.job_follow(&mut run, true, &mut *on_output).await?;
                    let outputs = self.client.job_collect(&mut run).await?;
                    return Ok(JobResult { run, outputs, verdict: JobVerdict::Unverified });
                }
                Err(e) => refused = Some(e),
            }
            if candidates.len() == 1 {
                break;
            }
        }
        Err(refused.unwrap_or(ClientError::JobNoNode { why: "no node took the job".into() }))
    }

    /// Starts replicas on distinct nodes, follows them without paying their end, compares.
    async fn run_verified(
        &self,
        spec: &JobSpec,
        candidates: &[NodeRef],
        replicas: usize,
    ) -> Result<JobResult, ClientError> {
        let mut next = candidates.iter();
        let mut runs = self.start_replicas(spec, &mut next, replicas).await?;
        let key = |r: &JobRun| r.report.end.as_ref().map(|e| (e.digest, r.report.fuel));
        let agreed = runs.iter().all(|r| key(r) == key(&runs[0]));
        if agreed {
            let n = runs.len();
            let mut outputs = Vec::new();
            for (i, r) in runs.iter_mut().enumerate() {
                let files = self.client.job_collect(r).await?;
                if i == 0 {
                    outputs = files;
                }
            }
            return Ok(JobResult { run: runs.swap_remove(0), outputs, verdict: JobVerdict::Agreed(n) });
        }
        // A tie-breaker on another node; a majority decides.
        runs.extend(self.start_replicas(spec, &mut next, 1).await?);
        let votes = |k| runs.iter().filter(|r| key(r) == k).count();
        let Some(winner) = runs.iter().map(key).find(|k| votes(*k) * 2 > runs.len()) else {
            for r in &runs {
                self.client.note(r.node.peer, Outcome::BadData);
            }
            let mut run = runs.swap_remove(0);
            run.stdout.clear();
            return Ok(JobResult { run, outputs: Vec::new(), verdict: JobVerdict::Undecided });
        };
        let (good, bad): (Vec<JobRun>, Vec<JobRun>) = runs.into_iter().partition(|r| key(r) == winner);
        let losers: Vec<PeerId> = bad.iter().map(|r| r.node.peer).collect();
        for peer in &losers {
            tracing::warn!(%peer, "a replica's result disagrees with the majority: not paid, reputation lowered");
            self.client.note(*peer, Outcome::BadData);
        }
        let mut good = good;
        let mut outputs = Vec::new();
        for (i, r) in good.iter_mut().enumerate() {
            let files = self.client.job_collect(r).await?;
            if i == 0 {
                outputs = files;
            }
        }
        Ok(JobResult { run: good.swap_remove(0), outputs, verdict: JobVerdict::Decided { losers } })
    }

    async fn start_replicas(
        &self,
        spec: &JobSpec,
        next: &mut std::slice::Iter<'_, NodeRef>,
        count: usize,
    ) -> Result<Vec<JobRun>, ClientError> {
        let mut runs = Vec::new();
        while runs.len() < count {
            let Some(node) = next.next() else {
                return Err(ClientError::JobNoNode { why: format!("fewer than {count} more nodes took the job") });
            };
            if let Ok(run) = self.client.job_start(node, spec).await {
                runs.push(run);
            }
        }
        let follows = runs.iter_mut().map(|r| self.client.job_follow(r, false, |_, _| {}));
        for r in futures::future::join_all(follows).await {
            r?;
        }
        Ok(runs)
    }
}
