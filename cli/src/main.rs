//! `blackbox`: storage node daemon, local devnet, and the client commands.

mod bench;
mod commands;
mod devnet;
mod fetch;
mod job;
mod maintain;
mod money;
mod mount;
mod node;
mod paths;
mod show;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// blackbox: encrypted, erasure-coded storage on untrusted nodes.
#[derive(Parser)]
#[command(
    name = "blackbox",
    version,
    about = "blackbox: encrypted, erasure-coded storage on untrusted nodes",
    propagate_version = true
)]
struct Cli {
    /// Config file: the client config for client commands, the node config for `node run`.
    #[arg(long, global = true, env = "BLACKBOX_CONFIG")]
    config: Option<PathBuf>,
    /// More log output on stderr (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a storage node (the provider daemon).
    Node {
        #[command(subcommand)]
        action: node::NodeAction,
    },
    /// Run a local network of storage nodes on 127.0.0.1.
    Devnet {
        #[command(subcommand)]
        action: DevnetAction,
    },
    /// Store a file; prints its read capability on stdout (with a PATH, also links it there).
    Put(commands::PutArgs),
    /// Fetch a file by its read capability or path.
    Get(commands::GetArgs),
    /// List a directory (default `/`, the root in the data dir's root.cap).
    Ls(paths::LsArgs),
    /// Create a directory.
    Mkdir(paths::MkdirArgs),
    /// Move or rename an entry (atomic within one directory).
    Mv(paths::MvArgs),
    /// Remove an entry.
    Rm(paths::RmArgs),
    /// Link a cap (file or directory) at a path.
    Ln(paths::LnArgs),
    /// Print the cap of a path.
    Cap(paths::CapArgs),
    /// Report where a file's shares are; exit 1 if it is not recoverable.
    Check(commands::CheckArgs),
    /// List the known nodes with their offers, reputation, score and status.
    Nodes(commands::NodesArgs),
    /// Challenge every share of files (proofs of retrievability); exit 1 if any share fails.
    Audit(maintain::AuditArgs),
    /// Extend the leases of files' shares on every node holding them.
    Renew(maintain::RenewArgs),
    /// Rebuild a file's missing shares from k good ones and place them on other nodes.
    Repair(maintain::RepairArgs),
    /// Watch files and audit, renew and repair them on a schedule.
    Auditor {
        #[command(subcommand)]
        action: maintain::AuditorAction,
    },
    /// The payment wallet: address, balance and channels; `--refund` reclaims timed-out channels.
    Wallet(money::WalletArgs),
    /// Run sandboxed WebAssembly jobs on providers' nodes, paid per unit of fuel.
    Job {
        #[command(subcommand)]
        action: job::JobAction,
    },
    /// Mount a directory as a folder (FUSE), in the foreground until Ctrl-C, SIGTERM or umount.
    Mount(mount::MountArgs),
    /// Serve the S3 API over the grid (config: gateway.toml; `devnet up` writes one).
    Gateway,
    /// Measure throughput.
    Bench {
        #[command(subcommand)]
        action: bench::BenchAction,
    },
}

#[derive(Subcommand)]
enum DevnetAction {
    /// Start (or restart) N nodes as child processes and supervise them until Ctrl-C / SIGTERM.
    Up(devnet::UpArgs),
}

fn init_logging(verbose: u8, default: &str) {
    let level = match verbose {
        0 => default,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    blackbox_util::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            // One clear line instead of clap's multi-line report.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: invalid arguments");
            eprintln!("{first} (see `blackbox --help`)");
            return ExitCode::from(2);
        }
    };
    let default_level = match cli.command {
        Command::Node { .. } | Command::Devnet { .. } => "info,libp2p_swarm=warn,libp2p_kad=warn",
        // s3s logs every refused request (a client's error) as an error; -v shows them.
        Command::Gateway => "info,s3s=off,libp2p_swarm=warn,libp2p_kad=warn",
        _ => "warn",
    };
    init_logging(cli.verbose, default_level);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(path) = match &cli.command {
        Command::Node { action } => node::run_config(&cli.config, action),
        _ => None,
    } {
        // Errors in the config are reported by `run`; here it only sizes the runtime.
        if let Ok(cfg) = blackbox_storage_node::NodeConfig::load(&path) {
            if cfg.threads > 0 {
                builder.worker_threads(cfg.threads);
            }
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Command::Node { action } => node::run(config, action).await,
        Command::Devnet { action: DevnetAction::Up(args) } => devnet::up(args).await,
        Command::Put(args) => commands::put(config, args).await,
        Command::Get(args) => commands::get(config, args).await,
        Command::Check(args) => commands::check(config, args).await,
        Command::Ls(args) => paths::ls(config, args).await,
        Command::Mkdir(args) => paths::mkdir(config, args).await,
        Command::Mv(args) => paths::mv(config, args).await,
        Command::Rm(args) => paths::rm(config, args).await,
        Command::Ln(args) => paths::ln(config, args).await,
        Command::Cap(args) => paths::cap(config, args).await,
        Command::Nodes(args) => commands::nodes(config, args).await,
        Command::Audit(args) => maintain::audit(config, args).await,
        Command::Renew(args) => maintain::renew(config, args).await,
        Command::Repair(args) => maintain::repair(config, args).await,
        Command::Auditor { action } => maintain::auditor(config, action).await,
        Command::Wallet(args) => money::wallet(config, args).await,
        Command::Job { action } => job::run(config, action).await,
        Command::Bench { action } => bench::run(config, action).await,
        Command::Mount(args) => mount::mount(config, args).await,
        Command::Gateway => {
            let path = config.ok_or_else(|| anyhow::anyhow!("`gateway` needs --config gateway.toml"))?;
            let cfg = blackbox_gateway::GatewayConfig::load(&path)?;
            let ready = |addr| println!("S3 gateway listening on http://{addr}");
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            blackbox_gateway::run(cfg, ready, stop).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
