//! Running a job on one node: start it, poll its progress (streaming stdout and stderr), pay for
//! the fuel and core-seconds it reports as it goes — never past the job's own caps — and fetch
//! its output files once it ended and is paid for.

use std::time::{Duration, Instant};

use blackbox_net::wire::{JobReport, JobSpec};
use blackbox_net::{Request, Response, Transport};
use blackbox_payments::Usage;

use crate::reputation::Outcome;
use crate::{Client, ClientError, NodeRef};

/// How often a running job is polled.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Failed polls in a row after which the node counts as gone.
const POLL_FAILURES: u32 = 3;
/// Slack allowed on the node's count of core-seconds over what the client saw elapse.
const CORE_SECS_SLACK: u64 = 2;

/// A job on one node, as far as the client has followed it.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// The node.
    pub node: NodeRef,
    /// The node's id of the job.
    pub job: u64,
    /// The newest report.
    pub report: JobReport,
    /// Everything it wrote to stdout and stderr.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
    fuel_cap: u64,
    cores: u32,
    started: Instant,
}

impl JobRun {
    /// What the buyer accepts to pay for in all: what the node reports, within the job's caps;
    /// the end's last slice only when `settle`.
    fn accept(&self, settle: bool) -> (u64, u64) {
        let r = &self.report;
        if r.end.is_some() && !settle {
            return (r.fuel_charged, r.core_secs_charged);
        }
        let seen = self.started.elapsed().as_secs() + CORE_SECS_SLACK;
        (r.fuel.min(self.fuel_cap), r.core_secs.min(seen.saturating_mul(u64::from(self.cores))))
    }

    /// Whether the node has been paid for everything the job used.
    pub fn settled(&self) -> bool {
        self.report.fuel_charged >= self.report.fuel && self.report.core_secs_charged >= self.report.core_secs
    }
}

impl<T: Transport> Client<T> {
    /// Starts `spec` on `node`; nothing is charged until the job uses fuel.
    pub async fn job_start(&self, node: &NodeRef, spec: &JobSpec) -> Result<JobRun, ClientError> {
        let started = Instant::now();
        // One satoshi of fuel, so that the envelope names the channel the job is paid from.
        let delta = Usage::default().with_fuel(1);
        match self.call_billed(node, Request::JobStart(spec.clone()), delta).await? {
            Response::JobStarted { job } => Ok(JobRun {
                node: node.clone(),
                job,
                report: JobReport::default(),
                stdout: Vec::new(),
                stderr: Vec::new(),
                fuel_cap: spec.fuel,
                cores: spec.cores,
                started,
            }),
            other => Err(ClientError::unexpected(node, &other)),
        }
    }

    /// Polls the job once, paying what it used so far (and its end too when `settle`); returns
    /// the new stdout and stderr bytes.
    pub async fn job_poll(&self, run: &mut JobRun, settle: bool) -> Result<(usize, usize), ClientError> {
        let (accept_fuel, accept_core_secs) = run.accept(settle);
        let last = &run.report;
        let delta = Usage::default()
            .with_fuel(accept_fuel.saturating_sub(last.fuel_charged))
            .with_cpu(accept_core_secs.saturating_sub(last.core_secs_charged));
        let req = Request::JobPoll {
            job: run.job,
            stdout_from: run.stdout.len() as u64,
            stderr_from: run.stderr.len() as u64,
            accept_fuel,
            accept_core_secs,
        };
        let report = match self.call_billed(&run.node, req, delta).await? {
            Response::Job(r) => r,
            other => return Err(ClientError::unexpected(&run.node, &other)),
        };
        if report.fuel_charged > accept_fuel.max(last.fuel_charged)
            || report.core_secs_charged > accept_core_secs.max(last.core_secs_charged)
        {
            self.note(run.node.peer, Outcome::BadData);
            return Err(ClientError::JobOvercharged { peer: run.node.peer });
        }
        if let Some(p) = &self.payments {
            let fuel = report.fuel_charged.saturating_sub(last.fuel_charged);
            let cores = report.core_secs_charged.saturating_sub(last.core_secs_charged);
            if fuel > 0 || cores > 0 {
                p.note_job(&run.node.peer, fuel, cores).await?;
            }
        }
        let new = (report.stdout.len(), report.stderr.len());
        run.stdout.extend_from_slice(&report.stdout);
        run.stderr.extend_from_slice(&report.stderr);
        run.report = report;
        Ok(new)
    }

    /// Follows a started job to its end, calling `on_output(stdout, stderr)` with every new
    /// piece; pays its end's last slice only when `settle` (verified runs settle after checking).
    pub async fn job_follow(
        &self,
        run: &mut JobRun,
        settle: bool,
        mut on_output: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), ClientError> {
        let mut failures = 0;
        loop {
            let (o, e) = (run.stdout.len(), run.stderr.len());
            match self.job_poll(run, settle).await {
                Ok(_) => failures = 0,
                Err(err) if failures + 1 >= POLL_FAILURES => {
                    self.note(run.node.peer, Outcome::Failed);
                    return Err(ClientError::JobLost { peer: run.node.peer, why: err.to_string() });
                }
                Err(_) => failures += 1,
            }
            on_output(&run.stdout[o..], &run.stderr[e..]);
            let drained =
                run.stdout.len() as u64 >= run.report.stdout_len && run.stderr.len() as u64 >= run.report.stderr_len;
            if run.report.end.is_some() && drained && (!settle || run.settled()) {
                return Ok(());
            }
            if run.report.end.is_none() {
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    }

    /// Pays the end of a followed job and takes its output files.
    pub async fn job_collect(&self, run: &mut JobRun) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        while !run.settled() {
            self.job_poll(run, true).await?;
        }
        let mut files = Vec::new();
        for (name, size) in run.report.outputs.clone() {
            let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
            while (data.len() as u64) < size {
                let want = (size - data.len() as u64).min(512 << 10);
                let req = Request::JobOutput { job: run.job, name: name.clone(), offset: data.len() as u64 };
                match self.call_billed(&run.node, req, Usage::default().with_egress(want)).await? {
                    Response::Blocks(b) if b.len() == 1 && !b[0].is_empty() && b[0].len() as u64 <= want => {
                        data.extend_from_slice(&b[0])
                    }
                    other => return Err(ClientError::unexpected(&run.node, &other)),
                }
            }
            files.push((name, data));
        }
        if let Some(p) = &self.payments {
            // The record keeps the owed of the job's last receipt (for `wallet`).
            p.note_job(&run.node.peer, 0, 0).await?;
        }
        self.note(run.node.peer, Outcome::Good);
        Ok(files)
    }

    /// Stops a job (best effort: the node may already be gone).
    pub async fn job_cancel(&self, run: &JobRun) {
        let _ = self.call_billed(&run.node, Request::JobCancel { job: run.job }, Usage::default().with_fuel(1)).await;
    }
}
