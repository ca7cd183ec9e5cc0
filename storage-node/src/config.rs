//! The node's TOML configuration.

use std::path::{Path, PathBuf};

use blackbox_core::Prices;
use blackbox_net::offer::Availability;
use blackbox_util::config::{load_config, relative_to, ConfigError};
pub use blackbox_util::ByteSize;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Configuration of `blackbox node run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Directory of the database, identity key, pid and info files; relative to the config file.
    pub data_dir: PathBuf,
    /// libp2p address to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`.
    pub listen: String,
    /// Most bytes of share data the node stores.
    pub quota: ByteSize,
    /// Seconds an upload may sit idle before it is dropped and its space released.
    pub upload_timeout_secs: u64,
    /// Async worker threads (0 = one per CPU). `devnet` uses 1: its nodes share one machine.
    pub threads: usize,
    /// Peers to join the DHT through: multiaddrs ending in `/p2p/<peer id>`. Empty: this node
    /// starts a network of its own (others bootstrap from it).
    pub bootstrap: Vec<String>,
    /// Bitcoin address `blackbox node withdraw` pays when given none (empty: none).
    pub payout_address: String,
    /// What the node sells and at what price; signed into the offer it serves.
    pub offer: OfferConfig,
    /// Lease of a share whose client asked for none, in seconds (default 31 days).
    pub lease_default_secs: u64,
    /// Longest lease granted, in seconds (default 366 days); longer requests are shortened.
    pub lease_max_secs: u64,
    /// Seconds between sweeps that delete shares whose lease expired.
    pub lease_sweep_secs: u64,
    /// Payment channels: with this section the node bills storage, egress and CPU at its offer's
    /// prices; without it, it serves for free.
    pub payments: Option<PaymentsConfig>,
    /// Buyers' jobs (`[compute]`): off unless enabled, and the offer sells cores and RAM.
    pub compute: crate::jobs::ComputeConfig,
    /// Electricity (`[power]`): with it, the node sells only what pays for the power it burns.
    pub power: Option<crate::power::PowerConfig>,
    /// The local web dashboard, JSON API and `/metrics` (`[dashboard]`).
    pub dashboard: DashboardConfig,
    /// TEST ONLY (`faults` builds): flip bytes in every block the node serves, to exercise
    /// clients' defences.
    #[cfg(feature = "faults")]
    pub fault_corrupt_reads: bool,
    /// TEST ONLY (`faults` builds): corrupt every block whose index is a multiple of this
    /// (100 = 1% of blocks) in reads and proofs, as a failing disk would; 0 = off.
    #[cfg(feature = "faults")]
    pub fault_corrupt_every: u64,
    /// TEST ONLY (`faults` builds): answer challenges with the data of another share.
    #[cfg(feature = "faults")]
    pub fault_proof_other_share: bool,
    /// TEST ONLY (`faults` builds): delay every challenge answer by this many milliseconds.
    #[cfg(feature = "faults")]
    pub fault_proof_delay_ms: u64,
    /// TEST ONLY (`faults` builds): abort after this many charged requests, between recording a
    /// charge and sending its receipt; 0 = never.
    #[cfg(feature = "faults")]
    pub fault_abort_after_charges: u64,
    /// TEST ONLY (`faults` builds): keep reporting the first version seen of each slot share.
    #[cfg(feature = "faults")]
    pub fault_stale_slots: bool,
    /// TEST ONLY (`faults` builds): report a wrong stdout and result digest for every job.
    #[cfg(feature = "faults")]
    pub fault_wrong_job_results: bool,
    /// TEST ONLY (`faults` builds): move block data at most this many bytes per second (a slow
    /// link); 0 = no limit.
    #[cfg(feature = "faults")]
    pub fault_data_rate: u64,
}

/// The `[dashboard]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the dashboard at all.
    pub enabled: bool,
    /// `IP:PORT` to listen on; keep it on 127.0.0.1 (anything else is reachable from other
    /// machines, and the node says so loudly). Port 0 picks a free one.
    pub listen: String,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self { enabled: true, listen: "127.0.0.1:7780".into() }
    }
}

/// `HH:MM-HH:MM` as minutes after midnight (start, end); `None` if it does not parse.
pub fn parse_hours(text: &str) -> Option<(u16, u16)> {
    let minutes = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    text.split_once('-').and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
}

/// An availability setting that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid availability `{0}`: use always, when-idle or HH:MM-HH:MM (UTC)")]
pub struct AvailabilityError(pub String);

/// The `[payments]` section of the node config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Confirmations a channel's funding output needs before it is used.
    #[serde(default = "one")]
    pub min_confirmations: u32,
    /// A new channel must stay open at least this many blocks.
    #[serde(default = "twelve")]
    pub min_timeout_blocks: u32,
    /// Close a channel this many blocks before its timeout.
    #[serde(default = "six")]
    pub close_margin_blocks: u32,
    /// Close every paid channel at shutdown (default: only those near their timeout).
    #[serde(default)]
    pub close_all_on_shutdown: bool,
    /// Least fee a channel's commitment may carry, in satoshis: a close that pays less may
    /// never confirm (a commitment is ~200 vbytes; the default is 1 sat/vbyte).
    #[serde(default = "min_fee")]
    pub min_commitment_fee_sat: u64,
    /// The bitcoin node to use (`[payments.chain]`).
    pub chain: blackbox_chain::RpcConfig,
}

impl PaymentsConfig {
    /// Payments through `chain` with the default settings.
    pub fn new(chain: blackbox_chain::RpcConfig) -> Self {
        Self {
            min_confirmations: one(),
            min_timeout_blocks: twelve(),
            close_margin_blocks: six(),
            close_all_on_shutdown: false,
            min_commitment_fee_sat: min_fee(),
            chain,
        }
    }
}

fn min_fee() -> u64 {
    200
}
fn one() -> u32 {
    1
}
fn six() -> u32 {
    6
}
fn twelve() -> u32 {
    12
}

/// The `[offer]` section of the node config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfferConfig {
    /// Storage offered (default: the quota).
    pub storage: Option<ByteSize>,
    /// Bytes the node will serve per month.
    pub bandwidth_per_month: ByteSize,
    /// CPU cores offered (fractions allowed).
    pub cpu_cores: f64,
    /// RAM offered.
    pub ram: ByteSize,
    /// `always`, `when-idle`, or a daily UTC window like `22:00-06:00`.
    pub availability: String,
    /// Declared region, used by clients to spread shares (empty: none).
    pub region: String,
    /// Satoshis per GB (10^9 bytes) stored per month.
    pub storage_sat_per_gb_month: u64,
    /// Satoshis per GB served.
    pub egress_sat_per_gb: u64,
    /// Satoshis per core-hour a job holds (wall time × cores asked).
    pub cpu_sat_per_core_hour: u64,
    /// Satoshis per 10^9 units of fuel a job uses (deterministic: the same job always uses the same).
    pub fuel_sat_per_gfuel: u64,
    /// Seconds each signed offer is valid; it is re-signed at half that.
    pub validity_secs: u64,
}

impl Default for OfferConfig {
    fn default() -> Self {
        Self {
            storage: None,
            bandwidth_per_month: ByteSize(1 << 40),
            cpu_cores: 0.0,
            ram: ByteSize(0),
            availability: "always".into(),
            region: String::new(),
            storage_sat_per_gb_month: 100,
            egress_sat_per_gb: 10,
            cpu_sat_per_core_hour: 0,
            fuel_sat_per_gfuel: 0,
            validity_secs: 3600,
        }
    }
}

impl OfferConfig {
    /// Parses the availability setting.
    pub fn availability(&self) -> Result<Availability, AvailabilityError> {
        let text = self.availability.trim();
        match text {
            "always" => return Ok(Availability::Always),
            "when-idle" => return Ok(Availability::WhenIdle),
            _ => {}
        }
        let window = parse_hours(text);
        match window {
            Some((start_minute, end_minute)) => Ok(Availability::DailyUtc { start_minute, end_minute }),
            None => Err(AvailabilityError(text.into())),
        }
    }

    /// The prices this section signs into the offer (and pins into new channels).
    pub fn prices(&self) -> Prices {
        Prices {
            storage_sat_per_gb_month: self.storage_sat_per_gb_month,
            egress_sat_per_gb: self.egress_sat_per_gb,
            cpu_sat_per_core_hour: self.cpu_sat_per_core_hour,
            fuel_sat_per_gfuel: self.fuel_sat_per_gfuel,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            listen: "/ip4/127.0.0.1/tcp/0".into(),
            quota: ByteSize(10 << 30),
            upload_timeout_secs: 600,
            threads: 0,
            bootstrap: Vec::new(),
            payout_address: String::new(),
            offer: OfferConfig::default(),
            lease_default_secs: u64::from(blackbox_core::DEFAULT_LEASE_SECS),
            lease_max_secs: 366 * 86_400,
            lease_sweep_secs: 3600,
            payments: None,
            compute: crate::jobs::ComputeConfig::default(),
            power: None,
            dashboard: DashboardConfig::default(),
            #[cfg(feature = "faults")]
            fault_corrupt_reads: false,
            #[cfg(feature = "faults")]
            fault_corrupt_every: 0,
            #[cfg(feature = "faults")]
            fault_proof_other_share: false,
            #[cfg(feature = "faults")]
            fault_proof_delay_ms: 0,
            #[cfg(feature = "faults")]
            fault_abort_after_charges: 0,
            #[cfg(feature = "faults")]
            fault_stale_slots: false,
            #[cfg(feature = "faults")]
            fault_wrong_job_results: false,
            #[cfg(feature = "faults")]
            fault_data_rate: 0,
        }
    }
}

impl NodeConfig {
    /// Reads a config file; a relative `data_dir` is resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: NodeConfig = load_config(path)?;
        cfg.data_dir = relative_to(path, &cfg.data_dir);
        cfg.compute.fetch_client = cfg.compute.fetch_client.map(|c| relative_to(path, &c));
        let bad = |message: String| ConfigError::Value { path: path.into(), message };
        cfg.offer.availability().map_err(|e| bad(e.to_string()))?;
        if let Some(p) = &cfg.power {
            p.check().map_err(|e| bad(e.to_string()))?;
        }
        Ok(cfg)
    }

    /// The test faults this config switches on.
    #[cfg(feature = "faults")]
    pub fn faults(&self) -> crate::Faults {
        crate::Faults {
            corrupt_every: if self.fault_corrupt_reads { 1 } else { self.fault_corrupt_every },
            proof_from_other_share: self.fault_proof_other_share,
            proof_delay: std::time::Duration::from_millis(self.fault_proof_delay_ms),
            abort_after_charges: self.fault_abort_after_charges,
            stale_slots: self.fault_stale_slots,
            data_rate: self.fault_data_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_rejects_unknown_fields() {
        let cfg: NodeConfig = toml::from_str("quota = \"2 GiB\"\nlisten = \"/ip4/127.0.0.1/tcp/5000\"").unwrap();
        assert_eq!(cfg.quota.0, 2 << 30);
        assert!(toml::from_str::<NodeConfig>("qouta = 5").is_err());
        let cfg: NodeConfig = toml::from_str("[offer]\navailability = \"22:00-06:30\"\nregion = \"eu\"").unwrap();
        assert_eq!(cfg.offer.availability(), Ok(Availability::DailyUtc { start_minute: 1320, end_minute: 390 }));
        let bad = OfferConfig { availability: "25:00-01:00".into(), ..OfferConfig::default() };
        assert!(bad.availability().is_err());
        let idle = OfferConfig { availability: "when-idle".into(), ..OfferConfig::default() };
        assert_eq!(idle.availability(), Ok(Availability::WhenIdle));
    }
}
