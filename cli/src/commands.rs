//! Client commands: put, get, check, nodes.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use blackbox_client::config::ClientPayments;
use blackbox_client::pay::{load_or_create_wallet_key, PayConfig, Payee, Payments};
use blackbox_client::rank::Candidate;
use blackbox_client::reputation::{Reputation, AVOID_BELOW};
use blackbox_client::{Client, ClientConfig, ClientError, KnownNodes, NodeRef, Ranking, ShareHealth, UploadOptions};
use blackbox_core::{EncodingParams, ReadCap, VerifyCap};
use blackbox_net::offer::SignedOffer;
use blackbox_net::{Discovery, Libp2pTransport};
use blackbox_storage_node::config::ByteSize;
use blackbox_storage_node::daemon::{now_secs, parse_bootstrap};

/// `put` options.
#[derive(Args)]
pub struct PutArgs {
    /// File to store.
    file: PathBuf,
    /// Shares needed to rebuild (k); default from the config.
    #[arg(long, short = 'k')]
    needed: Option<usize>,
    /// Shares to make (n); default from the config.
    #[arg(long, short = 'n')]
    total: Option<usize>,
    /// Distinct nodes that must hold shares; default from the config (capped at n).
    #[arg(long)]
    happy: Option<usize>,
    /// Segment size, e.g. 1MiB; default from the config.
    #[arg(long, value_parser = parse_size)]
    segment_size: Option<u64>,
    /// Show on stderr how every candidate node was ranked and where each share went.
    #[arg(long)]
    explain: bool,
}

/// `get` options.
#[derive(Args)]
pub struct GetArgs {
    /// Read capability (`bb:chk:…`).
    cap: String,
    /// Write to this file (atomically) instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// First byte to read (range read).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Bytes to read from the offset (default: to the end).
    #[arg(long)]
    length: Option<u64>,
}

/// `check` options.
#[derive(Args)]
pub struct CheckArgs {
    /// Read or verify capability.
    cap: String,
    /// Also download every share and check every block (no decryption).
    #[arg(long)]
    verify: bool,
}

/// Adds what the client saw of each node during a command to the reputation file.
pub(crate) fn record_outcomes(cfg: &ClientConfig, c: &Client<Libp2pTransport>) {
    let outcomes = c.take_outcomes();
    if outcomes.is_empty() {
        return;
    }
    let mut reputation = Reputation::load(&cfg.data_dir);
    let now = now_secs();
    for (peer, outcome) in outcomes {
        reputation.record(&peer, outcome, now);
    }
    if let Err(e) = reputation.save() {
        tracing::warn!(error = %e, "cannot save the reputation file");
    }
}

/// How long a client waits for the DHT to list providers.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

fn parse_size(s: &str) -> Result<u64, String> {
    ByteSize::parse(s).map(|b| b.0)
}

pub(crate) fn load_config(path: Option<PathBuf>) -> Result<ClientConfig> {
    let Some(path) = path else {
        bail!("no client config: pass --config FILE or set BLACKBOX_CONFIG (`blackbox devnet up` writes one)");
    };
    ClientConfig::load(&path).map_err(anyhow::Error::msg)
}

/// Every candidate node, with its verified offer or why it has none.
type Offers = Vec<(NodeRef, Result<SignedOffer, ClientError>)>;

pub(crate) async fn client(cfg: &ClientConfig) -> Result<Client<Libp2pTransport>> {
    Ok(connect(cfg).await?.0)
}

/// Builds the client: the configured nodes, or (with bootstrap peers) every node found through the
/// DHT or remembered from before that serves a valid signed offer.
async fn connect(cfg: &ClientConfig) -> Result<(Client<Libp2pTransport>, Offers)> {
    let timeout = Duration::from_secs(cfg.request_timeout_secs);
    let configured = cfg.node_refs().map_err(anyhow::Error::msg)?;
    if cfg.bootstrap.is_empty() {
        if configured.is_empty() {
            bail!("the client config lists no nodes and no bootstrap peers");
        }
        let transport = Libp2pTransport::new(timeout).context("starting network")?;
        return Ok((Client::new(transport, configured), Vec::new()));
    }
    let mut known = KnownNodes::load(&cfg.data_dir);
    let mut bootstrap = parse_bootstrap(&cfg.bootstrap).map_err(anyhow::Error::msg)?;
    for n in known.refs() {
        bootstrap.extend(n.addrs.iter().map(|a| (n.peer, a.clone())));
    }
    let transport = Libp2pTransport::with_discovery(timeout, &Discovery { bootstrap }).context("starting network")?;
    let found = tokio::time::timeout(DISCOVERY_TIMEOUT, transport.find_storage_providers())
        .await
        .unwrap_or(Ok(Vec::new()))
        .unwrap_or_default();
    let mut candidates: Vec<NodeRef> = Vec::new();
    let provided = found.into_iter().map(|(peer, addrs)| NodeRef { peer, addrs });
    for n in provided.chain(known.refs()).chain(configured) {
        if !candidates.iter().any(|c| c.peer == n.peer) {
            candidates.push(n);
        }
    }
    let now = now_secs();
    let offers = Client::new(transport.clone(), candidates).offers(now).await;
    let mut usable = Vec::new();
    for (node, offer) in &offers {
        match offer {
            Ok(_) => usable.push(node.clone()),
            Err(e @ ClientError::BadOffer { .. }) => tracing::warn!(peer = %node.peer, error = %e, "node skipped"),
            Err(e) => tracing::debug!(peer = %node.peer, error = %e, "node unreachable"),
        }
    }
    if usable.is_empty() {
        bail!("found no storage node with a valid offer (bootstrap peers: {})", cfg.bootstrap.join(", "));
    }
    known.merge(&usable);
    if let Err(e) = known.save() {
        tracing::warn!(error = %e, "cannot save the known-nodes file");
    }
    let statuses = Client::new(transport.clone(), usable.clone()).statuses().await;
    let reputation = Reputation::load(&cfg.data_dir);
    let candidates = offers
        .iter()
        .filter(|(node, _)| {
            let score = reputation.score(&node.peer, now);
            if score < AVOID_BELOW {
                tracing::info!(peer = %node.peer, score, "node avoided for new shares (reputation)");
            }
            score >= AVOID_BELOW
        })
        .filter_map(|(node, offer)| {
            let offer = offer.as_ref().ok()?.offer.clone();
            let (status, rtt) = statuses.iter().find(|(n, _)| n.peer == node.peer)?.1.as_ref().ok()?;
            Some(Candidate {
                node: node.clone(),
                offer,
                reputation: reputation.score(&node.peer, now),
                latency_ms: Some(rtt.as_secs_f64() * 1000.0),
                free_bytes: status.quota.saturating_sub(status.used),
                age_secs: reputation.age_secs(&node.peer, now),
            })
        })
        .collect();
    let ranking = Ranking { candidates, weights: cfg.weights, max_price: cfg.max_storage_price };
    let mut client = Client::new(transport, usable).with_ranking(ranking);
    if let Some(pc) = &cfg.payments {
        let payees = offers
            .iter()
            .filter_map(|(node, offer)| {
                let o = &offer.as_ref().ok()?.offer;
                let key = bitcoin::CompressedPublicKey::from_slice(&o.bitcoin_pubkey).ok()?;
                let prices = blackbox_payments::Prices {
                    storage_sat_per_gb_month: o.prices.storage_sat_per_gb_month,
                    egress_sat_per_gb: o.prices.egress_sat_per_gb,
                    cpu_sat_per_core_hour: o.prices.cpu_sat_per_core_hour,
                };
                Some((node.peer, Payee { prices, key }))
            })
            .collect();
        client = client.with_payments(Payments::new(pay_config(cfg, pc)?, payees));
    }
    Ok((client, offers))
}

/// The payment settings of the client config, with the wallet key.
pub(crate) fn pay_config(cfg: &ClientConfig, pc: &ClientPayments) -> Result<PayConfig> {
    if pc.channel_blocks < 24 {
        bail!("[payments] channel_blocks must be at least 24: channels are retired 12 blocks before their timeout");
    }
    let chain = blackbox_chain::BitcoindRpc::new(pc.chain.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(PayConfig {
        chain: Arc::new(chain),
        key: load_or_create_wallet_key(&cfg.data_dir).map_err(anyhow::Error::msg)?,
        dir: cfg.data_dir.join("channels"),
        capacity: pc.channel_capacity_sat,
        blocks: pc.channel_blocks,
        fee: pc.channel_fee_sat,
        min_confirmations: pc.min_confirmations,
    })
}

/// Shows a byte progress bar on stderr while `work` runs, if stderr is a terminal.
async fn with_progress<F: std::future::Future>(total: u64, counter: Arc<AtomicU64>, work: F) -> F::Output {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(counter.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let out = work.await;
    ticker.abort();
    bar.finish_and_clear();
    out
}

pub async fn put(config: Option<PathBuf>, args: PutArgs) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let path = args.file.clone();
    let meta = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let k = args.needed.unwrap_or(cfg.needed);
    let n = args.total.unwrap_or(cfg.total);
    let seg = args.segment_size.unwrap_or(cfg.segment_size as u64);
    let seg = u32::try_from(seg).map_err(|_| anyhow::anyhow!("segment size {seg} is too large"))?;
    let params = EncodingParams::new(k, n, seg)?;
    let happy = args.happy.unwrap_or(cfg.happy.min(n)).max(k);
    let c = client(&cfg).await?;
    let opts = UploadOptions { params, happy, key: None, lease_secs: cfg.lease_secs };
    let counter = Arc::new(AtomicU64::new(0));
    let open_path = path.clone();
    let work = c.upload(move || std::fs::File::open(&open_path), meta.len(), &opts, counter.clone());
    let report = with_progress(meta.len(), counter, work).await;
    record_outcomes(&cfg, &c);
    let report = report?;
    if args.explain {
        explain(&report);
    }
    // Watch the file (verify cap and placements only) for `audit`, `renew` and the auditor.
    let mut list = blackbox_client::watch::WatchList::load(&cfg.data_dir);
    let entry = list.entry(&report.cap.verify_cap());
    entry.set_placements(&report.placements);
    entry.lease_expires = now_secs() + u64::from(cfg.lease_secs);
    if let Err(e) = list.save() {
        tracing::warn!(error = %e, "cannot save the watch list");
    }
    println!("{}", report.cap);
    Ok(ExitCode::SUCCESS)
}

/// Prints the ranking behind an upload's placement.
fn explain(report: &blackbox_client::UploadReport) {
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

pub async fn get(config: Option<PathBuf>, args: GetArgs) -> Result<ExitCode> {
    let cap: ReadCap = args.cap.parse().context("invalid read capability")?;
    let cfg = load_config(config)?;
    let c = client(&cfg).await?;
    let length = args.length.unwrap_or(cap.size.saturating_sub(args.offset));
    let range = Some((args.offset, length));
    match args.output {
        Some(out) => {
            let tmp = temp_path(&out);
            let result = download_to_file(&c, &cap, range, &tmp).await;
            record_outcomes(&cfg, &c);
            if let Err(e) = result {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, &out).with_context(|| format!("cannot write {}", out.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let result = c.download(&cap, range, |b| lock.write_all(b)).await;
            record_outcomes(&cfg, &c);
            result?;
            lock.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn temp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".blackbox-partial");
    out.with_file_name(name)
}

async fn download_to_file(
    c: &Client<Libp2pTransport>,
    cap: &ReadCap,
    range: Option<(u64, u64)>,
    path: &Path,
) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let counter = Arc::new(AtomicU64::new(0));
    let total = range.map_or(cap.size, |r| r.1);
    let progress = counter.clone();
    let work = c.download(cap, range, |b| {
        progress.fetch_add(b.len() as u64, Ordering::Relaxed);
        w.write_all(b)
    });
    with_progress(total, counter, work).await?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

pub(crate) fn parse_any_cap(s: &str) -> Result<VerifyCap> {
    if let Ok(read) = s.parse::<ReadCap>() {
        return Ok(read.verify_cap());
    }
    s.parse::<VerifyCap>().map_err(|e| anyhow::anyhow!("invalid capability: {e}"))
}

pub async fn check(config: Option<PathBuf>, args: CheckArgs) -> Result<ExitCode> {
    let vcap = parse_any_cap(&args.cap)?;
    let cfg = load_config(config)?;
    let c = client(&cfg).await?;
    let report = c.check(&vcap).await;
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
    let mut recoverable = report.recoverable();
    let mut found = report.distinct();
    if args.verify && report.distinct() > 0 {
        let v = c.verify(&vcap).await;
        record_outcomes(&cfg, &c);
        let v = v?;
        for (share, peer, health) in &v.shares {
            match health {
                ShareHealth::Good => {
                    println!("  share {share:>3} on {}: good", short(&peer.to_string()))
                }
                ShareHealth::Corrupt(why) => {
                    println!("  share {share:>3} on {}: BAD (corrupt): {why}", short(&peer.to_string()))
                }
                ShareHealth::Unreadable(why) => {
                    println!("  share {share:>3} on {}: BAD (unreadable): {why}", short(&peer.to_string()))
                }
            }
        }
        println!("{} distinct shares verified good (need {})", v.good_distinct(), v.needed);
        recoverable = v.recoverable();
        found = v.good_distinct();
    }
    if recoverable {
        println!("recoverable");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: not recoverable: found {found} distinct good shares, need {}", report.needed);
        Ok(ExitCode::FAILURE)
    }
}

pub(crate) fn short(s: &str) -> String {
    if s.len() > 16 {
        format!("{}…{}", &s[..8], &s[s.len() - 6..])
    } else {
        s.to_string()
    }
}

/// `nodes` options.
#[derive(Args)]
pub struct NodesArgs {
    /// One JSON object per node and line instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn nodes(config: Option<PathBuf>, args: NodesArgs) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let (c, offers) = connect(&cfg).await?;
    let statuses = c.statuses().await;
    let ranked = c.ranked();
    let reputation = Reputation::load(&cfg.data_dir);
    let now = now_secs();
    // Rows: every candidate (with discovery) or every configured node.
    let mut rows: Vec<(NodeRef, Option<&Result<SignedOffer, ClientError>>)> =
        offers.iter().map(|(n, o)| (n.clone(), Some(o))).collect();
    if rows.is_empty() {
        rows = c.nodes().iter().map(|n| (n.clone(), None)).collect();
    }
    if !args.json {
        println!(
            "{:<54} {:<24} {:>9} {:>8} {:<8} {:>5} {:>5} {:>6} {:>7} {:>22} {:>6}",
            "PEER",
            "ADDRESS",
            "SAT/GB-MO",
            "SAT/GB",
            "REGION",
            "REPUT",
            "SCORE",
            "SHARES",
            "PENDING",
            "USED / QUOTA",
            "RTT"
        );
    }
    let mut up = 0;
    for (node, offer) in &rows {
        let addr = node.addrs.first().map(ToString::to_string).unwrap_or_default();
        let status = statuses.iter().find(|(n, _)| n.peer == node.peer).map(|(_, s)| s);
        let offer_ok = match offer {
            Some(Ok(o)) => Some(&o.offer),
            _ => None,
        };
        let problem = match (offer, status) {
            (Some(Err(e)), _) => Some(e.to_string()),
            (_, Some(Err(e))) => Some(e.to_string()),
            (_, None) => Some("not used".to_string()),
            _ => None,
        };
        if problem.is_none() {
            up += 1;
        }
        let reput = reputation.score(&node.peer, now);
        // Nodes below the reputation threshold (or the price ceiling) are not ranked at all.
        let score = ranked.iter().find(|r| r.candidate.node.peer == node.peer).map(|r| r.score);
        if args.json {
            let mut line = format!(
                "{{\"peer\":\"{}\",\"addr\":\"{addr}\",\"up\":{},\"reputation\":{reput:.3}",
                node.peer,
                problem.is_none()
            );
            if let Some(score) = score {
                line += &format!(",\"score\":{score:.3}");
            }
            if let Some(o) = offer_ok {
                line += &format!(
                    ",\"storage_sat_per_gb_month\":{},\"egress_sat_per_gb\":{},\"region\":\"{}\"",
                    o.prices.storage_sat_per_gb_month,
                    o.prices.egress_sat_per_gb,
                    o.region.escape_default()
                );
            }
            if let Some(Ok((s, rtt))) = status {
                line += &format!(
                    ",\"shares\":{},\"pending\":{},\"used\":{},\"quota\":{},\"rtt_ms\":{}",
                    s.shares,
                    s.pending,
                    s.used,
                    s.quota,
                    rtt.as_millis()
                );
            }
            println!("{line}}}");
            continue;
        }
        let (price, egress, region) = offer_ok.map_or(("-".into(), "-".into(), "-".into()), |o| {
            (o.prices.storage_sat_per_gb_month.to_string(), o.prices.egress_sat_per_gb.to_string(), o.region.clone())
        });
        match (status, problem) {
            (Some(Ok((s, rtt))), None) => println!(
                "{:<54} {:<24} {:>9} {:>8} {:<8} {:>5.2} {:>5} {:>6} {:>7} {:>22} {:>4}ms",
                node.peer.to_string(),
                addr,
                price,
                egress,
                if region.is_empty() { "-".into() } else { region },
                reput,
                score.map_or("avoid".into(), |s| format!("{s:.2}")),
                s.shares,
                s.pending,
                format!("{} / {}", ByteSize(s.used), ByteSize(s.quota)),
                rtt.as_millis()
            ),
            (_, problem) => println!("{:<54} {:<24} {}", node.peer.to_string(), addr, problem.unwrap_or_default()),
        }
    }
    if !args.json {
        println!("{up} of {} nodes usable", rows.len());
    }
    Ok(ExitCode::SUCCESS)
}
