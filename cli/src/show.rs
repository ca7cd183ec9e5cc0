//! How the CLI prints the library's reports: tables, JSON lines and short peer ids.

use blackbox_client::nodes::NodeRow;
use blackbox_client::wallet::{ChannelState, WalletReport};
use blackbox_client::{AuditReport, CheckReport, UploadReport, Verdict};
use blackbox_core::VerifyCap;
use blackbox_net::offer::Availability;
use blackbox_storage_node::earnings::{CloseState, Earnings};
use blackbox_util::ByteSize;

/// A long id shortened to its first 8 and last 6 characters.
pub(crate) fn short(s: &str) -> String {
    if s.len() > 16 {
        format!("{}…{}", &s[..8], &s[s.len() - 6..])
    } else {
        s.to_string()
    }
}

/// Prints the ranking behind an upload's placement (on stderr).
pub(crate) fn explain(report: &UploadReport) {
    if report.ranking.is_empty() {
        eprintln!("nodes come from the config (no discovery): shares were placed in the permuted order");
    }
    eprintln!(
        "{:<18} {:>6} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6}  {:<16} SHARES",
        "NODE", "SCORE", "SAT/GB-MO", "PRICE", "REPUT", "RTT", "FREE", "AGE", "GROUP"
    );
    for r in &report.ranking {
        let peer = r.candidate.node.peer;
        let shares: Vec<String> =
            report.placements.iter().filter(|(_, p)| *p == peer).map(|(s, _)| s.to_string()).collect();
        let p = r.parts;
        eprintln!(
            "{:<18} {:>6.3} {:>9} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2}  {:<16} {}",
            short(&peer.to_string()),
            r.score,
            r.candidate.offer.prices.storage_sat_per_gb_month,
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
            r.group,
            if shares.is_empty() { "-".into() } else { shares.join(",") }
        );
    }
    eprintln!("happiness {} (placement takes one node per group first, then the best remaining)", report.happiness);
}

/// Prints where a file's shares are.
pub(crate) fn check(vcap: &VerifyCap, report: &CheckReport) {
    println!("verify cap: {vcap}");
    for (share, peers) in &report.holders {
        let peers: Vec<String> = peers.iter().map(|p| short(&p.to_string())).collect();
        println!("  share {share:>3}: {}", peers.join(", "));
    }
    for (peer, why) in &report.unreachable {
        let why = why.replace(&format!("peer {peer} unreachable: "), "");
        println!("  unreachable {}: {why}", short(&peer.to_string()));
    }
    println!(
        "{} of {} shares found on {} of {} nodes (need {}), happiness {}",
        report.distinct(),
        vcap.n,
        report.answered,
        report.asked,
        report.needed,
        report.happiness
    );
}

/// Prints an audit, one line per share and a summary.
pub(crate) fn audit(cap: &VerifyCap, report: &AuditReport) {
    println!("file {cap}");
    for r in &report.results {
        let what = match &r.verdict {
            Verdict::Passed => format!("ok ({} ms)", r.millis),
            Verdict::Missing => "FAIL: share missing".into(),
            Verdict::BadProof(why) => format!("FAIL: bad proof: {why}"),
            Verdict::Late => format!("FAIL: no answer within the deadline ({} ms)", r.millis),
            Verdict::Unreachable(why) => format!("FAIL: unreachable: {why}"),
        };
        println!("  share {:>3} on {}: {what}", r.share, short(&r.peer.to_string()));
    }
    let list = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    println!(
        "  {} of {} shares healthy (need {}); missing shares: {}; failing nodes: {}",
        report.healthy_shares().len(),
        report.n,
        report.k,
        list(report.missing_shares().iter().map(ToString::to_string).collect()),
        list(report.failed_nodes().iter().map(ToString::to_string).collect())
    );
}

/// One node as a JSON object on one line.
pub(crate) fn node_json(r: &NodeRow) -> String {
    let addr = r.node.addrs.first().map(ToString::to_string).unwrap_or_default();
    let mut line = format!(
        "{{\"peer\":\"{}\",\"addr\":\"{addr}\",\"up\":{},\"reputation\":{:.3}",
        r.node.peer,
        r.problem.is_none(),
        r.reputation
    );
    if let Some(score) = r.score {
        line += &format!(",\"score\":{score:.3}");
    }
    if let Some(o) = &r.offer {
        line += &format!(
            ",\"storage_sat_per_gb_month\":{},\"egress_sat_per_gb\":{},\"region\":\"{}\"",
            o.prices.storage_sat_per_gb_month,
            o.prices.egress_sat_per_gb,
            o.region.escape_default()
        );
    }
    if let Some((s, rtt)) = &r.status {
        line += &format!(
            ",\"shares\":{},\"pending\":{},\"used\":{},\"quota\":{},\"rtt_ms\":{}",
            s.shares,
            s.pending,
            s.used,
            s.quota,
            rtt.as_millis()
        );
    }
    line + "}"
}

/// The node table.
pub(crate) fn node_table(rows: &[NodeRow]) {
    println!(
        "{:<54} {:<24} {:>9} {:>8} {:<8} {:>5} {:>9} {:>9} {:<11} {:>5} {:>5} {:>6} {:>7} {:>22} {:>6}",
        "PEER",
        "ADDRESS",
        "SAT/GB-MO",
        "SAT/GB",
        "REGION",
        "CORES",
        "RAM",
        "SAT/GFUEL",
        "JOBS WHEN",
        "REPUT",
        "SCORE",
        "SHARES",
        "PENDING",
        "USED / QUOTA",
        "RTT"
    );
    for r in rows {
        let addr = r.node.addrs.first().map(ToString::to_string).unwrap_or_default();
        let peer = r.node.peer.to_string();
        let (Some((s, rtt)), None) = (&r.status, &r.problem) else {
            println!("{peer:<54} {addr:<24} {}", r.problem.clone().unwrap_or_default());
            continue;
        };
        let (price, egress, region) = r.offer.as_ref().map_or(("-".into(), "-".into(), "-".into()), |o| {
            (o.prices.storage_sat_per_gb_month.to_string(), o.prices.egress_sat_per_gb.to_string(), o.region.clone())
        });
        let (cores, ram, fuel, when) = r.offer.as_ref().map_or(("-".into(), "-".into(), "-".into(), "-".into()), |o| {
            let when = match o.availability {
                Availability::Always => "always".to_string(),
                Availability::WhenIdle => "when-idle".to_string(),
                Availability::DailyUtc { start_minute: a, end_minute: b } => {
                    format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
                }
            };
            let r = &o.resources;
            (
                format!("{:.1}", f64::from(r.cpu_millicores) / 1000.0),
                ByteSize(r.ram_bytes).to_string(),
                o.prices.fuel_sat_per_gfuel.to_string(),
                when,
            )
        });
        println!(
            "{peer:<54} {addr:<24} {price:>9} {egress:>8} {:<8} {cores:>5} {ram:>9} {fuel:>9} {when:<11} {:>5.2} {:>5} {:>6} {:>7} {:>22} {:>4}ms",
            if region.is_empty() { "-".into() } else { region },
            r.reputation,
            r.score.map_or("avoid".into(), |s| format!("{s:.2}")),
            s.shares,
            s.pending,
            format!("{} / {}", ByteSize(s.used), ByteSize(s.quota)),
            rtt.as_millis()
        );
    }
    let up = rows.iter().filter(|r| r.problem.is_none()).count();
    println!("{up} of {} nodes usable", rows.len());
}

/// The wallet, its refunds and its channels.
pub(crate) fn wallet(w: &WalletReport, refund: bool) {
    for (peer, txid) in &w.refunds {
        println!("refund of the channel to {} broadcast: {txid}", short(peer));
    }
    if refund && w.refunds.is_empty() {
        println!("no channel to refund (none past its timeout and still unspent)");
    }
    println!("address {}", w.address);
    println!("balance {} sat in {} coins (chain height {})", w.balance, w.coins, w.height);
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>14} {:>8}  STATE",
        "NODE", "CAPACITY", "PAID", "OWED", "LEFT", "JOB FUEL", "TIMEOUT"
    );
    for c in &w.channels {
        let state = match &c.state {
            ChannelState::Open => "open".to_string(),
            ChannelState::Refundable => "timed out: refundable (`wallet --refund`)".to_string(),
            ChannelState::ClosedByNode => "closed by the node".to_string(),
            ChannelState::Refunded { txid, confirmations } => format!("refunded {txid} ({confirmations} conf)"),
            ChannelState::Unknown(e) => format!("unknown ({e})"),
        };
        println!(
            "{:<20} {:>10} {:>10} {:>10} {:>10} {:>14} {:>8}  {state}",
            short(&c.peer),
            c.capacity,
            c.paid,
            c.owed,
            c.left,
            c.fuel,
            c.timeout
        );
    }
    println!("paid {} sat in all", w.paid());
}

/// A node's earnings per channel and in total.
pub(crate) fn earnings(e: &Earnings) {
    let p = e.prices;
    println!(
        "prices: {} sat/GB-month stored, {} sat/GB served, {} sat/core-hour, {} sat/10^9 fuel",
        p.storage_sat_per_gb_month, p.egress_sat_per_gb, p.cpu_sat_per_core_hour, p.fuel_sat_per_gfuel
    );
    println!(
        "{:<14} {:>22} {:>14} {:>10} {:>14} {:>9} {:>9}  CLOSE",
        "CHANNEL", "STORED (byte-seconds)", "SERVED (bytes)", "CPU (c-s)", "JOB FUEL", "EARNED", "RECEIVED"
    );
    for c in &e.channels {
        let close = match &c.close {
            CloseState::Open => "open".to_string(),
            CloseState::BelowDust => "below dust: not closed".to_string(),
            CloseState::Confirmed { txid, confirmations, .. } => {
                format!("{} confirmed ({confirmations} conf)", short(&txid.to_string()))
            }
            CloseState::Mempool(txid) => format!("{} in mempool", short(&txid.to_string())),
            CloseState::SpentOrUnknown(txid) => format!("{} (output spent or unknown)", short(&txid.to_string())),
            CloseState::Unchecked { txid, why } => format!("{} ({why})", short(&txid.to_string())),
        };
        println!(
            "{:<14} {:>22} {:>14} {:>10} {:>14} {:>9} {:>9}  {close}",
            short(&c.funding.to_string()),
            c.usage.storage_byte_secs,
            c.usage.egress_bytes,
            c.usage.cpu_core_secs,
            c.usage.fuel,
            c.earned,
            c.received
        );
    }
    println!(
        "earned {} sat; received {} sat in commitments; {} sat settled on chain",
        e.earned(),
        e.received(),
        e.settled()
    );
}

/// `node economics`: each resource's electricity cost against its price, as a calculation.
pub(crate) fn economics(
    p: &blackbox_storage_node::power::PowerConfig,
    lines: &[blackbox_storage_node::power::Line],
    schedule: &[(String, String, bool)],
    now: u64,
) {
    let minute = blackbox_storage_node::power::minute_of(now);
    println!(
        "electricity at {:02}:{:02} UTC: {:.3} sat/kWh; daily average {:.3} sat/kWh",
        minute / 60,
        minute % 60,
        p.price_at(minute),
        p.daily_average()
    );
    for t in &p.tariff {
        println!(
            "  tariff {} UTC: {:.3} sat/kWh",
            t.hours,
            p.price_at(blackbox_storage_node::config::parse_hours(&t.hours).map_or(0, |h| h.0))
        );
    }
    let idle_kwh = p.watts_idle * 24.0 / 1000.0;
    println!(
        "machine idle: {} W × 24 h = {idle_kwh:.3} kWh/day = {:.3} sat/day (paid whatever is sold)",
        p.watts_idle,
        idle_kwh * p.daily_average()
    );
    println!("margin {}: a resource is sold when its price ≥ cost × margin", p.margin);
    for l in lines {
        let energy = match l.resource {
            "cpu" => format!("{} W per busy core × 1 h", p.watts_per_core),
            "storage" => format!("{} W per TB / 1000 × 720 h", p.watts_per_tb),
            _ => format!("{} Wh per GB", p.wh_per_gb_egress),
        };
        println!(
            "{}: {energy} = {:.6} kWh × {:.3} sat/kWh = {:.3} sat per {}; price {:.3} sat; profit {:.3} sat; {}",
            l.resource,
            l.kwh,
            l.sat_per_kwh,
            l.cost_sat,
            l.unit,
            l.price_sat,
            l.profit_sat,
            match (l.offered, l.resource) {
                (true, _) => "sold",
                (false, "egress") => "LOSS (still served: the data is stored here)",
                (false, _) => "NOT SOLD",
            }
        );
    }
    let periods: Vec<String> =
        schedule.iter().map(|(s, e, sold)| format!("{s}-{e} {}", if *sold { "sold" } else { "withdrawn" })).collect();
    println!("cpu by hour (UTC): {}", periods.join(", "));
}
