//! Earnings per UTC day: the node's cumulative billed and received satoshis, recorded once a
//! minute under today's date in `earnings-days` (one writer: the daemon), so the dashboard can
//! chart what each day brought in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Days kept.
const KEEP_DAYS: usize = 400;
/// Largest file read (a line is ~40 bytes).
const MAX_FILE: u64 = 1 << 20;
const HEADER: &str = "# blackbox earnings-days v1: day earned_total received_total";

/// What one day or month brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `YYYY-MM-DD` (days) or `YYYY-MM` (months).
    pub name: String,
    /// Satoshis received in signed commitments that period.
    pub sat: u64,
    /// Satoshis billed that period.
    pub earned_sat: u64,
}

/// The record: cumulative totals at the end of each day seen.
#[derive(Debug, Clone, Default)]
pub struct History {
    path: Option<PathBuf>,
    days: BTreeMap<String, (u64, u64)>,
}

/// Whether `d` is a `YYYY-MM-DD` date (ASCII digits and dashes).
fn is_day(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10 && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
}

impl History {
    /// Loads `dir/earnings-days` (missing or damaged lines: skipped).
    pub fn load(dir: &Path) -> Self {
        let path = dir.join("earnings-days");
        let text = std::fs::File::open(&path)
            .ok()
            .and_then(|f| std::io::read_to_string(std::io::Read::take(f, MAX_FILE)).ok())
            .unwrap_or_default();
        Self { path: Some(path), ..Self::parse(&text) }
    }

    /// Parses the file's text (damaged lines are skipped), kept in memory only.
    pub fn parse(text: &str) -> Self {
        let days = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let day = f.next().filter(|d| is_day(d))?.to_string();
                Some((day, (f.next()?.parse().ok()?, f.next()?.parse().ok()?)))
            })
            .collect();
        Self { path: None, days }
    }

    /// Sets today's totals in memory; true if they changed.
    pub fn set(&mut self, now: u64, earned: u64, received: u64) -> bool {
        let day = blackbox_util::utc(now)[..10].to_string();
        if self.days.get(&day) == Some(&(earned, received)) {
            return false;
        }
        self.days.insert(day, (earned, received));
        while self.days.len() > KEEP_DAYS {
            self.days.pop_first();
        }
        true
    }

    /// Records the totals now; saves when they changed (atomic write).
    pub fn record(&mut self, now: u64, earned: u64, received: u64) -> std::io::Result<()> {
        if !self.set(now, earned, received) {
            return Ok(());
        }
        let Some(path) = &self.path else { return Ok(()) };
        let mut text = format!("{HEADER}\n");
        for (d, (e, r)) in &self.days {
            text.push_str(&format!("{d} {e} {r}\n"));
        }
        blackbox_util::write_atomic(path, text.as_bytes())
    }

    /// What each recorded day brought in (its totals minus the day before's).
    pub fn per_day(&self) -> Vec<Period> {
        let mut prev = (0u64, 0u64);
        self.days
            .iter()
            .map(|(d, &(e, r))| {
                let p = Period { name: d.clone(), sat: r.saturating_sub(prev.1), earned_sat: e.saturating_sub(prev.0) };
                prev = (e, r);
                p
            })
            .collect()
    }

    /// The days summed by month.
    pub fn per_month(&self) -> Vec<Period> {
        let mut months: Vec<Period> = Vec::new();
        for d in self.per_day() {
            let m = &d.name[..7];
            match months.last_mut() {
                Some(last) if last.name == m => {
                    last.sat += d.sat;
                    last.earned_sat += d.earned_sat;
                }
                _ => months.push(Period { name: m.to_string(), ..d }),
            }
        }
        months
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_from_cumulative_totals() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path());
        let day = 86_400;
        let nov30 = 20_422 * day; // 2025-11-30
        h.record(nov30 + 100, 50, 40).unwrap();
        h.record(nov30 + 200, 60, 55).unwrap();
        h.record(nov30 + day, 100, 90).unwrap();
        h.record(nov30 + 2 * day, 100, 90).unwrap();
        let h = History::load(dir.path());
        let days: Vec<_> = h.per_day().iter().map(|p| (p.name.clone(), p.sat, p.earned_sat)).collect();
        assert_eq!(
            days,
            vec![("2025-11-30".into(), 55, 60), ("2025-12-01".into(), 35, 40), ("2025-12-02".into(), 0, 0)]
        );
        let months: Vec<_> = h.per_month().iter().map(|p| (p.name.clone(), p.sat)).collect();
        assert_eq!(months, vec![("2025-11".into(), 55), ("2025-12".into(), 35)]);
        std::fs::write(dir.path().join("earnings-days"), "garbage\n2025-12-01 x 1\n\u{e9}-12-12345 1 2\n").unwrap();
        assert!(History::load(dir.path()).per_day().is_empty());
    }
}
