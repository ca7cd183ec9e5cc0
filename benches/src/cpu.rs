//! CPU accounting for `bench e2e`: CPU seconds of the node processes (from `/proc`), and where
//! every process spent it, from a system-wide `perf record` classified by symbol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// User and system CPU seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    /// User-mode seconds.
    pub user: f64,
    /// Kernel-mode seconds.
    pub sys: f64,
}

impl Cpu {
    /// User + system.
    pub fn total(&self) -> f64 {
        self.user + self.sys
    }

    /// What was spent between `before` and `self`.
    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu { user: (self.user - before.user).max(0.0), sys: (self.sys - before.sys).max(0.0) }
    }

    fn add(&mut self, o: Cpu) {
        self.user += o.user;
        self.sys += o.sys;
    }
}

/// The CPU time process `pid` has used so far (`/proc/PID/stat` fields 14 and 15).
pub fn of_process(pid: u32) -> Option<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses utime and stime out of a `/proc/PID/stat` line (the name may hold spaces and parens).
pub fn parse_stat(stat: &str) -> Option<Cpu> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let tick = ticks_per_second();
    let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some(Cpu { user: u / tick, sys: s / tick })
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The CPU time of all of `pids` together (processes that are gone count nothing).
pub fn of_all(pids: &[u32]) -> Cpu {
    let mut sum = Cpu::default();
    for &p in pids {
        if let Some(c) = of_process(p) {
            sum.add(c);
        }
    }
    sum
}

/// The CPU time of `pid` and its children (a devnet and its nodes).
pub fn of_tree(pid: u32) -> Cpu {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let mut pids: Vec<u32> = children.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    pids.push(pid);
    of_all(&pids)
}

/// A running system-wide `perf record`.
pub struct Perf {
    child: Child,
    out: PathBuf,
}

/// Sampling frequency, per CPU.
const PERF_HZ: &str = "997";

impl Perf {
    /// Starts sampling every CPU into `out`; `None` when perf is missing or not permitted.
    pub fn start(out: &Path) -> Option<Perf> {
        let child = Command::new("perf")
            .args(["record", "-a", "-q", "-F", PERF_HZ, "-o"])
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf needs a moment before it samples.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Some(Perf { child, out: out.to_path_buf() })
    }

    /// Stops sampling and returns samples per (pid, category).
    pub fn stop(mut self) -> Option<Samples> {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        self.child.wait().ok()?;
        let script = Command::new("perf")
            .args(["script", "-F", "pid,ip,sym,dso", "-i"])
            .arg(&self.out)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let _ = std::fs::remove_file(&self.out);
        Some(Samples::parse(&String::from_utf8_lossy(&script.stdout)))
    }
}

/// Where the CPU went, by what the code does.
pub fn category(sym: &str, dso: &str) -> &'static str {
    let s = sym.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| s.contains(w));
    if dso.contains("kernel") {
        "kernel"
    } else if has(&["blake3"]) {
        "hashing (BLAKE3)"
    } else if has(&["reed_solomon", "reed-solomon"]) {
        "erasure coding"
    } else if has(&["chacha", "poly1305", "snow::"]) {
        "ChaCha20-Poly1305"
    } else if has(&["aes", "gcm", "ghash", "ring_core"]) {
        "AES-GCM"
    } else if has(&["memcpy", "memmove", "memset"]) {
        "memcpy"
    } else if has(&["rocksdb"]) || dso.contains("rocksdb") {
        "RocksDB"
    } else if has(&["secp256k1", "bitcoinconsensus", "sha256"]) {
        "payments (signatures)"
    } else if has(&["malloc", "free", "realloc", "_int_", "alloc::"]) {
        "allocator"
    } else {
        "other"
    }
}

/// The share of each category in a group's samples, largest first.
pub type Shares = Vec<(&'static str, f64)>;

/// Sample counts by process and category.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    by_pid: BTreeMap<u32, BTreeMap<&'static str, u64>>,
}

impl Samples {
    /// Reads `perf script -F pid,ip,sym,dso` output; lines it cannot read are skipped.
    pub fn parse(text: &str) -> Samples {
        let mut s = Samples::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(pid) = words.next().and_then(|p| p.parse::<u32>().ok()) else { continue };
            let rest: Vec<&str> = words.skip(1).collect();
            let rest = rest.join(" ");
            let (sym, dso) = rest.rsplit_once(" (").map_or((rest.as_str(), ""), |(a, b)| (a, b));
            *s.by_pid.entry(pid).or_default().entry(category(sym, dso)).or_default() += 1;
        }
        s
    }

    /// The share of each category in the samples of `pids`, sorted largest first.
    pub fn shares(&self, pids: &[u32]) -> Shares {
        let mut sum: BTreeMap<&'static str, u64> = BTreeMap::new();
        for p in pids {
            for (c, n) in self.by_pid.get(p).into_iter().flatten() {
                *sum.entry(c).or_default() += n;
            }
        }
        let total: u64 = sum.values().sum();
        let mut v: Vec<(&'static str, f64)> =
            sum.into_iter().map(|(c, n)| (c, n as f64 / total.max(1) as f64)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (black box) (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        let c = parse_stat(line).unwrap();
        let t = ticks_per_second();
        assert_eq!(c, Cpu { user: 250.0 / t, sys: 50.0 / t });
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn samples_are_classified_by_symbol_and_process() {
        let text = "\
  10 ffffffff81607154 __handle_mm_fault ([kernel.kallsyms])
  10 55e7 blake3::portable::compress_in_place (/bin/blackbox)
  10 55e8 <chacha20::backends::avx2::Backend as X>::gen (/bin/blackbox)
  11 55e9 reed_solomon_simd::engine::fwht (/bin/blackbox)
  junk line
";
        let s = Samples::parse(text);
        let ten = s.shares(&[10]);
        assert_eq!(ten.len(), 3);
        assert!(ten.iter().all(|(_, f)| (*f - 1.0 / 3.0).abs() < 1e-9));
        assert_eq!(s.shares(&[11]), vec![("erasure coding", 1.0)]);
        assert!(s.shares(&[12]).is_empty());
    }
}
