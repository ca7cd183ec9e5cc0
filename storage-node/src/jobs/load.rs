//! When a node may take jobs: its daily window, and for `when-idle` offers how busy the
//! machine's own processes keep it.

use std::time::Duration;

/// Whether `minute` (after midnight UTC) is in the window `start..end`, which may wrap past
/// midnight; `start == end` means all day.
pub fn in_window(minute: u16, start: u16, end: u16) -> bool {
    match start.cmp(&end) {
        std::cmp::Ordering::Equal => true,
        std::cmp::Ordering::Less => (start..end).contains(&minute),
        std::cmp::Ordering::Greater => minute >= start || minute < end,
    }
}

/// CPUs left idle when other processes keep `busy` of `cpus` busy.
pub fn idle_cores(cpus: usize, busy: f64) -> f64 {
    (cpus as f64 - busy).max(0.0)
}

/// The machine's CPUs and how many of them were busy over `window` (from `/proc/stat`; a machine
/// without it counts as fully busy, so a `when-idle` node there never takes jobs).
pub(super) fn machine_load(window: Duration) -> (usize, f64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (Some(a), Some(b)) = (cpu_times(), {
        std::thread::sleep(window);
        cpu_times()
    }) else {
        return (cpus, cpus as f64);
    };
    let (total, idle) = (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1));
    if total == 0 {
        return (cpus, 0.0);
    }
    (cpus, cpus as f64 * (total - idle) as f64 / total as f64)
}

/// Total and idle jiffies of all CPUs.
fn cpu_times() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((v.iter().take(8).sum(), idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_past_midnight() {
        assert!(in_window(600, 540, 1020));
        assert!(!in_window(1020, 540, 1020));
        assert!(in_window(1380, 1320, 360) && in_window(100, 1320, 360));
        assert!(!in_window(720, 1320, 360));
        assert!(in_window(5, 7, 7));
        assert_eq!(idle_cores(4, 3.5), 0.5);
        assert_eq!(idle_cores(2, 3.0), 0.0);
        let (cpus, busy) = machine_load(Duration::from_millis(50));
        assert!(cpus >= 1 && busy >= 0.0 && busy <= cpus as f64 + 1e-9);
    }
}
