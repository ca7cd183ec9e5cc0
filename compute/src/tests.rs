use std::time::Duration;

use super::*;

const WORDCOUNT: &str = include_str!("../jobs/wordcount.wat");
const SPIN: &str = include_str!("../jobs/spin.wat");
const MEMBOMB: &str = include_str!("../jobs/membomb.wat");

/// A module whose `_start` opens `path` under the preopen `dir` with `oflags` and `rights`, writes
/// "x" to it when it opened, and prints "opened" or "denied".
fn opener(dir: u32, path: &str, oflags: u32, rights: u64) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "opened\ndenied\nx")
  (data (i32.const 200) "{path}")
  (func (export "_start")
    (if (call $open (i32.const {dir}) (i32.const 0) (i32.const 200) (i32.const {len}) (i32.const {oflags})
          (i64.const {rights}) (i64.const 0) (i32.const 0) (i32.const 0))
      (then (i32.store (i32.const 8) (i32.const 107)))
      (else
        (i32.store (i32.const 8) (i32.const 114))
        (i32.store (i32.const 12) (i32.const 1))
        (drop (call $write (i32.load (i32.const 0)) (i32.const 8) (i32.const 1) (i32.const 16)))
        (i32.store (i32.const 8) (i32.const 100))))
    (i32.store (i32.const 12) (i32.const 7))
    (drop (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))"#,
        len = path.len()
    )
}

fn limits() -> Limits {
    Limits { fuel: 1_000_000_000, memory: 16 << 20, timeout: Duration::from_secs(30), max_output: 1 << 20 }
}

fn run_with(module: &str, args: &[&str], inputs: &[(&str, &[u8])], limits: Limits) -> Outcome {
    let runner = Runner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::create(dir.path(), "job").unwrap();
    for (name, data) in inputs {
        ws.add_input(name, data).unwrap();
    }
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let streams = Streams::new(limits.max_output);
    runner.run(module.as_bytes(), &args, &ws, limits, [7; 32], &streams, Unmetered).unwrap()
}

#[test]
fn word_count_is_right_and_its_fuel_deterministic() {
    let text = b"the quick  brown\tfox\njumps over\r\nthe lazy dog ".repeat(5000);
    let a = run_with(WORDCOUNT, &["wc", "text"], &[("text", &text)], limits());
    assert_eq!(a.stop, Stop::Exited(0));
    assert_eq!(&a.stdout[..], b"45000\n");
    let b = run_with(WORDCOUNT, &["wc", "text"], &[("text", &text)], limits());
    assert_eq!(a.fuel, b.fuel);
    assert!(a.fuel > 0);
    assert_eq!(a.digest(), b.digest());
    let missing = run_with(WORDCOUNT, &["wc", "nope"], &[("text", &text)], limits());
    assert_eq!(missing.stop, Stop::Exited(3));
}

#[test]
fn an_endless_loop_uses_exactly_its_fuel() {
    let l = Limits { fuel: 5_000_000, ..limits() };
    let out = run_with(SPIN, &["spin"], &[], l);
    assert_eq!(out.stop, Stop::OutOfFuel);
    assert_eq!(out.fuel, 5_000_000);
}

#[test]
fn an_endless_loop_stops_at_its_time_limit() {
    let l = Limits { fuel: u64::MAX / 2, timeout: Duration::from_millis(200), ..limits() };
    let out = run_with(SPIN, &["spin"], &[], l);
    assert_eq!(out.stop, Stop::Timeout);
    assert!(out.run < Duration::from_secs(10));
}

#[test]
fn a_memory_bomb_stops_at_its_memory_limit() {
    let out = run_with(MEMBOMB, &["bomb"], &[], Limits { memory: 8 << 20, ..limits() });
    assert_eq!(out.stop, Stop::OutOfMemory, "{}", out.stop);
}

#[test]
fn deep_recursion_overflows_cleanly() {
    let wat = r#"(module (memory (export "memory") 1)
      (func $f (param i64) (result i64) (i64.add (call $f (local.get 0)) (i64.const 1)))
      (func (export "_start") (drop (call $f (i64.const 0)))))"#;
    assert_eq!(run_with(wat, &["r"], &[], limits()).stop, Stop::StackOverflow);
}

#[test]
fn huge_output_stops_at_the_output_limit() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 2)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 65536))
        (loop $more (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br $more))))"#;
    let out = run_with(wat, &["o"], &[], Limits { max_output: 1 << 20, ..limits() });
    assert_eq!(out.stop, Stop::OutputTooLarge, "{}", out.stop);
    assert!(out.stdout.len() <= 1 << 20);
}

#[test]
fn jobs_see_only_their_own_directories() {
    let l = limits();
    for path in ["../../../../etc/passwd", "/etc/passwd", "..", "../out/x"] {
        let out = run_with(&opener(3, path, 0, 2), &["o"], &[], l);
        assert_eq!(&out.stdout[..], b"denied\n", "{path}");
    }
    // Inputs are read-only: creating or writing a file in /in is refused.
    let out = run_with(&opener(3, "new", 1, 64), &["o"], &[("a", b"1")], l);
    assert_eq!(&out.stdout[..], b"denied\n");
    let out = run_with(&opener(3, "a", 0, 64), &["o"], &[("a", b"1")], l);
    assert_eq!(&out.stdout[..], b"denied\n");
    // The scratch directory takes files, which become the job's outputs.
    let out = run_with(&opener(4, "result", 1, 64), &["o"], &[], l);
    assert_eq!(&out.stdout[..], b"opened\n");
    assert_eq!(out.outputs, vec![("result".to_string(), b"x".to_vec())]);
}

#[test]
fn the_meter_can_stop_a_job() {
    struct Budget(u64);
    impl Meter for Budget {
        fn used(&mut self, fuel: u64) -> Result<(), String> {
            if fuel > self.0 {
                Err("the channel stopped paying".into())
            } else {
                Ok(())
            }
        }
    }
    let runner = Runner::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::create(dir.path(), "job").unwrap();
    let l = Limits { fuel: u64::MAX / 2, ..limits() };
    let out = runner.run(SPIN.as_bytes(), &[], &ws, l, [0; 32], &Streams::new(1024), Budget(1_000_000)).unwrap();
    assert_eq!(out.stop, Stop::Stopped("the channel stopped paying".into()));
}

#[test]
fn bad_modules_and_names_are_refused() {
    let runner = Runner::new().unwrap();
    assert!(matches!(runner.prepare(b"not wasm"), Err(ComputeError::Module(_))));
    assert!(matches!(runner.prepare(br#"(module (func (export "main")))"#), Err(ComputeError::Module(_))));
    let unknown = r#"(module (import "env" "socket" (func)) (func (export "_start")))"#;
    assert!(matches!(runner.prepare(unknown.as_bytes()), Err(ComputeError::Module(_))));
    assert!(!runner.prepare(SPIN.as_bytes()).unwrap());
    assert!(runner.prepare(SPIN.as_bytes()).unwrap(), "compiled once, then cached");
    for name in ["", ".", "..", "a/b", "a\0", "\n"] {
        assert!(check_name(name).is_err(), "{name:?}");
    }
    assert!(check_name("data.txt").is_ok());
}
