//! Shared plumbing of blackbox, one copy of each: the durable file writer, secret files, the
//! clock, byte sizes, TOML config loading and a seeded pseudo-random generator.

pub mod config;
pub mod fs;
mod size;

pub use config::{load_config, ConfigError};
pub use fs::{disk_space, load_or_create_secret, lock, write_atomic, write_secret, AtomicFile, FileLock};
pub use size::{ByteSize, SizeError};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Allocator settings of the `blackbox` binary (and of the benches, so they measure the same).
///
/// Keeps segment-sized buffers on the heap instead of fresh mmaps: blocks are ~0.3-1 MiB, and glibc's
/// default 128 KiB mmap threshold made the encoder spend most of its time in page faults zeroing new
/// pages (3-of-10 encode measured 276 MB/s before, 650 MB/s after, with `blackbox bench pipeline`).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called at start, before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        // Two arenas for two cores: with glibc's default of 8 per core, each worker thread kept its
        // own arena of freed buffers (the gateway's RSS after a 512 MiB upload: 678 MiB, then 208).
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
pub fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date, counting in 400-year eras that start on March 1st.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A seeded xorshift64 generator: fast, reproducible filler for benchmarks and tests (never keys).
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator started from `seed` (any value; zero is mapped to a non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let b = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_reproducible() {
        let a = Xorshift::new(7).bytes(100);
        assert_eq!(a, Xorshift::new(7).bytes(100));
        assert_ne!(a, Xorshift::new(8).bytes(100));
        assert!(now_secs() > 1_700_000_000);
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_083_199), "2026-11-30 23:59:59 UTC");
        assert_eq!(utc(4_107_542_400), "2100-03-01 00:00:00 UTC");
    }
}
