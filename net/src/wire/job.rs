//! The job messages' fields: what a buyer asks a node to run, and what the node reports of it.

use bytes::Bytes;

use super::WireError;
use crate::bin::{Reader, Writer};

/// Largest module a job may send (binary or text WebAssembly).
pub const MAX_JOB_MODULE: u32 = 1 << 20;
/// Most arguments of a job, and most bytes of all of them together.
pub const MAX_JOB_ARGS: u32 = 64;
/// Most bytes of a job's arguments together.
pub const MAX_JOB_ARG_BYTES: usize = 8 << 10;
/// Most inputs of a job.
pub const MAX_JOB_INPUTS: u32 = 16;
/// Longest input capability.
pub const MAX_JOB_CAP: u32 = 4 << 10;
/// Longest file name (inputs and outputs).
pub const MAX_JOB_NAME: u32 = 255;
/// Most bytes of stdout and of stderr one report carries.
pub const MAX_JOB_CHUNK: u32 = 256 << 10;
/// Most output files a report lists.
pub const MAX_JOB_OUTPUTS: u32 = 64;
/// Longest stop message.
pub const MAX_JOB_MESSAGE: u32 = 1024;

/// A job as a buyer asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobSpec {
    /// The WebAssembly module (WASI preview 1 command).
    pub module: Bytes,
    /// Its arguments; the first is the program name.
    pub args: Vec<String>,
    /// Its inputs: file name in `/in` and the read capability the node fetches it with.
    pub inputs: Vec<(String, String)>,
    /// Most fuel it may use (and the buyer pay for).
    pub fuel: u64,
    /// Most bytes of memory.
    pub memory: u64,
    /// Most seconds of wall time.
    pub timeout_secs: u32,
    /// Cores it holds while it runs (billed per core-second of wall time).
    pub cores: u32,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// Kind of stop (`blackbox_compute::Stop::code`): 0 exited, 1 fuel, 2 memory, 3 time,
    /// 4 output, 5 stack, 6 stopped by its meter, 7 trap, 8 could not start.
    pub code: u8,
    /// Exit status, when it exited.
    pub exit: i32,
    /// What happened, for people.
    pub message: String,
    /// Digest of everything it produced (`blackbox_compute::digest`).
    pub digest: [u8; 32],
}

/// A node's report of a job: progress, charges, a chunk of its streams, and its end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobReport {
    /// Fuel used so far.
    pub fuel: u64,
    /// Fuel the node has charged to the channel so far.
    pub fuel_charged: u64,
    /// Core-seconds held so far.
    pub core_secs: u64,
    /// Core-seconds charged so far.
    pub core_secs_charged: u64,
    /// Bytes of stdout and stderr written so far.
    pub stdout_len: u64,
    /// Bytes of stderr written so far.
    pub stderr_len: u64,
    /// Stdout from the offset asked.
    pub stdout: Bytes,
    /// Stderr from the offset asked.
    pub stderr: Bytes,
    /// Files the job left in `/out`, with their sizes (once it ended).
    pub outputs: Vec<(String, u64)>,
    /// Set once the job ended.
    pub end: Option<JobEnd>,
}

fn text(r: &mut Reader, max: u32) -> Result<String, WireError> {
    String::from_utf8(r.bounded(max)?.to_vec()).map_err(|_| WireError::Text)
}

impl JobSpec {
    pub(super) fn write(&self, w: &mut Writer) {
        w.bytes(&self.module).u32(self.args.len() as u32);
        for a in &self.args {
            w.bytes(a.as_bytes());
        }
        w.u32(self.inputs.len() as u32);
        for (name, cap) in &self.inputs {
            w.bytes(name.as_bytes()).bytes(cap.as_bytes());
        }
        w.u64(self.fuel).u64(self.memory).u32(self.timeout_secs).u32(self.cores);
    }

    pub(super) fn read(r: &mut Reader) -> Result<Self, WireError> {
        let module = r.bounded(MAX_JOB_MODULE)?;
        let count = r.count(MAX_JOB_ARGS)?;
        let mut args = Vec::with_capacity(count as usize);
        let mut total = 0usize;
        for _ in 0..count {
            let a = text(r, MAX_JOB_ARG_BYTES as u32)?;
            total += a.len();
            if total > MAX_JOB_ARG_BYTES {
                return Err(WireError::Count(total as u64));
            }
            args.push(a);
        }
        let count = r.count(MAX_JOB_INPUTS)?;
        let mut inputs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            inputs.push((text(r, MAX_JOB_NAME)?, text(r, MAX_JOB_CAP)?));
        }
        Ok(Self { module, args, inputs, fuel: r.u64()?, memory: r.u64()?, timeout_secs: r.u32()?, cores: r.u32()? })
    }
}

impl JobReport {
    pub(super) fn write(&self, w: &mut Writer) {
        w.u64(self.fuel).u64(self.fuel_charged).u64(self.core_secs).u64(self.core_secs_charged);
        w.u64(self.stdout_len).u64(self.stderr_len).bytes(&self.stdout).bytes(&self.stderr);
        w.u32(self.outputs.len() as u32);
        for (name, len) in &self.outputs {
            w.bytes(name.as_bytes()).u64(*len);
        }
        match &self.end {
            None => {
                w.u8(0);
            }
            Some(e) => {
                w.u8(1).u8(e.code).u32(e.exit as u32).bytes(e.message.as_bytes()).raw(&e.digest);
            }
        }
    }

    pub(super) fn read(r: &mut Reader) -> Result<Self, WireError> {
        let (fuel, fuel_charged, core_secs, core_secs_charged) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let (stdout_len, stderr_len) = (r.u64()?, r.u64()?);
        let (stdout, stderr) = (r.bounded(MAX_JOB_CHUNK)?, r.bounded(MAX_JOB_CHUNK)?);
        let count = r.count(MAX_JOB_OUTPUTS)?;
        let mut outputs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            outputs.push((text(r, MAX_JOB_NAME)?, r.u64()?));
        }
        let end = match r.u8()? {
            0 => None,
            1 => Some(JobEnd {
                code: r.u8()?,
                exit: r.u32()? as i32,
                message: text(r, MAX_JOB_MESSAGE)?,
                digest: r.array()?,
            }),
            other => return Err(WireError::UnknownKind(other)),
        };
        Ok(Self {
            fuel,
            fuel_charged,
            core_secs,
            core_secs_charged,
            stdout_len,
            stderr_len,
            stdout,
            stderr,
            outputs,
            end,
        })
    }
}
