//! Bytes served this calendar month (UTC), against the offer's `bandwidth_per_month`: kept in
//! memory, saved to a small file at most once a minute and at shutdown (a crash forgets at most a
//! minute of counting).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the count is written while serving.
const SAVE_EVERY: Duration = Duration::from_secs(60);

struct State {
    month: u32,
    bytes: u64,
    saved: Instant,
}

/// The node's egress of the current month.
pub struct MonthlyEgress {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

/// `year * 12 + month - 1` of a Unix time (UTC).
pub fn month_of(secs: u64) -> u32 {
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y * 12 + m - 1) as u32
}

impl MonthlyEgress {
    /// A counter saved at `path` (none: in memory only), resumed from it when it is this month's.
    pub fn open(path: Option<PathBuf>) -> Self {
        let month = month_of(blackbox_util::now_secs());
        let saved = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| {
            let (m, b) = t.trim().split_once(' ')?;
            Some((m.parse::<u32>().ok()?, b.parse::<u64>().ok()?))
        });
        let bytes = saved.filter(|(m, _)| *m == month).map_or(0, |(_, b)| b);
        Self { path, state: Mutex::new(State { month, bytes, saved: Instant::now() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes served this month.
    pub fn used(&self) -> u64 {
        let mut s = self.lock();
        let month = month_of(blackbox_util::now_secs());
        if s.month != month {
            (s.month, s.bytes) = (month, 0);
        }
        s.bytes
    }

    /// Counts `n` bytes served.
    pub fn add(&self, n: u64) {
        let save = {
            let mut s = self.lock();
            let month = month_of(blackbox_util::now_secs());
            if s.month != month {
                (s.month, s.bytes) = (month, 0);
            }
            s.bytes = s.bytes.saturating_add(n);
            s.saved.elapsed() >= SAVE_EVERY
        };
        if save {
            self.save();
        }
    }

    /// Writes the count (durably).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let text = {
            let mut s = self.lock();
            s.saved = Instant::now();
            format!("{} {}\n", s.month, s.bytes)
        };
        if let Err(e) = blackbox_util::write_atomic(path, text.as_bytes()) {
            tracing::warn!(error = %e, "cannot save the month's egress count");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_resumed_counts() {
        assert_eq!(month_of(0), 1970 * 12);
        assert_eq!(month_of(951_782_400), 2000 * 12 + 1); // 2000-02-29
        assert_eq!(month_of(1_798_761_599), 2026 * 12 + 11); // 2026-12-31 23:59:59
        assert_eq!(month_of(1_798_761_600), 2027 * 12); // 2027-01-01
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egress");
        let e = MonthlyEgress::open(Some(path.clone()));
        e.add(100);
        e.save();
        assert_eq!(MonthlyEgress::open(Some(path.clone())).used(), 100);
        std::fs::write(&path, "5 999\n").unwrap();
        assert_eq!(MonthlyEgress::open(Some(path)).used(), 0, "another month's count is not resumed");
    }
}
