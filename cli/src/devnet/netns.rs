//! `devnet up --netns`: every node in a Linux network namespace of its own, on a private bridge,
//! each with an address in 198.18.0.0/15 (reserved for benchmarks, never routed anywhere), with
//! its link shaped by `tc tbf` if asked. The devnet creates all of it and removes it on exit.

use std::process::Command;

use anyhow::{bail, Context, Result};
use tracing::{info, warn};

/// The host's address on the bridge (the client, the chain's RPC server).
pub(super) const HOST_IP: &str = "198.18.0.1";

/// The namespaces, links and bridge of one devnet.
pub(super) struct Netns {
    tag: String,
    nodes: usize,
}

/// How the devnet's links are shaped.
#[derive(Debug, Clone, Default)]
pub(super) struct Shaping {
    /// Each node's link, both directions (tc rate, e.g. `100mbit`).
    pub node_rate: Option<String>,
    /// The client's uplink (host to bridge).
    pub client_rate: Option<String>,
    /// Nodes sharing each /24 (1: every node in a /24 of its own).
    pub per_subnet: usize,
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A tc rate as `tbf` takes it (a number and bit, kbit, mbit or gbit), in bits per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim().to_ascii_lowercase();
    let digits = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(format!("{s:?}: a rate is a number and bit, kbit, mbit or gbit (e.g. 100mbit)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: not a number"))?;
    if n.is_nan() || n * scale < 8_000.0 {
        return Err(format!("{s:?}: at least 8kbit"));
    }
    Ok((n * scale) as u64)
}

/// `tc qdisc replace … tbf` for a link of `rate`, with a burst of 20 ms of traffic.
fn shape(ns: Option<&str>, dev: &str, rate: &str) -> Result<()> {
    let bits = parse_rate(rate).map_err(anyhow::Error::msg)?;
    let burst = format!("{}", (bits / 8 / 50).max(16 << 10));
    let tc = ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", &burst, "latency", "100ms"];
    match ns {
        Some(ns) => run(&[&["ip", "netns", "exec", ns][..], &tc[..]].concat()),
        None => run(&tc),
    }
}

impl Netns {
    /// Creates the bridge and one namespace per node (removing leftovers of a crashed run first).
    pub(super) fn create(root: &std::path::Path, nodes: usize, shaping: &Shaping) -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("--netns needs root (it creates network namespaces, a bridge and veth links)");
        }
        let path = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let tag = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            path.hash(&mut h);
            format!("{:06x}", h.finish() & 0xff_ffff)
        };
        let net = Self { tag, nodes };
        net.remove();
        let taken = Command::new("ip").args(["-o", "addr", "show", "to", HOST_IP]).output()?;
        if !String::from_utf8_lossy(&taken.stdout).trim().is_empty() {
            bail!("{HOST_IP} is already on this host: another `devnet up --netns` is running");
        }
        net.build(shaping).inspect_err(|_| net.remove())?;
        info!(nodes, bridge = %net.bridge(), "network namespaces up");
        Ok(net)
    }

    fn build(&self, shaping: &Shaping) -> Result<()> {
        let br = self.bridge();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{HOST_IP}/24"), "dev", &br])?;
        run(&["ip", "link", "set", &br, "up"])?;
        // Every 198.18.x.y is on the bridge's link: no router between the /24s.
        run(&["ip", "route", "add", "198.18.0.0/16", "dev", &br])?;
        if let Some(rate) = &shaping.client_rate {
            shape(None, &br, rate)?;
        }
        for i in 0..self.nodes {
            let (ns, host_end) = (self.ns(i), format!("bb{}h{i}", self.tag));
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run(&["ip", "link", "set", &host_end, "master", &br, "up"])?;
            let addr = format!("{}/24", self.node_ip(i, shaping.per_subnet));
            let exec = ["ip", "netns", "exec", &ns];
            run(&[&exec[..], &["ip", "addr", "add", &addr, "dev", "eth0"]].concat())?;
            run(&[&exec[..], &["ip", "link", "set", "eth0", "up"]].concat())?;
            run(&[&exec[..], &["ip", "link", "set", "lo", "up"]].concat())?;
            run(&[&exec[..], &["ip", "route", "add", "198.18.0.0/16", "dev", "eth0"]].concat())?;
            if let Some(rate) = &shaping.node_rate {
                shape(None, &host_end, rate)?;
                shape(Some(&ns), "eth0", rate)?;
            }
        }
        Ok(())
    }

    fn bridge(&self) -> String {
        format!("bb{}br", self.tag)
    }

    /// The namespace of node `i`.
    pub(super) fn ns(&self, i: usize) -> String {
        format!("bb{}n{i}", self.tag)
    }

    /// Node `i`'s address: `per_subnet` nodes share each /24, from 198.18.1.0/24 on.
    pub(super) fn node_ip(&self, i: usize, per_subnet: usize) -> String {
        let per = per_subnet.max(1);
        format!("198.18.{}.{}", 1 + i / per, 2 + i % per)
    }

    /// Deletes the namespaces (their veth ends go with them) and the bridge; what is not there
    /// is skipped.
    pub(super) fn remove(&self) {
        for i in 0..self.nodes.max(256) {
            let ns = self.ns(i);
            if std::path::Path::new("/run/netns").join(&ns).exists() {
                if let Err(e) = run(&["ip", "netns", "del", &ns]) {
                    warn!(error = %e, "cannot remove a network namespace");
                }
            }
        }
        let br = self.bridge();
        if std::path::Path::new("/sys/class/net").join(&br).exists() {
            if let Err(e) = run(&["ip", "link", "del", &br]) {
                warn!(error = %e, "cannot remove the devnet bridge");
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_checked() {
        assert_eq!(parse_rate("100mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("2.5Gbit"), Ok(2_500_000_000));
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("100mb").is_err());
        assert!(parse_rate("1bit").is_err());
        assert!(parse_rate("mbit").is_err());
    }

    #[test]
    fn nodes_share_subnets_as_asked() {
        let n = Netns { tag: "abc123".into(), nodes: 0 };
        assert_eq!(n.node_ip(0, 1), "198.18.1.2");
        assert_eq!(n.node_ip(4, 1), "198.18.5.2");
        assert_eq!(n.node_ip(3, 2), "198.18.2.3");
        assert_eq!(n.ns(7), "bbabc123n7");
    }
}
