//! `blackbox job run`: run a WebAssembly job on a provider's node, near the data, paid per fuel.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use blackbox_client::{JobVerdict, Placement, PutOptions};
use blackbox_net::wire::JobSpec;
use blackbox_util::ByteSize;

use crate::commands::session;

#[derive(Subcommand)]
pub enum JobAction {
    /// Run a job (a WASI preview 1 command, `.wasm` or `.wat`) on a node; its stdout streams here.
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The module: a `.wasm` binary or `.wat` text file (`-` reads it from stdin).
    job: PathBuf,
    /// An input, as `NAME=CAP_OR_PATH` or a path or cap (named by its last part); the job reads it
    /// as `/in/NAME`. The node is given the input's read cap: it can read that file.
    #[arg(long = "input", value_name = "[NAME=]CAP_OR_PATH")]
    inputs: Vec<String>,
    /// An argument for the job (after the program name), repeatable.
    #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
    args: Vec<String>,
    /// The node: a peer id, or `auto` (cheapest fuel, then reputation, then holding the inputs).
    #[arg(long, default_value = "auto")]
    node: String,
    /// Most fuel to use and pay for (about one unit per instruction).
    #[arg(long, default_value_t = 10_000_000_000)]
    fuel: u64,
    /// Most memory.
    #[arg(long, default_value = "256MiB")]
    memory: ByteSize,
    /// Most wall time, like `60s`, `5m` or `1h`.
    #[arg(long, default_value = "60s")]
    timeout: String,
    /// Cores to hold (billed per core-second of wall time).
    #[arg(long, default_value_t = 1)]
    cores: u32,
    /// Run on this many nodes whose results and fuel must agree (2 or more: verified).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Write the job's stdout to this file instead of this terminal.
    #[arg(short, long, conflicts_with = "store")]
    output: Option<PathBuf>,
    /// Store the job's stdout and output files in the grid, in this directory (made if missing).
    #[arg(long, value_name = "PATH")]
    store: Option<String>,
}

/// Seconds in a duration like `90`, `90s`, `5m`, `2h`.
fn parse_secs(s: &str) -> Result<u32> {
    let (num, mul) = match s.trim().char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    let n: u32 = num.trim().parse().with_context(|| format!("invalid duration `{s}`: use like 60s, 5m or 1h"))?;
    n.checked_mul(mul).filter(|&v| v > 0).with_context(|| format!("duration `{s}` must be 1 s to 136 years"))
}

fn read_module(path: &PathBuf) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub async fn run(config: Option<PathBuf>, action: JobAction) -> Result<ExitCode> {
    let JobAction::Run(a) = action;
    if a.replicas == 0 || a.replicas > 5 {
        bail!("--replicas must be between 1 and 5");
    }
    let module = read_module(&a.job)?;
    let timeout_secs = parse_secs(&a.timeout)?;
    let s = session(config).await?;
    let mut inputs = Vec::new();
    for spec in &a.inputs {
        let (name, what) = match spec.split_once('=') {
            Some((n, w)) if !n.contains('/') && !n.starts_with("bb") => (n.to_string(), w),
            _ => (spec.trim_end_matches('/').rsplit('/').next().unwrap_or(spec).to_string(), spec.as_str()),
        };
        let cap = s.input_cap(what).await.with_context(|| format!("input `{what}`"))?;
        inputs.push((name, cap));
    }
    let program = a.job.file_stem().map_or("job".into(), |n| n.to_string_lossy().into_owned());
    let spec = JobSpec {
        module: module.into(),
        args: std::iter::once(program).chain(a.args.iter().cloned()).collect(),
        inputs,
        fuel: a.fuel,
        memory: a.memory.0,
        timeout_secs,
        cores: a.cores,
    };
    let placement = match a.node.as_str() {
        "auto" => Placement::Auto,
        p => Placement::Node(p.parse().with_context(|| format!("invalid peer id `{p}`"))?),
    };
    let started = Instant::now();
    let mut file = match &a.output {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?),
        None => None,
    };
    let to_terminal = a.store.is_none() && file.is_none();
    let mut write_err = None;
    let result = s
        .run_job(&spec, &placement, a.replicas, |out, err| {
            let r = match (&mut file, to_terminal) {
                (Some(f), _) => f.write_all(out),
                (None, true) => std::io::stdout().write_all(out).and_then(|()| std::io::stdout().flush()),
                (None, false) => Ok(()),
            };
            if let Err(e) = r.and_then(|()| std::io::stderr().write_all(err)) {
                write_err.get_or_insert(e);
            }
        })
        .await?;
    if let Some(e) = write_err {
        bail!("cannot write the job's output: {e}");
    }
    let r = &result.run.report;
    let end = r.end.clone().context("the node reported no end")?;
    if let Some(dir) = &a.store {
        store(&s, dir, &result.run.stdout, &result.outputs).await?;
    }
    eprintln!(
        "job on {}: {}; fuel {}, core-seconds {}, {:.2} s",
        result.run.node.peer,
        end.message,
        r.fuel,
        r.core_secs,
        started.elapsed().as_secs_f64()
    );
    eprintln!("output digest {}", data_encoding::HEXLOWER.encode(&end.digest));
    match &result.verdict {
        JobVerdict::Unverified => {}
        JobVerdict::Agreed(n) => eprintln!("verified: {n} nodes agree"),
        JobVerdict::Decided { losers } => {
            for l in losers {
                eprintln!("verification: node {l} returned a different result: not paid, reputation lowered");
            }
        }
        JobVerdict::Undecided => bail!("verification failed: no result had a majority; none was paid"),
    }
    Ok(if end.code == 0 && end.exit == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn store(s: &blackbox_client::Session, dir: &str, stdout: &[u8], files: &[(String, Vec<u8>)]) -> Result<()> {
    s.mkdir(dir, true).await?;
    let tmp = tempfile::tempdir()?;
    let all = std::iter::once(("stdout", stdout)).chain(files.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    for (name, data) in all {
        let local = tmp.path().join("out");
        std::fs::write(&local, data)?;
        let path = format!("{}/{name}", dir.trim_end_matches('/'));
        s.put_path(&local, &path, &PutOptions::default(), true)
            .await
            .with_context(|| format!("cannot store {path}"))?;
        eprintln!("stored {path} ({} bytes)", data.len());
    }
    Ok(())
}
