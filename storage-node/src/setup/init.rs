//! `blackbox node init`: checks the disk, creates the keys and the dashboard token (0600), and
//! writes a `node.toml` in which every setting is shown with its default and a comment.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::{ByteSize, PaymentsConfig};
use crate::dashboard::load_or_create_token;
use crate::keys::{load_or_create_identity, load_payment_secret, payment_public_key, KeyError};
use crate::NodeConfig;

/// The config file `init` writes in its directory.
pub const CONFIG_FILE: &str = "node.toml";

/// What `init` is asked for.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The node's directory: `node.toml`, keys and data.
    pub dir: PathBuf,
    /// Storage to sell (default: 90% of the free space, whole GiB).
    pub storage: Option<ByteSize>,
    /// Where withdrawals go by default.
    pub payout: Option<String>,
    /// Peers to join through.
    pub bootstrap: Vec<String>,
    /// libp2p listen address (default `/ip4/0.0.0.0/tcp/4001`).
    pub listen: Option<String>,
    /// Dashboard address (default `127.0.0.1:7780`).
    pub dashboard: Option<String>,
    /// The bitcoin node to be paid through; none: the node serves for free.
    pub chain: Option<blackbox_chain::RpcConfig>,
    /// Replace an existing `node.toml` (keys are kept).
    pub force: bool,
}

/// What `init` did.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The config written.
    pub config: PathBuf,
    /// The node's peer id.
    pub peer_id: String,
    /// Storage offered.
    pub storage: ByteSize,
    /// Free space on the disk and its filesystem.
    pub free: u64,
    /// The data dir's filesystem (`ext4`, `tmpfs`…).
    pub filesystem: &'static str,
    /// Where the dashboard token is.
    pub token_file: PathBuf,
    /// Things the operator should fix or know.
    pub warnings: Vec<String>,
}

/// Why `init` failed.
#[derive(Debug, Error)]
pub enum InitError {
    /// The directory cannot be made or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A config is there already.
    #[error("{0} exists already (use --force to rewrite it; keys are kept)")]
    Exists(PathBuf),
    /// A key cannot be made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// An option is unusable.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io { path: path.to_path_buf(), source }
}

/// Proves the directory takes a durable write (create, fsync, remove).
fn check_writable(dir: &Path) -> Result<(), InitError> {
    let probe = dir.join(".init-probe");
    let f = std::fs::File::create(&probe).map_err(io(&probe))?;
    f.sync_all().map_err(io(&probe))?;
    std::fs::remove_file(&probe).map_err(io(&probe))
}

/// Sets up a node in `opts.dir`.
pub fn init(opts: &InitOptions) -> Result<InitReport, InitError> {
    let dir = &opts.dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let config = dir.join(CONFIG_FILE);
    if config.exists() && !opts.force {
        return Err(InitError::Exists(config));
    }
    check_writable(dir)?;
    let (free, _total, filesystem) = blackbox_util::disk_space(dir).map_err(io(dir))?;
    let mut warnings = Vec::new();
    if matches!(filesystem, "tmpfs" | "overlay") {
        warnings.push(format!("{} is on {filesystem}: its data may not survive a reboot", dir.display()));
    }
    let storage = opts.storage.unwrap_or(ByteSize((free / 10 * 9) & !((1 << 30) - 1)));
    if storage.0 == 0 {
        return Err(InitError::Invalid(format!("no space to offer on {} ({free} bytes free)", dir.display())));
    }
    if storage.0 > free {
        warnings.push(format!("storage {storage} is more than the {} free on this disk", ByteSize(free)));
    }
    let keypair = load_or_create_identity(dir)?;
    let secret = load_payment_secret(dir)?;
    let _ = payment_public_key(&secret);
    load_or_create_token(dir).map_err(io(dir))?;
    let mut cfg = NodeConfig {
        data_dir: PathBuf::from("."),
        listen: opts.listen.clone().unwrap_or_else(|| "/ip4/0.0.0.0/tcp/4001".into()),
        quota: storage,
        bootstrap: opts.bootstrap.clone(),
        payout_address: opts.payout.clone().unwrap_or_default(),
        ..NodeConfig::default()
    };
    if let Some(d) = &opts.dashboard {
        cfg.dashboard.listen = d.clone();
    }
    if let Some(chain) = &opts.chain {
        cfg.payments = Some(PaymentsConfig::new(chain.clone()));
    }
    if !cfg.payout_address.is_empty() {
        let network = cfg.payments.as_ref().map_or("bitcoin", |p| p.chain.network.as_str());
        crate::withdraw::parse_address(&cfg.payout_address, network)
            .map_err(|e| InitError::Invalid(format!("--payout: {e}")))?;
    }
    if cfg.payments.is_none() {
        warnings.push("no --chain given: the node serves for free until [payments] is configured".into());
    }
    let text = commented(&cfg).map_err(InitError::Invalid)?;
    // It may hold an RPC password: owner-only from the first byte.
    blackbox_util::write_secret(&config, text.as_bytes()).map_err(io(&config))?;
    Ok(InitReport {
        config,
        peer_id: keypair.public().to_peer_id().to_string(),
        storage,
        free,
        filesystem,
        token_file: dir.join(crate::dashboard::TOKEN_FILE),
        warnings,
    })
}

/// One line of explanation per setting, by `section.key`.
const COMMENTS: &[(&str, &str)] = &[
    ("data_dir", "Keys, shares and records (relative to this file)."),
    ("listen", "libp2p address to listen on; other machines must reach this port (open it in your firewall)."),
    ("quota", "Most bytes of share data stored; checked against the free disk at every start."),
    ("upload_timeout_secs", "Seconds an upload may sit idle before its space is released."),
    ("threads", "Async worker threads (0: one per CPU)."),
    ("bootstrap", "Peers to join the network through (multiaddrs ending in /p2p/PEER-ID); empty: start a new network."),
    ("payout_address", "Bitcoin address `blackbox node withdraw` pays when given none; empty: none."),
    ("lease_default_secs", "Lease of a share whose client asked for none (seconds)."),
    ("lease_max_secs", "Longest lease granted (seconds); longer requests are shortened."),
    ("lease_sweep_secs", "Seconds between sweeps that delete shares whose lease expired."),
    ("offer.storage", "Storage offered (default: the quota)."),
    ("offer.bandwidth_per_month", "Bytes served per month; past it reads are refused until the next month."),
    ("offer.cpu_cores", "CPU cores sold to jobs (fractions allowed; [compute] must be enabled)."),
    ("offer.ram", "RAM sold to jobs."),
    ("offer.availability", "When jobs run: always, when-idle, or a daily UTC window like 22:00-06:00."),
    ("offer.region", "Declared region, so clients spread shares (empty: none)."),
    ("offer.storage_sat_per_gb_month", "Price: satoshis per GB (10^9 bytes) stored per 30 days."),
    ("offer.egress_sat_per_gb", "Price: satoshis per GB served."),
    ("offer.cpu_sat_per_core_hour", "Price: satoshis per core-hour a job holds."),
    ("offer.fuel_sat_per_gfuel", "Price: satoshis per 10^9 units of job fuel."),
    ("offer.validity_secs", "Seconds each signed offer is valid; it is re-signed at half that."),
    ("compute.enabled", "Run buyers' WebAssembly jobs (sandboxed; also set offer.cpu_cores and offer.ram)."),
    ("compute.max_jobs", "Jobs running at once, all buyers together."),
    ("compute.max_jobs_per_peer", "Jobs running at once for one buyer."),
    ("compute.max_timeout_secs", "Longest time limit a job may ask for (seconds)."),
    ("compute.max_input", "Most bytes of inputs one job may fetch."),
    ("compute.max_output", "Most bytes of stdout, stderr and output files of one job."),
    ("compute.credit_fuel", "Fuel a job may use beyond what its buyer paid (your risk per job)."),
    ("compute.payment_wait_secs", "Seconds a job waits for a payment before it is stopped."),
    ("compute.keep_secs", "Seconds an ended job's results are kept for its buyer."),
    ("dashboard.enabled", "Serve the local web dashboard, its JSON API and /metrics."),
    ("dashboard.listen", "Dashboard address; keep it on 127.0.0.1 (log in with the token in dashboard.token)."),
    ("payments.min_confirmations", "Confirmations a channel's funding needs before it is used."),
    ("payments.min_timeout_blocks", "A new channel must stay open at least this many blocks."),
    ("payments.close_margin_blocks", "Close a channel this many blocks before its timeout."),
    (
        "payments.close_all_on_shutdown",
        "Close every paid channel at shutdown (default: only those near their timeout).",
    ),
    ("payments.min_commitment_fee_sat", "Least fee a channel's commitment may carry (satoshis)."),
    ("payments.chain.rpc_addr", "host:port of the bitcoin node's JSON-RPC."),
    ("payments.chain.rpc_user", "RPC user (not used with rpc_cookie_file)."),
    ("payments.chain.rpc_password", "RPC password (not used with rpc_cookie_file)."),
    ("payments.chain.rpc_cookie_file", "Bitcoin Core's cookie file, e.g. ~/.bitcoin/.cookie."),
    ("payments.chain.network", "regtest, testnet, signet or bitcoin."),
];

const POWER_EXAMPLE: &str = r#"
# Electricity: with this section the node sells only what pays for the power it burns, and
# withdraws CPU in hours when power costs more than jobs pay (`blackbox node economics` shows
# the calculation). Uncomment and adjust:
# [power]
# watts_idle = 30.0          # the machine idle (shown, not charged to any resource)
# watts_per_core = 12.0      # extra watts per busy core
# watts_per_tb = 6.0         # watts per TB of disk kept spinning
# wh_per_gb_egress = 5.0     # watt-hours to send one GB
# sat_per_kwh = 300.0        # or local_price_per_kwh = 0.25 with sat_per_local_unit = 1100.0
# margin = 1.2               # sell when price >= cost x margin
# fuel_per_core_sec = 1e10   # job fuel one core burns per second (`blackbox bench job`)
# [[power.tariff]]
# hours = "18:00-22:00"      # UTC
# sat_per_kwh = 900.0
"#;

/// `cfg` as TOML with a comment above every setting (test builds' fault switches left out).
pub fn commented(cfg: &NodeConfig) -> Result<String, String> {
    let raw = toml::to_string(cfg).map_err(|e| e.to_string())?;
    let mut out = format!(
        "# blackbox provider node, written by `blackbox node init`. Every setting is shown with its\n\
         # default; edit and restart `blackbox node run --config {CONFIG_FILE}`.\n\n"
    );
    let mut section = String::new();
    for line in raw.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            if !out.ends_with("\n\n") {
                out.push('\n');
            }
        } else if let Some((key, _)) = line.split_once(" = ") {
            if key.starts_with("fault_") {
                continue;
            }
            let full = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
            let comment = COMMENTS.iter().find(|(k, _)| *k == full).map(|(_, c)| *c);
            out.push_str(&format!("# {}\n", comment.ok_or_else(|| format!("no comment for setting `{full}`"))?));
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(POWER_EXAMPLE);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_commented_and_the_file_loads_back() {
        let chain = blackbox_chain::RpcConfig {
            rpc_addr: "127.0.0.1:18443".into(),
            rpc_user: "u".into(),
            rpc_password: "p".into(),
            rpc_cookie_file: Some("/root/.bitcoin/regtest/.cookie".into()),
            network: "regtest".into(),
        };
        let cfg = NodeConfig { payments: Some(PaymentsConfig::new(chain)), ..NodeConfig::default() };
        let text = commented(&cfg).unwrap();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(toml::to_string(&back).unwrap(), toml::to_string(&cfg).unwrap());
        let settings = text.lines().filter(|l| l.contains(" = ") && !l.starts_with('#')).count();
        let comments = text.lines().filter(|l| l.starts_with("# ") && !l.contains(" = ")).count();
        assert!(settings > 30 && comments >= settings, "{text}");
        // The commented [power] example is valid once uncommented.
        let power: String = POWER_EXAMPLE
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains('=') || l.starts_with('['))
            .map(|l| format!("{}\n", l.split('#').next().unwrap_or("")))
            .collect();
        let with_power: NodeConfig = toml::from_str(&power).unwrap();
        with_power.power.unwrap().check().unwrap();
    }

    #[test]
    fn init_refuses_to_overwrite_and_checks_the_payout_address() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions { dir: dir.path().into(), storage: Some(ByteSize(1 << 30)), ..InitOptions::default() };
        let r = init(&opts).unwrap();
        assert_eq!(r.storage.0, 1 << 30);
        assert!(matches!(init(&opts), Err(InitError::Exists(_))));
        let forced = InitOptions { force: true, payout: Some("bcrt1qnope".into()), ..opts.clone() };
        assert!(matches!(init(&forced), Err(InitError::Invalid(_))));
        let loaded = NodeConfig::load(&dir.path().join(CONFIG_FILE)).unwrap();
        assert_eq!(loaded.quota.0, 1 << 30);
        assert_eq!(loaded.data_dir, dir.path());
    }
}
