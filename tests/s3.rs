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
        "listen = \"127.0.0.1:{port}\"\nclient_config = \"client.toml\"\nroot = \"/s3\"\n\
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
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("BB_S3_ENDPOINT", &endpoint)
        .env("BB_S3_KEY", "BBOWNER0000000000000")
        .env("BB_S3_SECRET", "owner-secret")
        .env("BB_S3_READER_KEY", "BBREADER000000000000")
        .env("BB_S3_READER_SECRET", "reader-secret")
        .env("BB_S3_READ_BUCKET", "shared-docs")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "boto3 suite failed:\n{report}");
    // Objects written through S3 are ordinary namespace entries.
    let listing = stdout(&net.run(&["ls", "/s3/shared-docs"]));
    assert_eq!(listing.trim(), "doc");
    assert_eq!(stdout(&net.run(&["get", "/s3/shared-docs/doc"])), "shared");
}
