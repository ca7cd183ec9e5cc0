//! `blackbox bench job`: the job sandbox on this machine. A word count (`compute/jobs/
//! wordcount.wat`) over a generated text, in wasmtime beside the same loop in native Rust; fuel per
//! second; and job start latency (compile + instantiate), first run and with the module cached.

use std::fmt;
use std::time::{Duration, Instant};

use blackbox_compute::{Limits, Runner, Streams, Unmetered, Workspace};

const WORDCOUNT: &str = include_str!("../../compute/jobs/wordcount.wat");
const SMALL: &str = "(module (memory (export \"memory\") 1) (func (export \"_start\")))";

/// What the bench measured.
#[derive(Debug, Clone)]
pub struct JobBench {
    /// Bytes counted.
    pub bytes: u64,
    /// Words found (both ways).
    pub words: u64,
    /// Word count in wasmtime: seconds of the run (without start), and fuel.
    pub wasm_secs: f64,
    /// Fuel used.
    pub fuel: u64,
    /// The same in native Rust.
    pub native_secs: f64,
    /// Start latency of a small module: compiled, then cached (median of 21).
    pub start_cold: Duration,
    /// Start latency with the module cached.
    pub start_warm: Duration,
}

impl fmt::Display for JobBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = self.bytes as f64 / 1e6;
        writeln!(f, "word count of {:.0} MB ({} words), one core:", mb, self.words)?;
        writeln!(
            f,
            "  wasmtime {:.0} MB/s ({:.2} s, {:.2} CPU-s/GiB), native {:.0} MB/s: wasm is {:.0}% of native",
            mb / self.wasm_secs,
            self.wasm_secs,
            self.wasm_secs * (1u64 << 30) as f64 / self.bytes as f64,
            mb / self.native_secs,
            100.0 * self.native_secs / self.wasm_secs
        )?;
        writeln!(
            f,
            "  fuel {} ({:.2} per byte), {:.2e} fuel/s",
            self.fuel,
            self.fuel as f64 / self.bytes as f64,
            self.fuel as f64 / self.wasm_secs
        )?;
        write!(
            f,
            "job start (compile + instantiate, small module): first {:.1} ms, cached {:.2} ms (median of 21)",
            self.start_cold.as_secs_f64() * 1e3,
            self.start_warm.as_secs_f64() * 1e3
        )
    }
}

fn text(bytes: usize) -> Vec<u8> {
    let words: [&[u8]; 6] = [b"storage ", b"grid\n", b"erasure ", b"code\t", b"a ", b"blackbox  "];
    let mut rng = blackbox_util::Xorshift::new(7);
    let mut out = Vec::with_capacity(bytes + 16);
    while out.len() < bytes {
        out.extend_from_slice(words[(rng.next_u64() % 6) as usize]);
    }
    out.truncate(bytes);
    out
}

fn native_count(data: &[u8]) -> u64 {
    let (mut words, mut inword) = (0u64, false);
    for &c in data {
        if matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
            inword = false;
        } else if !inword {
            words += 1;
            inword = true;
        }
    }
    words
}

/// Runs the bench over `mib` MiB of text.
pub fn measure_job(mib: usize) -> Result<JobBench, blackbox_compute::ComputeError> {
    let data = text(mib << 20);
    let dir = std::env::temp_dir().join(format!("blackbox-bench-job-{}", std::process::id()));
    let limits =
        Limits { fuel: u64::MAX / 4, memory: 64 << 20, timeout: Duration::from_secs(600), max_output: 1 << 20 };
    let runner = Runner::new()?;
    let ws = Workspace::create(&dir, "wc")?;
    ws.add_input("text", &data)?;
    let args = ["wc".to_string(), "text".to_string()];
    let out = runner.run(WORDCOUNT.as_bytes(), &args, &ws, limits, [0; 32], &Streams::new(1 << 20), Unmetered)?;
    let words: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    let t = Instant::now();
    let native = std::hint::black_box(native_count(std::hint::black_box(&data)));
    let native_secs = t.elapsed().as_secs_f64();
    assert_eq!(native, words, "the wasm and native counts differ");
    let mut starts = Vec::new();
    for i in 0..21 {
        // A distinct module each time: the first start compiles it.
        let module = format!("{SMALL} ;; {i}");
        let cold = Instant::now();
        let ws = Workspace::create(&dir, "s")?;
        runner.run(module.as_bytes(), &[], &ws, limits, [0; 32], &Streams::new(1024), Unmetered)?;
        let cold = cold.elapsed();
        let warm = runner.run(module.as_bytes(), &[], &ws, limits, [0; 32], &Streams::new(1024), Unmetered)?.start;
        starts.push((cold, warm));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    Ok(JobBench {
        bytes: data.len() as u64,
        words,
        wasm_secs: out.run.as_secs_f64(),
        fuel: out.fuel,
        native_secs,
        start_cold: median(starts.iter().map(|s| s.0).collect()),
        start_warm: median(starts.iter().map(|s| s.1).collect()),
    })
}
