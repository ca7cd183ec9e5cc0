//! `blackbox bench`: end-to-end throughput measurements.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

/// What to measure.
#[derive(Subcommand)]
pub enum BenchAction {
    /// Encode and decode throughput of the pure pipeline beside its hardware ceiling.
    Pipeline,
}

pub async fn run(_config: Option<PathBuf>, action: BenchAction) -> Result<ExitCode> {
    match action {
        BenchAction::Pipeline => Ok(ExitCode::SUCCESS),
    }
}
