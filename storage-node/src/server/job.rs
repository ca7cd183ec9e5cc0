//! Job requests: start (checked against the offer and caps), poll (charging what the job used,
//! up to what the buyer accepts), outputs (only once paid), cancel.

use std::sync::Arc;

use blackbox_net::wire::{JobReport, JobSpec, MAX_JOB_CHUNK};
use blackbox_net::{PeerId, Response};
use blackbox_payments::Usage;

use super::pay::Bill;
use super::{Reply, StorageServer};
use crate::billing::BillingError;
use crate::error::NodeError;
use crate::jobs::{Job, JobError, Jobs};
use crate::store::ShareStore;

/// Largest piece of an output file one request returns.
const OUTPUT_CHUNK: u64 = 512 << 10;

impl<S: ShareStore> StorageServer<S> {
    /// Runs buyers' jobs.
    pub fn with_jobs(mut self, jobs: Arc<Jobs>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// The node's jobs, if it runs any.
    pub fn jobs(&self) -> Option<&Arc<Jobs>> {
        self.jobs.as_ref()
    }

    fn jobs_or_off(&self) -> Result<&Jobs, NodeError> {
        Ok(self.jobs.as_deref().ok_or(JobError::Disabled)?)
    }

    /// The job `id` of `from`; on a paying node, only through the channel that started it.
    fn own_job(&self, from: &PeerId, id: u64, bill: &Bill) -> Result<Arc<Job>, NodeError> {
        let job = self.jobs_or_off()?.get(from, id)?;
        if job.channel.is_some() && bill.channel != job.channel {
            return Err(BillingError::NoChannel { what: "this job (pay from the channel that started it)" }.into());
        }
        Ok(job)
    }

    pub(super) fn job_start(&self, from: &PeerId, spec: JobSpec, bill: &Bill) -> Reply {
        let jobs = self.jobs_or_off()?;
        if self.billing.is_some() && bill.channel.is_none() {
            return Err(BillingError::NoChannel { what: "a job" }.into());
        }
        // A job's outputs and its inputs' reads are egress: none past the month's bandwidth.
        self.egress_allows(1)?;
        let id = jobs.start(*from, bill.channel, spec)?;
        Ok(Response::JobStarted { job: id })
    }

    pub(super) fn job_poll(
        &self,
        from: &PeerId,
        id: u64,
        streams: (u64, u64),
        accept: (u64, u64),
        bill: &Bill,
    ) -> Reply {
        let job = self.own_job(from, id, bill)?;
        let core_secs = job.core_secs();
        let mut p = job.progress();
        if job.channel.is_some() {
            let fuel = accept.0.min(p.fuel).min(job.fuel_cap);
            let cores = accept.1.min(core_secs);
            let delta = Usage::default()
                .with_fuel(fuel.saturating_sub(p.fuel_charged))
                .with_cpu(cores.saturating_sub(p.core_secs_charged));
            if delta != Usage::default() {
                self.charge(bill, delta, "this job's fuel and cores")?;
                p.fuel_charged = p.fuel_charged.max(fuel);
                p.core_secs_charged = p.core_secs_charged.max(cores);
                job.paid();
            }
        }
        #[cfg(feature = "faults")]
        let stdout = p.fake_stdout.clone().unwrap_or_else(|| job.streams.stdout());
        #[cfg(not(feature = "faults"))]
        let stdout = job.streams.stdout();
        let stderr = job.streams.stderr();
        let chunk = |b: &bytes::Bytes, from: u64| {
            let start = (from.min(b.len() as u64)) as usize;
            b.slice(start..(start + MAX_JOB_CHUNK as usize).min(b.len()))
        };
        let ended = p.end.is_some();
        Ok(Response::Job(JobReport {
            fuel: p.fuel,
            fuel_charged: p.fuel_charged,
            core_secs,
            core_secs_charged: p.core_secs_charged,
            stdout_len: stdout.len() as u64,
            stderr_len: stderr.len() as u64,
            stdout: chunk(&stdout, streams.0),
            stderr: chunk(&stderr, streams.1),
            outputs: if ended {
                p.outputs.iter().map(|(n, d)| (n.clone(), d.len() as u64)).collect()
            } else {
                Vec::new()
            },
            end: p.end.clone(),
        }))
    }

    pub(super) fn job_output(&self, from: &PeerId, id: u64, name: &str, offset: u64, bill: &Bill) -> Reply {
        let job = self.own_job(from, id, bill)?;
        let core_secs = job.core_secs();
        let p = job.progress();
        if p.end.is_none() {
            return Err(JobError::NotEnded.into());
        }
        if job.channel.is_some() && (p.fuel_charged < p.fuel || p.core_secs_charged < core_secs) {
            return Err(JobError::Unpaid.into());
        }
        let data = p.outputs.iter().find(|(n, _)| n == name).map(|(_, d)| d).ok_or(JobError::NoSuchOutput)?;
        let start = offset.min(data.len() as u64);
        let end = (start + OUTPUT_CHUNK).min(data.len() as u64);
        let piece = bytes::Bytes::copy_from_slice(&data[start as usize..end as usize]);
        drop(p);
        self.egress_allows(piece.len() as u64)?;
        self.charge(bill, Usage::default().with_egress(piece.len() as u64), "this output")?;
        self.egress.add(piece.len() as u64);
        Ok(Response::Blocks(vec![piece]))
    }

    pub(super) fn job_cancel(&self, from: &PeerId, id: u64) -> Reply {
        self.jobs_or_off()?.get(from, id)?.cancel();
        Ok(Response::Ok)
    }
}
