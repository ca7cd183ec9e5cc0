//! The wasmtime sandbox: one engine per node, one store per job with its own limits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{Config, Engine, Linker, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

use crate::{ComputeError, Limits, Meter, ModuleCache, Outcome, Stop, Workspace};

/// How often running jobs are looked at (time limit, output size, meter).
const TICK: Duration = Duration::from_millis(10);
/// Deepest WebAssembly call stack a job may use.
const MAX_STACK: usize = 1 << 20;
/// Fuel between the points where compiled code stores its fuel count where the watchdog reads it
/// (and yields to the job's executor): the meter sees fuel used to within this much.
const FUEL_CHECK_INTERVAL: u64 = 10_000_000;
/// WASI's `ENOSYS`.
const ERRNO_NOSYS: i32 = 52;

/// Every job's state inside its store.
struct Host {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// A job's stdout and stderr as it runs: readable while it writes them, bounded in size.
#[derive(Clone)]
pub struct Streams {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    capacity: usize,
}

impl Streams {
    /// Empty streams holding at most `capacity` bytes each.
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self { stdout: MemoryOutputPipe::new(capacity), stderr: MemoryOutputPipe::new(capacity), capacity }
    }

    /// What the job wrote to stdout so far.
    pub fn stdout(&self) -> Bytes {
        self.stdout.contents()
    }

    /// What the job wrote to stderr so far.
    pub fn stderr(&self) -> Bytes {
        self.stderr.contents()
    }

    /// Whether either stream is at its capacity: asked of the pipes' free space, without copying
    /// what they hold (this runs on every watchdog tick).
    fn full(&self) -> bool {
        use wasmtime_wasi::p2::OutputStream;
        let room = |p: &MemoryOutputPipe| p.clone().check_write().unwrap_or(0);
        self.capacity > 0 && (room(&self.stdout) == 0 || room(&self.stderr) == 0)
    }
}

/// A stop decided by the epoch callback, carried out of wasmtime as the call's error.
#[derive(Debug)]
struct Stopped(Stop);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Stopped {}

/// Clocks that never move: a job's result may not depend on when or where it ran.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Compiles and runs jobs; owns the engine, the module cache and the epoch ticker.
pub struct Runner {
    engine: Engine,
    linker: Linker<Host>,
    cache: ModuleCache,
    stop_ticker: Arc<AtomicBool>,
}

impl Runner {
    /// A runner with fuel metering, epoch interruption and a bounded stack.
    pub fn new() -> Result<Self, ComputeError> {
        let mut config = Config::new();
        config.consume_fuel(true).epoch_interruption(true).max_wasm_stack(MAX_STACK);
        // NaN bit patterns are made the same on every CPU, so floating point stays deterministic.
        config.cranelift_nan_canonicalization(true);
        let engine = Engine::new(&config).map_err(|e| ComputeError::Runtime(format!("{e:#}")))?;
        let mut linker: Linker<Host> = Linker::new(&engine);
        p1::add_to_linker_async(&mut linker, |h: &mut Host| &mut h.wasi).map_err(runtime)?;
        // Waiting on clocks would block a node thread that no fuel or epoch can interrupt; jobs
        // compute, they do not sleep.
        linker.allow_shadowing(true);
        linker
            .func_wrap("wasi_snapshot_preview1", "poll_oneoff", |_: i32, _: i32, _: i32, _: i32| ERRNO_NOSYS)
            .map_err(runtime)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (weak, stop) = (engine.weak(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("job-epochs".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(ComputeError::Io)?;
        Ok(Self { engine, linker, cache: ModuleCache::default(), stop_ticker })
    }

    /// Compiles `module` (or takes it from the cache) without running it: checks that it is a
    /// WASI command this runner can link.
    pub fn prepare(&self, module: &[u8]) -> Result<bool, ComputeError> {
        let (module, cached) = self.cache.get(&self.engine, module)?;
        self.linker.instantiate_pre(&module).map_err(|e| ComputeError::Module(format!("{e:#}")))?;
        if module.get_export("_start").is_none() {
            return Err(ComputeError::Module("no `_start` export (not a WASI command)".into()));
        }
        Ok(cached)
    }

    /// Runs `module` with `args` (the first is the program name) in `ws` under `limits`: the
    /// inputs are read-only at `/in`, the scratch directory is `/out`, there is no network and
    /// no environment; `meter` is asked as fuel is used. Streams fill as it runs. Blocks the
    /// calling thread (which must not be inside an async runtime) until the job ends.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        module: &[u8],
        args: &[String],
        ws: &Workspace,
        limits: Limits,
        seed: [u8; 32],
        streams: &Streams,
        meter: impl Meter,
    ) -> Result<Outcome, ComputeError> {
        let started = Instant::now();
        let (module, _) = self.cache.get(&self.engine, module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| ComputeError::Module(format!("{e:#}")))?;
        let mut wasi = WasiCtxBuilder::new();
        wasi.args(args)
            .stdout(streams.stdout.clone())
            .stderr(streams.stderr.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
            .insecure_random_seed(u128::from_le_bytes(seed[..16].try_into().unwrap_or_default()))
            .allow_blocking_current_thread(true);
        wasi.preopened_dir(ws.inputs(), "/in", FsPerms::ReadOnly).map_err(runtime)?;
        wasi.preopened_dir(ws.scratch(), "/out", FsPerms::ReadWrite).map_err(runtime)?;
        let memory = usize::try_from(limits.memory).unwrap_or(usize::MAX);
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(memory)
            .memories(1)
            .instances(1)
            .tables(4)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, Host { wasi: wasi.build_p1(), limits: store_limits });
        store.limiter(|h| &mut h.limits);
        store.fuel_async_yield_interval(Some(FUEL_CHECK_INTERVAL)).map_err(runtime)?;
        store.set_fuel(limits.fuel).map_err(runtime)?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(watchdog(limits, ws.scratch(), streams.clone(), meter, started));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (start, ran, result) = rt.block_on(async {
            let instance = pre.instantiate_async(&mut store).await;
            let start = started.elapsed();
            let ran = Instant::now();
            let func = instance.and_then(|i| i.get_typed_func::<(), ()>(&mut store, "_start"));
            let result = match func {
                Ok(f) => f.call_async(&mut store, ()).await,
                Err(e) => Err(e),
            };
            (start, ran, result)
        });
        let fuel = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let mut stop = classify(result, streams);
        let outputs = match ws.outputs(limits.max_output)? {
            Some(files) => files,
            None => {
                stop = Stop::OutputTooLarge;
                Vec::new()
            }
        };
        Ok(Outcome {
            stop,
            fuel,
            stdout: streams.stdout(),
            stderr: streams.stderr(),
            outputs,
            start,
            run: ran.elapsed(),
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn runtime(e: impl std::fmt::Display) -> ComputeError {
    ComputeError::Runtime(e.to_string())
}

/// The epoch callback: stops the job past its time or output limits, or when the meter says so.
fn watchdog(
    limits: Limits,
    scratch: PathBuf,
    streams: Streams,
    meter: impl Meter,
    started: Instant,
) -> impl FnMut(wasmtime::StoreContextMut<'_, Host>) -> wasmtime::Result<UpdateDeadline> + Send + Sync + 'static {
    let meter = Mutex::new(meter);
    let mut ticks = 0u64;
    move |ctx| {
        ticks += 1;
        let stop = |s: Stop| Err(wasmtime::Error::new(Stopped(s)));
        if started.elapsed() > limits.timeout {
            return stop(Stop::Timeout);
        }
        if streams.full() || (ticks.is_multiple_of(10) && crate::workspace::dir_bytes(&scratch) > limits.max_output) {
            return stop(Stop::OutputTooLarge);
        }
        let used = limits.fuel.saturating_sub(ctx.get_fuel().unwrap_or(0));
        let verdict = meter.lock().unwrap_or_else(|p| p.into_inner()).used(used);
        if let Err(why) = verdict {
            return stop(Stop::Stopped(why));
        }
        Ok(UpdateDeadline::Continue(1))
    }
}

/// How a call of `_start` ended.
fn classify(result: wasmtime::Result<()>, streams: &Streams) -> Stop {
    let e = match result {
        Ok(()) => return Stop::Exited(0),
        Err(e) => e,
    };
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Stop::Exited(exit.0);
    }
    if let Some(Stopped(stop)) = e.downcast_ref::<Stopped>() {
        return stop.clone();
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => Stop::OutOfFuel,
            Trap::StackOverflow => Stop::StackOverflow,
            other => Stop::Trap(other.to_string()),
        };
    }
    let text = format!("{e:#}");
    if text.contains("memory growth failure") || text.contains("growing memory") {
        Stop::OutOfMemory
    } else if streams.full() || text.contains("beyond capacity") {
        Stop::OutputTooLarge
    } else {
        Stop::Trap(text)
    }
}
