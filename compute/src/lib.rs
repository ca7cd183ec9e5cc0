//! Runs buyers' jobs: WebAssembly modules (WASI preview 1 commands) under hard limits on fuel,
//! memory, wall time and output, with their inputs as read-only files and one scratch directory.
//!
//! Fuel is deterministic (the same module on the same input uses the same fuel anywhere), so it is
//! both the unit jobs are billed in and their cap; the clocks jobs see are fixed and their random
//! bytes come from a seed, so a job's output can be checked by running it again elsewhere.

mod cache;
mod sandbox;
mod workspace;

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

pub use cache::ModuleCache;
pub use sandbox::{Runner, Streams};
pub use workspace::Workspace;

/// Most bytes a module may have (binary or text).
pub const MAX_MODULE_BYTES: usize = 8 << 20;
/// Longest input name.
pub const MAX_NAME_LEN: usize = 255;

/// What a job may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly one unit per WebAssembly instruction).
    pub fuel: u64,
    /// Bytes of linear memory.
    pub memory: u64,
    /// Wall time.
    pub timeout: Duration,
    /// Bytes of stdout, of stderr, and of all files left in the scratch directory, each.
    pub max_output: u64,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `_start` returned or the module called `proc_exit`.
    Exited(i32),
    /// It used all the fuel it was given.
    OutOfFuel,
    /// It tried to grow its memory past the limit.
    OutOfMemory,
    /// It ran past its wall-time limit.
    Timeout,
    /// It wrote more than the output limit.
    OutputTooLarge,
    /// Its call stack overflowed.
    StackOverflow,
    /// The meter stopped it (for instance, the buyer stopped paying), with the meter's reason.
    Stopped(String),
    /// Any other trap (unreachable, out-of-bounds access, …), with its message.
    Trap(String),
}

impl Stop {
    /// Whether the job ran to its own end.
    pub fn is_exit(&self) -> bool {
        matches!(self, Stop::Exited(_))
    }

    /// One stable byte per kind, for digests and the wire.
    pub fn code(&self) -> u8 {
        match self {
            Stop::Exited(_) => 0,
            Stop::OutOfFuel => 1,
            Stop::OutOfMemory => 2,
            Stop::Timeout => 3,
            Stop::OutputTooLarge => 4,
            Stop::StackOverflow => 5,
            Stop::Stopped(_) => 6,
            Stop::Trap(_) => 7,
        }
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Exited(c) => write!(f, "exited with status {c}"),
            Stop::OutOfFuel => write!(f, "stopped: out of fuel"),
            Stop::OutOfMemory => write!(f, "stopped: memory limit reached"),
            Stop::Timeout => write!(f, "stopped: time limit reached"),
            Stop::OutputTooLarge => write!(f, "stopped: output limit reached"),
            Stop::StackOverflow => write!(f, "stopped: call stack overflow"),
            Stop::Stopped(why) => write!(f, "stopped: {why}"),
            Stop::Trap(why) => write!(f, "trapped: {why}"),
        }
    }
}

/// What a job did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub stop: Stop,
    /// Fuel it used.
    pub fuel: u64,
    /// Its standard output and error.
    pub stdout: Bytes,
    /// Its standard error.
    pub stderr: Bytes,
    /// Regular files it left in its scratch directory, by name, sorted.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// Time to compile (0 when the module was cached) and instantiate.
    pub start: Duration,
    /// Time it ran.
    pub run: Duration,
}

impl Outcome {
    /// A digest of everything the job produced (how it ended, fuel, stdout, stderr, files): two
    /// honest runs of one job on one input have the same digest.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.stop, self.fuel, &self.stdout, &self.stderr, &self.outputs)
    }
}

/// The digest of a job's results (see [`Outcome::digest`]).
pub fn digest(stop: &Stop, fuel: u64, stdout: &[u8], stderr: &[u8], outputs: &[(String, Vec<u8>)]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("blackbox job outcome v1");
    let status = match stop {
        Stop::Exited(c) => *c as i64,
        _ => -1,
    };
    h.update(&[stop.code()]).update(&status.to_le_bytes()).update(&fuel.to_le_bytes());
    for part in [stdout, stderr] {
        h.update(&(part.len() as u64).to_le_bytes()).update(part);
    }
    for (name, data) in outputs {
        h.update(&(name.len() as u64).to_le_bytes()).update(name.as_bytes());
        h.update(&(data.len() as u64).to_le_bytes()).update(data);
    }
    *h.finalize().as_bytes()
}

/// Why a job could not run at all.
#[derive(Debug, Error)]
pub enum ComputeError {
    /// The module does not compile, or is not a WASI command.
    #[error("invalid module: {0}")]
    Module(String),
    /// The module is larger than [`MAX_MODULE_BYTES`].
    #[error("module of {0} bytes is over the limit of {MAX_MODULE_BYTES}")]
    ModuleTooLarge(usize),
    /// An input name is not a plain file name.
    #[error("invalid input name `{0}`: use a plain file name")]
    BadName(String),
    /// Two inputs have the same name.
    #[error("two inputs are named `{0}`")]
    DuplicateName(String),
    /// The node's own files failed.
    #[error("job workspace: {0}")]
    Io(#[from] std::io::Error),
    /// The runtime failed (not the job).
    #[error("runtime: {0}")]
    Runtime(String),
}

/// Checks that `name` can be an input's file name.
pub fn check_name(name: &str) -> Result<(), ComputeError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(ComputeError::BadName(name.to_string()));
    }
    Ok(())
}

/// Decides, as a job runs, whether it may go on; [`Meter::used`] may block (waiting for payment).
pub trait Meter: Send + 'static {
    /// The job has used `fuel` in all so far: `Err(reason)` stops it.
    fn used(&mut self, fuel: u64) -> Result<(), String>;
}

/// A meter that lets every job run to its limits.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unmetered;

impl Meter for Unmetered {
    fn used(&mut self, _fuel: u64) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
