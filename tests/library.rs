//! The client library as the gateway and the drive use it: a session built from a devnet's
//! `client.toml` in a few lines, a put and a verified get, and the auditor worker stopped by its
//! cancellation token.

use std::sync::Arc;

use blackbox_client::auditor::{Auditor, AuditorEvent};
use blackbox_client::Session;
use blackbox_tests::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_from_client_toml_in_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(dir.path(), 4, &[]);

    let session = Session::open(&net.config()).await.expect("connect");
    let data = random_bytes(3 << 20, 77);
    let report = session.put_bytes(data.clone()).await.expect("put");
    let mut back = Vec::new();
    session.get(&report.cap, None, &mut back, Arc::default()).await.expect("get");
    assert_eq!(back, data);

    // The put is watched; one auditor pass proves every share, then the token stops the worker.
    let cancel = CancellationToken::new();
    let (stop, mut passes) = (cancel.clone(), Vec::new());
    let auditor = Auditor::new(session.cfg.clone());
    let run = auditor.run(cancel, |event| {
        if let AuditorEvent::PassDone { healthy, total } = event {
            passes.push((healthy, total));
            stop.cancel();
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(120), run).await.expect("auditor stops when cancelled");
    assert_eq!(passes, vec![(1, 1)], "one pass, the one watched file fully healthy");
    net.stop();
}

/// A long-running process (a gateway, a drive) outlives its channels: when the nodes close them
/// near their timeout, its next payments go through new channels without a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_client_outlives_its_channels() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(dir.path(), 3, &["--channel-blocks", "30", "--block-secs", "0.25"]);
    let session = Session::open(&net.config()).await.expect("connect");
    let start = std::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed() < std::time::Duration::from_secs(20) {
        let data = random_bytes(64 << 10, n);
        let report = session.put_bytes(data.clone()).await.unwrap_or_else(|e| panic!("put {n} failed: {e}"));
        let mut back = Vec::new();
        session.get(&report.cap, None, &mut back, Arc::default()).await.expect("get");
        assert_eq!(back, data);
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let wallet = stdout(&net.run(&["wallet"]));
    let closed = wallet.lines().filter(|l| l.contains("closed by the node")).count();
    assert!(closed >= 3, "the nodes closed the first channels ({n} puts):\n{wallet}");
    net.stop();
}
