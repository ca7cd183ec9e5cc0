//! The `[compute]` section of the node config: the provider's caps on jobs.

use std::path::PathBuf;

use blackbox_util::ByteSize;
use serde::{Deserialize, Serialize};

/// What the provider lets jobs do (cores, RAM and availability come from `[offer]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// Run buyers' jobs at all (the offer must also sell CPU cores and RAM).
    pub enabled: bool,
    /// Jobs running at once, all buyers together.
    pub max_jobs: usize,
    /// Jobs running at once for one buyer.
    pub max_jobs_per_peer: usize,
    /// Longest time limit a job may ask for, in seconds.
    pub max_timeout_secs: u64,
    /// Most bytes of inputs one job may fetch.
    pub max_input: ByteSize,
    /// Most bytes of stdout, of stderr, and of output files one job may write.
    pub max_output: ByteSize,
    /// Fuel a job may use beyond what its buyer has paid for (the node's risk per job); past
    /// it the job waits for the buyer's next payment.
    pub credit_fuel: u64,
    /// Seconds a job waits for a payment before it is stopped.
    pub payment_wait_secs: u64,
    /// Seconds an ended job's results are kept for its buyer to collect.
    pub keep_secs: u64,
    /// Client config (`client.toml`) the node reads inputs from the grid with; its wallet pays
    /// the nodes that serve them. Relative to the node config; none: jobs take no inputs.
    pub fetch_client: Option<PathBuf>,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_jobs: 4,
            max_jobs_per_peer: 2,
            max_timeout_secs: 3600,
            max_input: ByteSize(1 << 30),
            max_output: ByteSize(64 << 20),
            credit_fuel: 2_000_000_000,
            payment_wait_secs: 30,
            keep_secs: 600,
            fetch_client: None,
        }
    }
}
