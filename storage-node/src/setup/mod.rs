//! Setting a provider up: `node init` ([`init`]), the pre-flight checks `node run` makes, and the
//! one-screen summary it prints once serving.

mod init;

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use blackbox_chain::{BitcoindRpc, Chain};
use blackbox_net::multiaddr::Protocol;
use blackbox_net::offer::Offer;
use blackbox_net::Multiaddr;
use blackbox_util::ByteSize;

pub use init::{commented, init, InitError, InitOptions, InitReport, CONFIG_FILE};

use crate::NodeConfig;

/// Clock difference to the chain's best block that raises a warning (block times may run up to
/// two hours ahead of the network's clock, and a block may take an hour to come).
const MAX_SKEW_SECS: u64 = 2 * 3600;

fn socket_of(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
            Protocol::Tcp(port) => return ip.map(|ip| SocketAddr::new(ip, port)),
            _ => {}
        }
    }
    None
}

fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_private() || a.is_link_local() || a.is_loopback(),
        IpAddr::V6(a) => {
            a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00 || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Warnings about the listen addresses: none reachable from elsewhere, or one not answering.
fn check_addresses(addrs: &[Multiaddr]) -> Vec<String> {
    let sockets: Vec<SocketAddr> = addrs.iter().filter_map(socket_of).collect();
    let mut out = Vec::new();
    for s in &sockets {
        if TcpStream::connect_timeout(s, Duration::from_secs(1)).is_err() {
            out.push(format!("announce address {s} is not reachable (a firewall, or another address is needed)"));
        }
    }
    if sockets.iter().all(|s| s.ip().is_loopback()) {
        out.push(
            "the node listens on loopback only: other machines cannot reach it (listen on /ip4/0.0.0.0/tcp/PORT)"
                .into(),
        );
    } else if sockets.iter().all(|s| is_private(&s.ip())) {
        out.push(
            "only private addresses: machines outside your network reach this node only if its port is forwarded"
                .into(),
        );
    }
    out
}

/// What `node run` checks before and just after it starts serving; each finding is a warning.
pub fn preflight(cfg: &NodeConfig, addrs: &[Multiaddr], used: u64, now: u64) -> Vec<String> {
    let mut out = check_addresses(addrs);
    if let Ok((free, _, _)) = blackbox_util::disk_space(&cfg.data_dir) {
        if cfg.quota.0 > used.saturating_add(free) {
            out.push(format!(
                "quota {} is larger than the disk allows ({} free + {} stored)",
                cfg.quota,
                ByteSize(free),
                ByteSize(used)
            ));
        }
    }
    if let Some(power) = &cfg.power {
        for l in power.economics(&cfg.offer.prices(), now) {
            if !l.offered {
                out.push(format!(
                    "{} price {:.3} sat per {} is below its electricity cost {:.3} sat × margin {}{}",
                    l.resource,
                    l.price_sat,
                    l.unit,
                    l.cost_sat,
                    power.margin,
                    match l.resource {
                        "cpu" => ": CPU is not sold at this hour",
                        "storage" => ": no storage is offered",
                        _ => " (data stored here is still served)",
                    }
                ));
            }
        }
    }
    if let Some(pc) = &cfg.payments {
        match BitcoindRpc::new(pc.chain.clone()).and_then(|c| c.tip_time()) {
            Ok(tip) if tip.abs_diff(now) > MAX_SKEW_SECS && tip > 0 => out.push(format!(
                "the clock is {} s {} the chain's last block: fix the system time (offers and leases use it)",
                tip.abs_diff(now),
                if now < tip { "behind" } else { "ahead of" }
            )),
            Ok(_) => {}
            Err(e) => out.push(format!("the bitcoin node at {} does not answer: {e}", pc.chain.rpc_addr)),
        }
    } else {
        out.push("payments are off ([payments] missing): this node is not paid".into());
    }
    out
}

/// What `node run` prints once the node serves.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The node's peer id.
    pub peer_id: String,
    /// Where it listens.
    pub addrs: Vec<String>,
    /// The offer it serves.
    pub offer: Option<Offer>,
    /// `rpc_addr (network)` of the chain it is paid through.
    pub chain: Option<String>,
    /// Default withdrawal address.
    pub payout: String,
    /// The dashboard URL, and whether it is reachable from other machines.
    pub dashboard: Option<(String, bool)>,
    /// Where the dashboard token is.
    pub token_file: String,
    /// Pre-flight warnings.
    pub warnings: Vec<String>,
}

/// The offer's lines of the summary: what is sold at what price, and until when.
fn write_offer(f: &mut fmt::Formatter<'_>, o: &Offer) -> fmt::Result {
    let (r, p) = (&o.resources, &o.prices);
    writeln!(f, "  storage     {} at {} sat/GB-month", ByteSize(r.storage_bytes), p.storage_sat_per_gb_month)?;
    writeln!(f, "  bandwidth   {}/month at {} sat/GB", ByteSize(r.bandwidth_bytes_per_month), p.egress_sat_per_gb)?;
    if r.cpu_millicores > 0 {
        writeln!(
            f,
            "  compute     {:.1} cores, {} RAM at {} sat/core-hour + {} sat/Gfuel",
            f64::from(r.cpu_millicores) / 1000.0,
            ByteSize(r.ram_bytes),
            p.cpu_sat_per_core_hour,
            p.fuel_sat_per_gfuel
        )?;
    }
    writeln!(f, "  offer until {}", blackbox_util::utc(o.expires_at))?;
    Ok(())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "blackbox node running")?;
        writeln!(f, "  peer id     {}", self.peer_id)?;
        for a in &self.addrs {
            writeln!(f, "  listening   {a}")?;
        }
        match &self.offer {
            Some(o) => write_offer(f, o)?,
            None => writeln!(f, "  offer       none served (see the log)")?,
        }
        match &self.chain {
            Some(c) => writeln!(f, "  payments    through {c}")?,
            None => writeln!(f, "  payments    off")?,
        }
        let payout = if self.payout.is_empty() { "none (set payout_address)" } else { &self.payout };
        writeln!(f, "  payout      {payout}")?;
        match &self.dashboard {
            Some((url, public)) => {
                writeln!(f, "  dashboard   {url}  (token in {})", self.token_file)?;
                if *public {
                    writeln!(f, "  !!! THE DASHBOARD IS REACHABLE FROM OTHER MACHINES: keep the token secret !!!")?;
                }
            }
            None => writeln!(f, "  dashboard   off")?,
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}
