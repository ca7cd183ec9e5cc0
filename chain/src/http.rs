//! One JSON-RPC POST over hyper's HTTP/1.1 client, callable from blocking code: requests run on
//! one small process-wide runtime, so a caller inside or outside tokio never nests runtimes.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Largest response body accepted.
const MAX_RESPONSE: usize = 64 << 20;

fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chain-http")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the chain client's runtime: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// POSTs `body` as JSON to `addr` (`host:port`) with basic `auth`; returns the status and the
/// body, or why the exchange failed. Blocks the calling thread for at most `timeout`.
pub(crate) fn post(addr: &str, auth: &str, body: String, timeout: Duration) -> Result<(u16, Bytes), String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (addr, auth) = (addr.to_string(), auth.to_string());
    runtime()?.spawn(async move {
        let r = match tokio::time::timeout(timeout, exchange(&addr, &auth, body)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        };
        let _ = tx.send(r);
    });
    rx.recv().map_err(|_| "the chain client's runtime stopped".to_string())?
}

async fn exchange(addr: &str, auth: &str, body: String) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::post("/")
        .header(HOST, addr)
        .header(AUTHORIZATION, format!("Basic {auth}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| format!("bad response body: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}
