//! The S3 gateway against real S3 clients: a devnet of real node processes, `blackbox gateway`,
//! and the pytest + boto3 suite in `tests/s3/` (installed into `.venv` by `scripts/setup.sh`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use blackbox_tests::*;

/// A running gateway process, stopped on drop.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes a gateway config with an owner key and a key that may only read `shared`, starts the
/// gateway and waits until it listens; returns it with its endpoint.
fn start_gateway(net: &Devnet, shared: &str) -> (Gateway, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\nclient_config = \"client.toml\"\nroot = \"/s3\"\npublic_read = [\"public-site\"]\n\
         [[keys]]\naccess_key_id = \"BBOWNER0000000000000\"\nsecret_access_key = \"owner-secret\"\nowner = [\"*\"]\n\
         [[keys]]\naccess_key_id = \"BBREADER000000000000\"\nsecret_access_key = \"reader-secret\"\nread = [\"{shared}\"]\n"
    );
    let path = net.dir.join("gateway-test.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut child = Command::new(bin())
        .args(["gateway", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start gateway");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).expect("gateway did not start");
    assert!(line.contains("listening"), "{line}");
    (Gateway(child), format!("http://127.0.0.1:{port}"))
}

fn venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "no {}: run ./scripts/setup.sh (it installs boto3 and pytest)", python.display());
    python
}

#[test]
fn boto3_suite_passes_against_the_gateway() {
    let python = venv();
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let (_gateway, endpoint) = start_gateway(&net, "shared-docs");
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3");
    let mut pytest = Command::new(python);
    pytest.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    // BB_S3_K=expr runs only the tests pytest's `-k expr` selects (while working on one).
    if let Ok(k) = std::env::var("BB_S3_K") {
        pytest.args(["-k", &k]);
    }
    let out = pytest
        .arg(&suite)
        .env("BB_S3_ENDPOINT", &endpoint)
        .env("BB_S3_KEY", "BBOWNER0000000000000")
        .env("BB_S3_SECRET", "owner-secret")
        .env("BB_S3_READER_KEY", "BBREADER000000000000")
        .env("BB_S3_READER_SECRET", "reader-secret")
        .env("BB_S3_READ_BUCKET", "shared-docs")
        .env("BB_S3_PUBLIC_BUCKET", "public-site")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "boto3 suite failed:\n{report}");
    if std::env::var("BB_S3_K").is_ok() {
        return; // the checks below need the objects the whole suite writes
    }
    // Objects written through S3 are ordinary namespace entries.
    let listing = stdout(&net.run(&["ls", "/s3/shared-docs"]));
    assert_eq!(listing.trim(), "doc");
    assert_eq!(stdout(&net.run(&["get", "/s3/shared-docs/doc"])), "shared");
    // Multi-part objects are looked after like any file: their parts are reached, checked, renewed.
    let out = net.run(&["check", "--recursive", "/s3"]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(report.lines().any(|l| l.contains("big/file (part 2): 10 of 10 shares")), "{report}");
}

/// Runs a step of `tests/s3/scenario.py` against `endpoint` (owner key).
fn scenario(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(venv());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("s3").join("scenario.py"))
        .args(args)
        .env("BB_S3_ENDPOINT", endpoint)
        .env("BB_S3_KEY", "BBOWNER0000000000000")
        .env("BB_S3_SECRET", "owner-secret")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

fn run_ok(mut cmd: Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// `kill -9` of the gateway in the middle of a multipart upload: a new gateway completes it, and
/// the object is whole with the right ETag. Then two nodes die during a GET, which still returns
/// the right bytes.
#[test]
fn multipart_survives_a_killed_gateway_and_gets_survive_killed_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let state = tmp.path().join("upload.json");
    let (mut gateway, endpoint) = start_gateway(&net, "unused");
    run_ok(scenario(&endpoint, &["start-multipart", state.to_str().unwrap()]));
    let _ = gateway.0.kill(); // SIGKILL
    let _ = gateway.0.wait();
    drop(gateway);
    let (_gateway, endpoint) = start_gateway(&net, "unused");
    run_ok(scenario(&endpoint, &["finish-multipart", state.to_str().unwrap()]));

    run_ok(scenario(&endpoint, &["put-big"]));
    let mut get = scenario(&endpoint, &["slow-get"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(get.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "reading");
    net.kill_node(2);
    net.kill_node(7);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = get.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut get.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success() && rest.last().map(String::as_str) == Some("ok"), "slow GET failed: {rest:?}\n{err}");
}
