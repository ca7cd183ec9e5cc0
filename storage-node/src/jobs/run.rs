//! One job's thread: fetch its inputs, run it in the sandbox under its meter, record its end.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use blackbox_compute::{Limits, Meter, Runner, Stop, Workspace};
use blackbox_net::wire::{JobEnd, JobSpec};

use super::Job;

/// A fetch of one input: bytes written, or why not.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>;

/// Reads a file from the grid as a client would (verifying every block), for job inputs.
pub trait InputFetcher: Send + Sync {
    /// Writes the file `cap` names to `dest`, refusing files longer than `max` bytes.
    fn fetch(&self, cap: String, dest: PathBuf, max: u64) -> FetchFuture;
}

/// What a job's thread needs of the node.
pub(super) struct Context {
    pub(super) runner: Arc<Runner>,
    pub(super) fetcher: Option<Arc<dyn InputFetcher>>,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) dir: PathBuf,
    pub(super) max_input: u64,
    pub(super) max_output: u64,
    pub(super) credit_fuel: u64,
    pub(super) payment_wait: Duration,
    #[cfg(feature = "faults")]
    pub(super) wrong: bool,
}

/// Code of a job that could not start (its inputs or module were unusable).
pub const NOT_STARTED: u8 = 8;

pub(super) fn spawn(ctx: Context, id: u64, job: Arc<Job>, spec: JobSpec) {
    let name = format!("job-{id}");
    let j = job.clone();
    let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
        let end = run(&ctx, &name, &j, &spec);
        let mut p = j.progress();
        p.held_secs = Some(j.started.elapsed().as_secs_f64().ceil() as u64);
        p.end = Some(end);
        p.ended_at = Some(Instant::now());
    });
    if let Err(e) = spawned {
        let mut p = job.progress();
        p.end = Some(not_started(format!("cannot start a thread: {e}")));
        p.held_secs = Some(0);
        p.ended_at = Some(Instant::now());
    }
}

fn not_started(message: String) -> JobEnd {
    JobEnd { code: NOT_STARTED, exit: -1, message, digest: [0; 32] }
}

/// The seed of a job's random bytes: the same job gets the same bytes on every node.
fn seed(spec: &JobSpec) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("blackbox job seed v1");
    h.update(&spec.module);
    for a in &spec.args {
        h.update(&(a.len() as u64).to_le_bytes()).update(a.as_bytes());
    }
    for (name, cap) in &spec.inputs {
        h.update(name.as_bytes()).update(&[0]).update(cap.as_bytes()).update(&[0]);
    }
    *h.finalize().as_bytes()
}

fn run(ctx: &Context, name: &str, job: &Arc<Job>, spec: &JobSpec) -> JobEnd {
    let ws = match Workspace::create(&ctx.dir, name) {
        Ok(ws) => ws,
        Err(e) => return not_started(e.to_string()),
    };
    if let Err(why) = fetch_inputs(ctx, &ws, job, spec) {
        return not_started(why);
    }
    let limits = Limits {
        fuel: spec.fuel,
        memory: spec.memory,
        timeout: Duration::from_secs(u64::from(spec.timeout_secs)),
        max_output: ctx.max_output,
    };
    let meter = JobMeter { job: job.clone(), credit: ctx.credit_fuel, wait: ctx.payment_wait };
    let outcome = ctx.runner.run(&spec.module, &spec.args, &ws, limits, seed(spec), &job.streams, meter);
    let mut outcome = match outcome {
        Ok(o) => o,
        Err(e) => return not_started(e.to_string()),
    };
    #[cfg(feature = "faults")]
    if ctx.wrong {
        outcome.stdout = bytes::Bytes::from_static(b"a wrong answer\n");
        job.progress().fake_stdout = Some(outcome.stdout.clone());
    }
    info!(job = name, fuel = outcome.fuel, stop = %outcome.stop, start_ms = outcome.start.as_millis() as u64, "job ended");
    let digest = outcome.digest();
    let exit = if let Stop::Exited(c) = outcome.stop { c } else { -1 };
    let mut p = job.progress();
    p.fuel = outcome.fuel;
    p.outputs = std::mem::take(&mut outcome.outputs);
    JobEnd { code: outcome.stop.code(), exit, message: outcome.stop.to_string(), digest }
}

fn fetch_inputs(ctx: &Context, ws: &Workspace, job: &Job, spec: &JobSpec) -> Result<(), String> {
    let mut left = ctx.max_input;
    for (name, cap) in &spec.inputs {
        if job.cancel.load(Ordering::Relaxed) {
            return Err("cancelled by the buyer".into());
        }
        let fetcher = ctx.fetcher.as_ref().ok_or("this node cannot fetch inputs")?;
        let path = ws.input_path(name).map_err(|e| e.to_string())?;
        let fetched = ctx.rt.block_on(fetcher.fetch(cap.clone(), path, left));
        match fetched {
            Ok(n) => left = left.saturating_sub(n),
            Err(why) => {
                warn!(input = %name, %why, "cannot fetch a job input");
                return Err(format!("cannot fetch input `{name}`: {why}"));
            }
        }
    }
    Ok(())
}

/// Lets a job run while what it used beyond what was charged stays within the node's credit;
/// past it, waits for the buyer's next payment, and stops the job when none comes in time.
struct JobMeter {
    job: Arc<Job>,
    credit: u64,
    wait: Duration,
}

impl Meter for JobMeter {
    fn used(&mut self, fuel: u64) -> Result<(), String> {
        let job = &self.job;
        let mut p = job.progress();
        p.fuel = fuel;
        let deadline = Instant::now() + self.wait;
        loop {
            if job.cancel.load(Ordering::Relaxed) {
                return Err("cancelled".into());
            }
            if job.channel.is_none() || fuel.saturating_sub(p.fuel_charged) <= self.credit {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("the buyer did not pay for its fuel within {} s", self.wait.as_secs()));
            }
            p = job.paid.wait_timeout(p, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}
