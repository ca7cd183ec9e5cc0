//! What the dashboard shows: one JSON document built from the running server, the channel
//! records, the chain and `[power]`, cached for a moment (a token holder cannot make the node
//! query the chain more than once per [`FRESH`]); the Prometheus text is drawn from the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::ScriptBuf;
use serde_json::{json, Value};

use blackbox_chain::{BitcoindRpc, Chain};
use blackbox_net::offer::SignedOffer;
use blackbox_util::now_secs;

use crate::earnings::{earnings, CloseState, Earnings};
use crate::history::History;
use crate::{DiskStore, NodeConfig, StorageServer};

/// How long a built status is served before it is built again.
const FRESH: Duration = Duration::from_secs(2);
/// Storage use (of the quota) or disk use that raises an alert.
const NEARLY_FULL: f64 = 0.9;

/// Where the dashboard reads from.
pub struct Sources {
    /// The node's config.
    pub cfg: NodeConfig,
    /// The running server.
    pub server: Arc<StorageServer<DiskStore>>,
    /// The node's libp2p identity.
    pub peer_id: String,
    /// Addresses it listens on.
    pub addrs: Vec<String>,
    /// The script channel closes pay the node (its payment key's P2WPKH).
    pub payout_script: ScriptBuf,
}

/// The last status built, rebuilt when older than [`FRESH`], one build at a time.
pub struct StatusCache {
    sources: Arc<Sources>,
    public: bool,
    last: tokio::sync::Mutex<Option<(Instant, Arc<Value>)>>,
}

impl StatusCache {
    /// A cache over `sources`; `public`: the dashboard listens beyond loopback.
    pub fn new(sources: Arc<Sources>, public: bool) -> Self {
        Self { sources, public, last: tokio::sync::Mutex::new(None) }
    }

    /// The status, built now if the last one is stale.
    pub async fn get(&self) -> Result<Arc<Value>, String> {
        let mut last = self.last.lock().await;
        if let Some((at, v)) = last.as_ref().filter(|(at, _)| at.elapsed() < FRESH) {
            let _ = at;
            return Ok(v.clone());
        }
        let (sources, public) = (self.sources.clone(), self.public);
        let v = tokio::task::spawn_blocking(move || build(&sources, public))
            .await
            .map_err(|e| format!("status failed: {e}"))??;
        let v = Arc::new(v);
        *last = Some((Instant::now(), v.clone()));
        Ok(v)
    }
}

fn close_name(c: &CloseState) -> &'static str {
    match c {
        CloseState::Open => "open",
        CloseState::BelowDust => "below-dust",
        CloseState::Confirmed { .. } => "confirmed",
        CloseState::Mempool(_) => "mempool",
        CloseState::SpentOrUnknown(_) => "spent-or-unknown",
        CloseState::Unchecked { .. } => "unchecked",
    }
}

/// The score clients compute, `(good + 1) / (good + bad + 2)`, from the audits this node answered
/// since it started (a failed proof weighs as bad data: 10).
fn reputation(answered: u64, failed: u64) -> Value {
    let score = (answered as f64 + 1.0) / (answered as f64 + 10.0 * failed as f64 + 2.0);
    let label = if score >= 0.8 {
        "good"
    } else if score >= 0.25 {
        "fair"
    } else {
        "avoided by clients"
    };
    json!({"score": score, "label": label})
}

/// What the alerts are drawn from.
struct Facts<'a> {
    used: u64,
    quota: u64,
    /// Free and total bytes of the data dir's disk.
    disk: (u64, u64),
    channels: &'a [crate::earnings::ChannelEarnings],
    /// The chain's height, if it answered.
    height: Option<u32>,
    /// With payments on: how many blocks before its timeout a channel is closed.
    close_margin: Option<u32>,
    offer_expires: Option<u64>,
    cpu_withdrawn: bool,
    now: u64,
}

/// What needs the operator's attention, most serious first within each kind.
fn alerts(f: &Facts) -> Vec<Value> {
    let mut out = Vec::new();
    let mut alert = |level: &str, text: String| out.push(json!({"level": level, "text": text}));
    if f.quota > 0 && f.used as f64 >= NEARLY_FULL * f.quota as f64 {
        alert("warn", format!("storage {:.0}% of the quota used", 100.0 * f.used as f64 / f.quota as f64));
    }
    let (free, total) = f.disk;
    if total > 0 && (free as f64) < (1.0 - NEARLY_FULL) * total as f64 {
        alert("error", format!("the disk is nearly full: {} MiB free", free >> 20));
    }
    for c in f.channels {
        match (&c.close, f.height, f.close_margin) {
            (CloseState::Mempool(txid), _, _) => {
                alert("warn", format!("the close of channel {} ({txid}) is not confirmed yet", c.funding))
            }
            (CloseState::Open, Some(h), Some(m)) if c.timeout <= h.saturating_add(2 * m) => alert(
                "error",
                format!("channel {} reaches its timeout in {} blocks", c.funding, i64::from(c.timeout) - i64::from(h)),
            ),
            _ => {}
        }
    }
    if f.close_margin.is_some() && f.height.is_none() {
        alert("error", "the bitcoin node does not answer: channel closes cannot be checked".into());
    }
    match f.offer_expires {
        Some(at) if at <= f.now => {
            alert("error", "the signed offer has expired: clients will not choose this node".into())
        }
        None => alert("error", "no signed offer is served".into()),
        _ => {}
    }
    if f.cpu_withdrawn {
        alert("warn", "CPU withdrawn: electricity costs more than jobs pay at this hour".into());
    }
    out
}

/// Every channel, with blocks left to its timeout when the height is known.
fn channels_json(e: &Earnings, height: Option<u32>) -> Vec<Value> {
    let row = |c: &crate::earnings::ChannelEarnings| {
        json!({
            "funding": c.funding.to_string(),
            "capacity_sat": c.capacity,
            "earned_sat": c.earned,
            "received_sat": c.received,
            "timeout_height": c.timeout,
            "blocks_left": height.map(|h| i64::from(c.timeout) - i64::from(h)),
            "close": close_name(&c.close),
        })
    };
    e.channels.iter().map(row).collect()
}

/// Totals, the payout balance, and what each day and month brought in.
fn earnings_json(e: &Earnings, balance: Option<u64>, history: &History) -> Value {
    let period = |p: &crate::history::Period, key: &str| json!({key: p.name, "sat": p.sat, "earned_sat": p.earned_sat});
    json!({
        "earned_sat": e.earned(), "received_sat": e.received(), "settled_sat": e.settled(), "balance_sat": balance,
        "per_day": history.per_day().iter().map(|p| period(p, "day")).collect::<Vec<_>>(),
        "per_month": history.per_month().iter().map(|p| period(p, "month")).collect::<Vec<_>>(),
    })
}

/// Builds the status document (blocking: reads records and asks the chain).
fn build(src: &Sources, public: bool) -> Result<Value, String> {
    let (cfg, now) = (&src.cfg, now_secs());
    let chain = cfg.payments.as_ref().and_then(|p| BitcoindRpc::new(p.chain.clone()).ok());
    let height = chain.as_ref().and_then(|c| c.height().ok());
    let balance: Option<u64> = chain
        .as_ref()
        .and_then(|c| c.unspent(&src.payout_script).ok())
        .map(|coins| coins.iter().map(|u| u.txout.value.to_sat()).sum());
    let e = if cfg.payments.is_some() {
        earnings(cfg).map_err(|e| e.to_string())?
    } else {
        Earnings { prices: cfg.offer.prices(), channels: Vec::new() }
    };
    let mut history = History::load(&cfg.data_dir);
    // Today as it stands now, not as of the last minute's record.
    history.set(now, e.earned(), e.received());
    let st = src.server.status();
    let act = src.server.activity();
    let offer = src.server.current_offer().and_then(|b| SignedOffer::decode(&b).ok()).map(|s| s.offer);
    let (free, total, _) = blackbox_util::disk_space(&cfg.data_dir).unwrap_or((0, 0, "unknown"));
    let (jobs_run, jobs_running) = src.server.jobs().map_or((0, 0), |j| j.counts());
    let economics = cfg.power.as_ref().map(|p| p.economics(&cfg.offer.prices(), now)).unwrap_or_default();
    let cpu_withdrawn = cfg.compute.enabled
        && cfg.offer.cpu_cores > 0.0
        && offer.as_ref().is_some_and(|o| o.resources.cpu_millicores == 0);
    let alerts = alerts(&Facts {
        used: st.used,
        quota: st.quota,
        disk: (free, total),
        channels: &e.channels,
        height,
        close_margin: cfg.payments.as_ref().map(|p| p.close_margin_blocks),
        offer_expires: offer.as_ref().map(|o| o.expires_at),
        cpu_withdrawn,
        now,
    });
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "peer_id": src.peer_id,
        "uptime_secs": act.uptime_secs,
        "dashboard_public": public,
        "payments": cfg.payments.is_some(),
        "addrs": src.addrs,
        "chain_height": height,
        "storage": {"used": st.used, "quota": st.quota, "offered": offer.as_ref().map_or(0, |o| o.resources.storage_bytes),
                    "shares": st.shares, "disk_free": free},
        "egress": {"month": &blackbox_util::utc(now)[..7], "used": src.server.egress().used(), "cap": cfg.offer.bandwidth_per_month.0},
        "jobs": {"run": jobs_run, "running": jobs_running},
        "audits": {"answered": act.audits_answered, "failed": act.audits_failed},
        "reputation": reputation(act.audits_answered, act.audits_failed),
        "earnings": earnings_json(&e, balance, &history),
        "channels": channels_json(&e, height),
        "offer": offer.as_ref().map(|o| json!({
            "storage_bytes": o.resources.storage_bytes, "cpu_millicores": o.resources.cpu_millicores,
            "ram_bytes": o.resources.ram_bytes, "bandwidth_bytes_per_month": o.resources.bandwidth_bytes_per_month,
            "expires_at": o.expires_at, "cpu_withdrawn": cpu_withdrawn,
            "reason": if cpu_withdrawn { "electricity costs more than jobs pay at this hour" } else { "" },
        })),
        "economics": economics,
        "alerts": alerts,
    }))
}

/// The status as Prometheus text (exposition format 0.0.4).
pub fn metrics(s: &Value) -> String {
    let n = |path: &[&str]| -> f64 {
        let mut v = s;
        for p in path {
            v = &v[*p];
        }
        v.as_f64().unwrap_or(0.0)
    };
    let rows: [(&str, &str, &str, f64); 15] = [
        ("blackbox_uptime_seconds", "gauge", "Seconds since the node started.", n(&["uptime_secs"])),
        ("blackbox_storage_used_bytes", "gauge", "Share bytes stored and reserved.", n(&["storage", "used"])),
        ("blackbox_storage_quota_bytes", "gauge", "Most share bytes the node stores.", n(&["storage", "quota"])),
        ("blackbox_storage_offered_bytes", "gauge", "Storage in the signed offer.", n(&["storage", "offered"])),
        ("blackbox_shares", "gauge", "Complete shares held.", n(&["storage", "shares"])),
        ("blackbox_disk_free_bytes", "gauge", "Free space on the data dir's disk.", n(&["storage", "disk_free"])),
        ("blackbox_egress_month_bytes", "gauge", "Bytes served this UTC month.", n(&["egress", "used"])),
        ("blackbox_egress_cap_bytes", "gauge", "Bytes the offer serves per month.", n(&["egress", "cap"])),
        ("blackbox_jobs_run_total", "counter", "Jobs started since the node started.", n(&["jobs", "run"])),
        ("blackbox_audits_answered_total", "counter", "Audit challenges proved.", n(&["audits", "answered"])),
        (
            "blackbox_audits_failed_total",
            "counter",
            "Audit challenges the node could not prove.",
            n(&["audits", "failed"]),
        ),
        ("blackbox_earned_sat", "gauge", "Satoshis billed on all channels.", n(&["earnings", "earned_sat"])),
        (
            "blackbox_received_sat",
            "gauge",
            "Satoshis received in signed commitments.",
            n(&["earnings", "received_sat"]),
        ),
        (
            "blackbox_settled_sat",
            "gauge",
            "Satoshis settled on chain by confirmed closes.",
            n(&["earnings", "settled_sat"]),
        ),
        (
            "blackbox_alerts",
            "gauge",
            "Alerts shown on the dashboard.",
            s["alerts"].as_array().map_or(0, Vec::len) as f64,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, v) in rows {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    }
    let open = s["channels"].as_array().map_or(0, |c| c.iter().filter(|c| c["close"] == "open").count());
    out.push_str(&format!("# HELP blackbox_channels_open Payment channels not closed.\n# TYPE blackbox_channels_open gauge\nblackbox_channels_open {open}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{OutPoint, Txid};

    fn channel(close: CloseState, timeout: u32) -> crate::earnings::ChannelEarnings {
        crate::earnings::ChannelEarnings {
            funding: OutPoint { txid: Txid::all_zeros(), vout: 0 },
            capacity: 100_000,
            timeout,
            usage: Default::default(),
            earned: 1000,
            received: 1000,
            close,
        }
    }

    #[test]
    fn alerts_name_what_needs_attention() {
        let calm = [channel(CloseState::Open, 500)];
        let mut f = Facts {
            used: 10,
            quota: 100,
            disk: (50, 100),
            channels: &calm,
            height: Some(100),
            close_margin: Some(6),
            offer_expires: Some(2000),
            cpu_withdrawn: false,
            now: 1000,
        };
        assert!(alerts(&f).is_empty());
        let busy = [channel(CloseState::Open, 110), channel(CloseState::Mempool(Txid::all_zeros()), 900)];
        f = Facts { used: 95, disk: (5, 100), channels: &busy, offer_expires: Some(999), cpu_withdrawn: true, ..f };
        let text: Vec<String> = alerts(&f).iter().map(|a| format!("{} {}", a["level"], a["text"])).collect();
        let all = text.join("\n");
        for want in [
            "storage 95% of the quota",
            "disk is nearly full",
            "reaches its timeout in 10 blocks",
            "is not confirmed yet",
            "offer has expired",
            "CPU withdrawn",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
        f = Facts { height: None, offer_expires: None, ..f };
        let all: Vec<Value> = alerts(&f);
        assert!(all.iter().any(|a| a["text"].as_str().unwrap().contains("does not answer")));
        assert!(all.iter().any(|a| a["text"] == "no signed offer is served"));
    }
}
