//! `blackbox bench dir`: single-entry operations on directories of growing size, on a fresh
//! devnet of real node processes, timed in-process through the client library.
//!
//! Each directory is built in one bulk operation; then adds, lookups, page listings and small
//! puts are timed one by one (medians), and a full listing once, so the growth is visible.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use blackbox_client::namespace::new_entry;
use blackbox_client::{PutOptions, Session};
use blackbox_core::dir::{Entry, Kind};
use blackbox_core::ReadCap;
use blackbox_util::Xorshift;

use crate::e2e::{start_devnet, stop_devnet, vm_hwm_kib, E2eConfig, E2eError};

/// What to run.
#[derive(Debug, Clone)]
pub struct DirConfig {
    /// The `blackbox` executable (runs the devnet).
    pub exe: PathBuf,
    /// Nodes in the devnet.
    pub nodes: usize,
    /// Directory sizes, smallest first.
    pub sizes: Vec<usize>,
    /// Timed repetitions of each single operation.
    pub reps: usize,
    /// Run the devnet with payments.
    pub payments: bool,
}

/// The timings for one directory size (milliseconds).
#[derive(Debug, Clone)]
pub struct DirRow {
    /// Entries in the directory.
    pub entries: usize,
    /// Building it in one bulk operation.
    pub build_ms: f64,
    /// Median: add one entry.
    pub add_ms: f64,
    /// Median: look up one name, cold (root read included, no cached nodes).
    pub lookup_ms: f64,
    /// Median: list a page of 1,000 names from a random start, cold.
    pub page_ms: f64,
    /// Listing every name once, cold.
    pub list_all_ms: f64,
    /// Median: put a 1 KiB file into the directory by path.
    pub put_small_ms: f64,
}

/// The measurements.
#[derive(Debug, Clone)]
pub struct DirReport {
    /// What ran.
    pub cfg: DirConfig,
    /// One row per size.
    pub rows: Vec<DirRow>,
    /// This process's peak RSS, KiB.
    pub client_rss_kib: Option<u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// A file entry with a realistic cap (random, never read).
fn fake_entry(rng: &mut Xorshift, i: u64) -> Entry {
    let mut key = [0u8; 32];
    let mut root = [0u8; 32];
    rng.fill(&mut key);
    rng.fill(&mut root);
    let cap = ReadCap { key, root, k: 3, n: 10, size: i * 1000 };
    new_entry(Kind::File, cap.to_string(), cap.size)
}

fn name(i: usize) -> String {
    format!("photos/2026/img-{i:08}.jpg")
}

async fn measure_size(s: &Session, n: usize, reps: usize, tmp: &std::path::Path) -> Result<DirRow, E2eError> {
    let err = |e: blackbox_client::ClientError| E2eError::Client(e.to_string());
    let opts = s.upload_options(&PutOptions::default()).map_err(err)?;
    let mut rng = Xorshift::new(n as u64);
    let cap = s.client.dir_create(&opts).await.map_err(err)?;
    let entries: Vec<(String, Entry)> = (0..n).map(|i| (name(i * 2), fake_entry(&mut rng, i as u64))).collect();
    let t = Instant::now();
    s.client.dir_replace_all(&cap, entries, &opts).await.map_err(err)?;
    let build_ms = ms(t);
    let read = cap.read_cap();
    let (mut add, mut lookup, mut page, mut put) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let small = tmp.join("small");
    std::fs::write(&small, rng.bytes(1024))?;
    for r in 0..reps {
        let odd = name((rng.next_u64() as usize % n.max(1)) * 2 + 1);
        let e = fake_entry(&mut rng, r as u64);
        let t = Instant::now();
        s.client.dir_update(&cap, &[&odd], &opts, |_| Ok(vec![Some(e.clone())])).await.map_err(err)?;
        add.push(ms(t));

        let want = name((rng.next_u64() as usize % n.max(1)) * 2);
        s.client.clear_node_cache();
        let t = Instant::now();
        let snap = s.client.dir_read(&read).await.map_err(err)?;
        let found = s.client.dir_get(&read, &snap, &want).await.map_err(err)?;
        lookup.push(ms(t));
        if found.is_none() {
            return Err(E2eError::Client(format!("{want} not found")));
        }

        let from = name(rng.next_u64() as usize % n.max(1));
        s.client.clear_node_cache();
        let t = Instant::now();
        let snap = s.client.dir_read(&read).await.map_err(err)?;
        let listed = s.client.dir_list(&read, &snap, Some(&from), 1000).await.map_err(err)?;
        page.push(ms(t));
        if listed.is_empty() && n > 1000 {
            return Err(E2eError::Client("empty page".into()));
        }

        let path = format!("{cap}/small-{r}");
        let t = Instant::now();
        s.put_path(&small, &path, &PutOptions::default(), false).await.map_err(err)?;
        put.push(ms(t));
    }
    s.client.clear_node_cache();
    let t = Instant::now();
    let snap = s.client.dir_read(&read).await.map_err(err)?;
    let (mut after, mut total) = (None::<String>, 0usize);
    loop {
        let page = s.client.dir_list(&read, &snap, after.as_deref(), 1000).await.map_err(err)?;
        total += page.len();
        match page.last() {
            Some((last, _)) => after = Some(last.clone()),
            None => break,
        }
    }
    let list_all_ms = ms(t);
    if total < n {
        return Err(E2eError::Client(format!("listed {total} of {n} names")));
    }
    Ok(DirRow {
        entries: n,
        build_ms,
        add_ms: median(add),
        lookup_ms: median(lookup),
        page_ms: median(page),
        list_all_ms,
        put_small_ms: median(put),
    })
}

/// Runs the benchmark on a fresh devnet.
pub async fn run(cfg: &DirConfig) -> Result<DirReport, E2eError> {
    let dir = std::env::temp_dir().join(format!("blackbox-bench-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let net_dir = dir.join("net");
    let e2e = E2eConfig::devnet(cfg.exe.clone(), cfg.nodes, cfg.payments);
    let devnet = start_devnet(&e2e, &net_dir)?;
    let result: Result<Vec<DirRow>, E2eError> = async {
        let s = Session::open(&net_dir.join("client.toml")).await.map_err(|e| E2eError::Client(e.to_string()))?;
        let mut rows = Vec::new();
        for &n in &cfg.sizes {
            eprintln!("directory of {n} entries…");
            rows.push(measure_size(&s, n, cfg.reps, &dir).await?);
        }
        Ok(rows)
    }
    .await;
    stop_devnet(devnet);
    let _ = std::fs::remove_dir_all(&dir);
    let client_rss_kib = vm_hwm_kib(&std::process::id().to_string());
    Ok(DirReport { cfg: cfg.clone(), rows: result?, client_rss_kib })
}

impl fmt::Display for DirReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let payments = if self.cfg.payments { "on" } else { "off" };
        writeln!(
            f,
            "directories on a devnet of {} nodes, payments {payments}; medians of {} runs (ms):",
            self.cfg.nodes, self.cfg.reps
        )?;
        writeln!(
            f,
            "  {:>9} {:>10} {:>8} {:>8} {:>10} {:>10} {:>11}",
            "entries", "bulk build", "add", "lookup*", "page 1000*", "list all*", "put 1 KiB"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:>9} {:>10.0} {:>8.1} {:>8.1} {:>10.1} {:>10.0} {:>11.1}",
                r.entries, r.build_ms, r.add_ms, r.lookup_ms, r.page_ms, r.list_all_ms, r.put_small_ms
            )?;
        }
        writeln!(f, "  * cold: no tree node cached, as in a fresh process; add and put run warm, as in a gateway")?;
        let rss = self.client_rss_kib.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        write!(f, "  client peak RSS (whole bench, largest directory included): {rss}")
    }
}
