//! Buyers' jobs on this node: admission against the offer (cores, RAM, availability) and the
//! provider's caps, input fetching, the sandboxed run on its own thread, and the meter that holds
//! a job when its buyer stops paying. Charging itself happens in the request glue
//! (`server/job.rs`), on the buyer's polls, so every satoshi is on a receipt.

mod config;
mod load;
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bitcoin::OutPoint;
use thiserror::Error;

use blackbox_compute::{Runner, Streams};
use blackbox_net::offer::Availability;
use blackbox_net::wire::{JobEnd, JobSpec};
use blackbox_net::PeerId;

pub use config::ComputeConfig;
pub use load::{idle_cores, in_window};
pub use run::{FetchFuture, InputFetcher};

/// Why a job was refused or a job request failed.
#[derive(Debug, Error, PartialEq)]
pub enum JobError {
    /// The node runs no jobs.
    #[error("this node runs no jobs")]
    Disabled,
    /// Outside the offer's daily window.
    #[error("this node runs jobs only between {start} and {end} UTC")]
    OutsideWindow { start: String, end: String },
    /// Electricity costs more than jobs pay at this hour (`[power]`); the offer sells no CPU now.
    #[error("this node sells no CPU at this hour: electricity costs more than jobs pay")]
    TooExpensiveNow,
    /// The offer is `when-idle` and the machine is in use.
    #[error("this node runs jobs only when idle; its owner's processes use {busy:.1} of {cpus} CPUs now")]
    NotIdle { busy: f64, cpus: usize },
    /// More cores than the offer has free.
    #[error("asked {asked} cores; this node offers {offered} and has {free} free")]
    Cores { asked: u32, offered: f64, free: f64 },
    /// More memory than the offer has free.
    #[error("asked {asked} bytes of memory; this node has {free} free of {offered} offered")]
    Memory { asked: u64, free: u64, offered: u64 },
    /// Node-wide or per-peer job limit.
    #[error("too many jobs running ({limit} at most{who})")]
    TooMany { limit: usize, who: &'static str },
    /// The spec breaks a rule.
    #[error("invalid job: {0}")]
    Spec(String),
    /// Inputs need a client to fetch them and the node has none.
    #[error("this node cannot fetch inputs (no fetch client configured)")]
    NoFetcher,
    /// No such job of this peer.
    #[error("no such job")]
    NoSuchJob,
    /// The job has not ended yet.
    #[error("the job has not ended")]
    NotEnded,
    /// The job's outputs are not paid for yet.
    #[error("pay for the job's fuel before reading its outputs")]
    Unpaid,
    /// No output of that name.
    #[error("the job left no output file of that name")]
    NoSuchOutput,
}

/// What the offer sells to jobs.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Thousandths of cores offered.
    pub millicores: u32,
    /// Bytes of RAM offered.
    pub ram: u64,
    /// When jobs are accepted.
    pub availability: Availability,
}

/// A job's progress, shared by its thread and the request glue.
#[derive(Debug, Default)]
pub struct Progress {
    /// Fuel used (to within the runner's check interval while it runs; exact once ended).
    pub fuel: u64,
    /// Fuel charged to the buyer's channel.
    pub fuel_charged: u64,
    /// Core-seconds charged.
    pub core_secs_charged: u64,
    /// Wall seconds the job held its cores, once ended.
    pub held_secs: Option<u64>,
    /// How it ended.
    pub end: Option<JobEnd>,
    /// Its output files, once ended.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// When it ended.
    pub ended_at: Option<Instant>,
    /// TEST ONLY (`faults` builds): the wrong stdout reported instead of the real one.
    #[cfg(feature = "faults")]
    pub fake_stdout: Option<bytes::Bytes>,
}

/// One job.
pub struct Job {
    /// The peer that started it (the only one that may see it).
    pub owner: PeerId,
    /// The channel that pays for it (`None` on a free node).
    pub channel: Option<OutPoint>,
    /// Cores it holds.
    pub cores: u32,
    /// Memory it may use.
    pub memory: u64,
    /// Fuel cap.
    pub fuel_cap: u64,
    /// When it was accepted.
    pub started: Instant,
    /// Its stdout and stderr.
    pub streams: Streams,
    progress: Mutex<Progress>,
    paid: Condvar,
    cancel: AtomicBool,
}

impl Job {
    /// Its progress, locked.
    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the job's meter after a payment.
    pub fn paid(&self) {
        self.paid.notify_all();
    }

    /// Asks the job to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.paid.notify_all();
    }

    /// Core-seconds it has held so far (whole seconds, rounded up, times its cores).
    pub fn core_secs(&self) -> u64 {
        let held = self.progress().held_secs.unwrap_or_else(|| self.started.elapsed().as_secs_f64().ceil() as u64);
        held.max(1) * u64::from(self.cores)
    }
}

/// The node's jobs.
pub struct Jobs {
    cfg: ComputeConfig,
    capacity: Capacity,
    runner: Arc<Runner>,
    fetcher: Option<Arc<dyn InputFetcher>>,
    rt: tokio::runtime::Handle,
    dir: PathBuf,
    table: Mutex<HashMap<u64, Arc<Job>>>,
    next: AtomicU64,
    /// Jobs started since the node started.
    runs: AtomicU64,
    /// Set while `[power]` withdraws CPU (electricity dearer than jobs pay).
    withdrawn: AtomicBool,
    /// TEST ONLY (`faults` builds): report a wrong stdout and digest for every job.
    #[cfg(feature = "faults")]
    pub wrong_results: AtomicBool,
}

impl Jobs {
    /// The jobs of a node selling `capacity`, with work directories under `dir`; `rt` runs input
    /// fetches.
    pub fn new(
        cfg: ComputeConfig,
        capacity: Capacity,
        dir: PathBuf,
        fetcher: Option<Arc<dyn InputFetcher>>,
        rt: tokio::runtime::Handle,
    ) -> Result<Self, blackbox_compute::ComputeError> {
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Self {
            cfg,
            capacity,
            runner: Arc::new(Runner::new()?),
            fetcher,
            rt,
            dir,
            table: Mutex::default(),
            next: AtomicU64::new(rand::random::<u32>() as u64 + 1),
            runs: AtomicU64::new(0),
            withdrawn: AtomicBool::new(false),
            #[cfg(feature = "faults")]
            wrong_results: AtomicBool::new(false),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u64, Arc<Job>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job `id` if `from` started it.
    pub fn get(&self, from: &PeerId, id: u64) -> Result<Arc<Job>, JobError> {
        self.table().get(&id).filter(|j| j.owner == *from).cloned().ok_or(JobError::NoSuchJob)
    }

    /// The fuel the node lets a job use beyond what it has been paid for.
    pub fn credit_fuel(&self) -> u64 {
        self.cfg.credit_fuel
    }

    /// Checks `spec` against the offer and the caps, then starts it on its own thread.
    pub fn start(&self, from: PeerId, channel: Option<OutPoint>, spec: JobSpec) -> Result<u64, JobError> {
        self.check_spec(&spec)?;
        self.check_available()?;
        let mut table = self.table();
        self.forget_old(&mut table);
        self.check_capacity(&table, &from, &spec)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let job = Arc::new(Job {
            owner: from,
            channel,
            cores: spec.cores,
            memory: spec.memory,
            fuel_cap: spec.fuel,
            started: Instant::now(),
            streams: Streams::new(self.cfg.max_output.0),
            progress: Mutex::default(),
            paid: Condvar::new(),
            cancel: AtomicBool::new(false),
        });
        table.insert(id, job.clone());
        drop(table);
        self.runs.fetch_add(1, Ordering::Relaxed);
        run::spawn(self.context(), id, job, spec);
        Ok(id)
    }

    fn context(&self) -> run::Context {
        run::Context {
            runner: self.runner.clone(),
            fetcher: self.fetcher.clone(),
            rt: self.rt.clone(),
            dir: self.dir.clone(),
            max_input: self.cfg.max_input.0,
            max_output: self.cfg.max_output.0,
            credit_fuel: self.cfg.credit_fuel,
            payment_wait: Duration::from_secs(self.cfg.payment_wait_secs),
            #[cfg(feature = "faults")]
            wrong: self.wrong_results.load(Ordering::Relaxed),
        }
    }

    fn check_spec(&self, spec: &JobSpec) -> Result<(), JobError> {
        let bad = |why: String| Err(JobError::Spec(why));
        if spec.cores == 0 {
            return bad("a job needs at least one core".into());
        }
        if spec.fuel == 0 {
            return bad("a job needs some fuel".into());
        }
        if spec.timeout_secs == 0 || u64::from(spec.timeout_secs) > self.cfg.max_timeout_secs {
            return bad(format!("the time limit must be 1 to {} seconds", self.cfg.max_timeout_secs));
        }
        if spec.memory < 64 << 10 {
            return bad("a job needs at least one 64 KiB page of memory".into());
        }
        for (name, _) in &spec.inputs {
            blackbox_compute::check_name(name).map_err(|e| JobError::Spec(e.to_string()))?;
        }
        if !spec.inputs.is_empty() && self.fetcher.is_none() {
            return Err(JobError::NoFetcher);
        }
        Ok(())
    }

    /// Jobs started since the node started, and those running now.
    pub fn counts(&self) -> (u64, u64) {
        let running = self.table().values().filter(|j| j.progress().end.is_none()).count() as u64;
        (self.runs.load(Ordering::Relaxed), running)
    }

    /// Withdraws CPU (new jobs refused) or offers it again, as `[power]` decides each hour;
    /// running jobs finish.
    pub fn set_withdrawn(&self, withdrawn: bool) {
        self.withdrawn.store(withdrawn, Ordering::Relaxed);
    }

    /// Whether CPU is withdrawn now.
    pub fn withdrawn(&self) -> bool {
        self.withdrawn.load(Ordering::Relaxed)
    }

    fn check_available(&self) -> Result<(), JobError> {
        if !self.cfg.enabled || self.capacity.millicores == 0 {
            return Err(JobError::Disabled);
        }
        if self.withdrawn.load(Ordering::Relaxed) {
            return Err(JobError::TooExpensiveNow);
        }
        match self.capacity.availability {
            Availability::Always => Ok(()),
            Availability::DailyUtc { start_minute, end_minute } => {
                let minute = ((blackbox_util::now_secs() / 60) % 1440) as u16;
                if in_window(minute, start_minute, end_minute) {
                    Ok(())
                } else {
                    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
                    Err(JobError::OutsideWindow { start: hm(start_minute), end: hm(end_minute) })
                }
            }
            Availability::WhenIdle => {
                let ours: u32 = self.table().values().filter(|j| j.progress().end.is_none()).map(|j| j.cores).sum();
                let (cpus, busy) = load::machine_load(Duration::from_millis(200));
                let theirs = (busy - f64::from(ours)).max(0.0);
                let offered = f64::from(self.capacity.millicores) / 1000.0;
                if idle_cores(cpus, theirs) + 1e-9 >= offered {
                    Ok(())
                } else {
                    Err(JobError::NotIdle { busy: theirs, cpus })
                }
            }
        }
    }

    fn check_capacity(&self, table: &HashMap<u64, Arc<Job>>, from: &PeerId, spec: &JobSpec) -> Result<(), JobError> {
        let running: Vec<&Arc<Job>> = table.values().filter(|j| j.progress().end.is_none()).collect();
        if running.len() >= self.cfg.max_jobs {
            return Err(JobError::TooMany { limit: self.cfg.max_jobs, who: "" });
        }
        if running.iter().filter(|j| j.owner == *from).count() >= self.cfg.max_jobs_per_peer {
            return Err(JobError::TooMany { limit: self.cfg.max_jobs_per_peer, who: " per buyer" });
        }
        let used_milli: u64 = running.iter().map(|j| u64::from(j.cores) * 1000).sum();
        let offered = u64::from(self.capacity.millicores);
        if u64::from(spec.cores) * 1000 + used_milli > offered {
            let free = offered.saturating_sub(used_milli) as f64 / 1000.0;
            return Err(JobError::Cores { asked: spec.cores, offered: offered as f64 / 1000.0, free });
        }
        let used_ram: u64 = running.iter().map(|j| j.memory).sum();
        if spec.memory.saturating_add(used_ram) > self.capacity.ram {
            let free = self.capacity.ram.saturating_sub(used_ram);
            return Err(JobError::Memory { asked: spec.memory, free, offered: self.capacity.ram });
        }
        Ok(())
    }

    /// Drops ended jobs kept longer than the config says, and a peer's oldest ended ones beyond
    /// a few (bounded memory whatever a peer does).
    fn forget_old(&self, table: &mut HashMap<u64, Arc<Job>>) {
        let keep = Duration::from_secs(self.cfg.keep_secs);
        table.retain(|_, j| j.progress().ended_at.is_none_or(|t| t.elapsed() < keep));
        let mut ended: Vec<(PeerId, Instant, u64)> =
            table.iter().filter_map(|(id, j)| j.progress().ended_at.map(|t| (j.owner, t, *id))).collect();
        ended.sort_by_key(|e| std::cmp::Reverse(e.1));
        let mut per_peer: HashMap<PeerId, usize> = HashMap::new();
        for (peer, _, id) in ended {
            let n = per_peer.entry(peer).or_default();
            *n += 1;
            if *n > KEEP_ENDED_PER_PEER {
                table.remove(&id);
            }
        }
    }

    /// Stops every job (at shutdown).
    pub fn cancel_all(&self) {
        for j in self.table().values() {
            j.cancel();
        }
    }
}

/// Ended jobs kept per buyer for their results to be collected.
const KEEP_ENDED_PER_PEER: usize = 16;

impl JobError {
    /// The wire error code clients see.
    pub fn code(&self) -> blackbox_net::ErrorCode {
        use blackbox_net::ErrorCode;
        match self {
            Self::Cores { .. } | Self::Memory { .. } | Self::TooMany { .. } | Self::NotIdle { .. } => {
                ErrorCode::QuotaExceeded
            }
            Self::NoSuchJob | Self::NoSuchOutput => ErrorCode::NotFound,
            _ => ErrorCode::Invalid,
        }
    }
}
