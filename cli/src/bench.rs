//! `blackbox bench`: throughput of the pipeline, and of put/get on a real local devnet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use blackbox_benches::e2e::E2eConfig;
use blackbox_util::ByteSize;

/// What to measure.
#[derive(Subcommand)]
pub enum BenchAction {
    /// Encode and decode MB/s of the pure pipeline on one core, beside its measured ceiling.
    Pipeline {
        /// Seconds per figure.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Put and get of one file on a fresh `devnet up`: MB/s and peak RSS.
    E2e(E2eArgs),
    /// Directory operations (add, lookup, page, list all, small put) at growing sizes, on a
    /// fresh devnet.
    Dir(DirArgs),
    /// The S3 gateway beside the CLI: `aws s3 cp` of a large file, gateway RSS, and 4 KiB objects
    /// with 16 parallel clients (needs `.venv` from scripts/setup.sh).
    S3(S3Args),
    /// The FUSE drive beside the CLI: dd of a large file both ways, `ls -l` of 10,000 entries,
    /// `find` over 10,000 files, the mount's peak RSS (needs /dev/fuse; as root or with fusermount3).
    Mount(MountArgs),
    /// The job sandbox: a word count in wasmtime beside native, fuel per second, job start latency.
    Job {
        /// MiB of text to count.
        #[arg(long, default_value_t = 64)]
        mib: usize,
    },
    /// Payment channel updates signed and verified per second on one core.
    Channel {
        /// Seconds to run each side.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Proofs of retrievability: made and verified per second, and audit bandwidth.
    Proofs {
        /// Seconds to run each side.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Kademlia at scale, in one process (in-memory transport): time, hops and DHT requests for
    /// fresh clients to find providers, for each network size given.
    Dht {
        /// Network sizes to simulate.
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        nodes: Vec<usize>,
        /// Nodes that announce themselves as storage providers.
        #[arg(long, default_value_t = 50)]
        providers: usize,
    },
}

/// `bench e2e` options.
#[derive(Args)]
pub struct E2eArgs {
    /// Nodes in the devnet.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// File size, e.g. 1GiB.
    #[arg(long, default_value = "1GiB", value_parser = |s: &str| ByteSize::parse(s))]
    size: ByteSize,
    /// Work directory (default: a new one under the system temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run the devnet without payments (to measure what paying costs).
    #[arg(long)]
    no_payments: bool,
    /// Gets to run after the put (each timed).
    #[arg(long, default_value_t = 1)]
    gets: usize,
    /// Break each transfer's CPU time down by what the code does (system-wide `perf record`;
    /// needs perf and root or perf_event_paranoid <= 0).
    #[arg(long)]
    profile: bool,
    /// Make one node this slow (bytes/s, e.g. 4MB) to measure the long tail: the put runs with
    /// node 3 slow, each get with the holder of data share 0 slow (test-only fault: needs a
    /// binary built with `--features faults`).
    #[arg(long, value_parser = |s: &str| ByteSize::parse(s))]
    slow_node: Option<ByteSize>,
    /// Run the devnet in network namespaces (root) with each node's link shaped to this rate,
    /// e.g. 100mbit; prints the link-limited ideal beside each transfer.
    #[arg(long, value_parser = |s: &str| crate::devnet::parse_rate(s).map(|b| (s.to_string(), b)))]
    node_rate: Option<(String, u64)>,
    /// With --node-rate: shape the client's uplink too.
    #[arg(long, requires = "node_rate", value_parser = |s: &str| crate::devnet::parse_rate(s).map(|b| (s.to_string(), b)))]
    client_rate: Option<(String, u64)>,
}

/// `bench s3` options.
#[derive(Args)]
pub struct S3Args {
    /// Nodes in the devnet.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Size of the large file.
    #[arg(long, default_value = "1GiB", value_parser = |s: &str| ByteSize::parse(s))]
    size: ByteSize,
    /// The checkout (its .venv and tests/s3 are used).
    #[arg(long, default_value = ".")]
    checkout: PathBuf,
    /// Rounds of the large-file transfers; the median of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// `bench mount` options.
#[derive(Args)]
pub struct MountArgs {
    /// Nodes in the devnet.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Size of the large file.
    #[arg(long, default_value = "1GiB", value_parser = |s: &str| ByteSize::parse(s))]
    size: ByteSize,
}

/// `bench dir` options.
#[derive(Args)]
pub struct DirArgs {
    /// The largest directory; 1,000 and 10,000 entries (when smaller) are measured first.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Nodes in the devnet.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Timed repetitions of each single operation.
    #[arg(long, default_value_t = 21)]
    reps: usize,
    /// Run the devnet without payments.
    #[arg(long)]
    no_payments: bool,
}

pub async fn run(_config: Option<PathBuf>, action: BenchAction) -> Result<ExitCode> {
    match action {
        BenchAction::Pipeline { seconds } => {
            for (k, n) in [(3, 10), (29, 80)] {
                let report = tokio::task::spawn_blocking(move || blackbox_benches::measure(k, n, seconds)).await?;
                println!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::Job { mib } => {
            let report = tokio::task::spawn_blocking(move || blackbox_benches::job::measure_job(mib)).await??;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::Channel { seconds } => {
            let (signed, verified) =
                tokio::task::spawn_blocking(move || blackbox_benches::channel::measure_channel(seconds)).await?;
            println!(
                "channel updates on one core: signed {signed:.0}/s (payer), verified {verified:.0}/s (provider: \
                 its own signature, then libbitcoinconsensus checks both)"
            );
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::Proofs { seconds } => {
            let report = tokio::task::spawn_blocking(move || blackbox_benches::proofs::measure_proofs(seconds)).await?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::E2e(args) => {
            let cfg = E2eConfig {
                exe: std::env::current_exe()?,
                nodes: args.nodes,
                size: args.size.0,
                dir: args.dir,
                payments: !args.no_payments,
                gets: args.gets,
                profile: args.profile,
                slow_node: args.slow_node.map(|b| b.0),
                links: args.node_rate.map(|node| blackbox_benches::e2e::Links { node, client: args.client_rate }),
            };
            let report = tokio::task::spawn_blocking(move || blackbox_benches::e2e::run(&cfg)).await??;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::Dir(args) => {
            let mut sizes: Vec<usize> = [1_000, 10_000].into_iter().filter(|&n| n < args.entries).collect();
            sizes.push(args.entries.max(1));
            let cfg = blackbox_benches::dir::DirConfig {
                exe: std::env::current_exe()?,
                nodes: args.nodes,
                sizes,
                reps: args.reps.max(1),
                payments: !args.no_payments,
            };
            println!("{}", blackbox_benches::dir::run(&cfg).await?);
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::Mount(args) => {
            let cfg = blackbox_benches::mount::MountBenchConfig {
                exe: std::env::current_exe()?,
                nodes: args.nodes,
                size: args.size.0,
            };
            println!("{}", blackbox_benches::mount::run(&cfg).await?);
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::S3(args) => {
            let cfg = blackbox_benches::s3::S3Config {
                exe: std::env::current_exe()?,
                nodes: args.nodes,
                size: args.size.0,
                venv: args.checkout.join(".venv"),
                suite: args.checkout.join("tests").join("s3"),
                rounds: args.rounds,
            };
            let report = tokio::task::spawn_blocking(move || blackbox_benches::s3::run(&cfg)).await??;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        BenchAction::Dht { nodes, providers } => {
            for n in nodes {
                if n < 2 || providers == 0 || providers >= n {
                    bail!("need at least 2 nodes and between 1 and nodes - 1 providers");
                }
                println!("{}", blackbox_benches::dht::simulate(n, providers, providers).await?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
