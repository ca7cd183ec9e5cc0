//! Serves a [`DevChain`] over the subset of Bitcoin Core's JSON-RPC that [`crate::BitcoindRpc`]
//! uses, on a local address, so that every process of a devnet shares one chain. hyper's
//! HTTP/1.1 server; basic auth; bounded headers, bodies, connections and waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Network, OutPoint, ScriptBuf, Txid};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Semaphore};
use tracing::{debug, warn};

use crate::rpc::tx_from_hex;
use crate::{Chain, ChainError, DevChain};

const MAX_BODY: usize = 4 << 20;
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// Longest `waitfornewblock` the server holds a connection for.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A running RPC server; stops when dropped.
pub struct RpcServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl RpcServer {
    /// Serves `chain` on `listen` (e.g. `127.0.0.1:0`) for clients presenting `user`/`password`.
    pub fn start(chain: Arc<DevChain>, listen: &str, user: &str, password: &str) -> Result<Self, ChainError> {
        let unavailable = |e: std::io::Error| ChainError::Unavailable(format!("cannot listen on {listen}: {e}"));
        let listener = std::net::TcpListener::bind(listen).map_err(unavailable)?;
        listener.set_nonblocking(true).map_err(unavailable)?;
        let addr = listener.local_addr().map_err(unavailable)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(unavailable)?;
        let expected: Arc<str> =
            format!("Basic {}", data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())).into();
        let (stop, stopped) = oneshot::channel();
        std::thread::Builder::new()
            .name("chain-rpc".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => accept(l, chain, expected, stopped).await,
                        Err(e) => warn!(error = %e, "chain rpc server cannot start"),
                    }
                })
            })
            .map_err(unavailable)?;
        Ok(Self { addr, stop: Some(stop) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    chain: Arc<DevChain>,
    auth: Arc<str>,
    mut stop: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let conn = tokio::select! {
            _ = &mut stop => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let (chain, auth) = (chain.clone(), auth.clone());
        let service = hyper::service::service_fn(move |req| handle(req, chain.clone(), auth.clone()));
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .max_buf_size(64 << 10)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(error = %e, "rpc connection failed");
            }
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

async fn handle(
    req: Request<Incoming>,
    chain: Arc<DevChain>,
    auth: Arc<str>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(&*auth) {
        return Ok(reply(StatusCode::UNAUTHORIZED, &json!({"error": "unauthorized"})));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, &json!({"error": "request too large"}))),
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, &rpc_error(Value::Null, -32700, "parse error"))),
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let method = req.get("method").and_then(Value::as_str).unwrap_or("").to_string();
    let params = req.get("params").cloned().unwrap_or(json!([]));
    // Chain calls take a lock and may wait for blocks: off the async thread.
    let answer = tokio::task::spawn_blocking(move || dispatch(&chain, &method, &params)).await;
    Ok(match answer {
        Ok(Ok(result)) => reply(StatusCode::OK, &json!({"result": result, "error": null, "id": id})),
        Ok(Err((code, msg))) => reply(StatusCode::INTERNAL_SERVER_ERROR, &rpc_error(id, code, &msg)),
        Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, &rpc_error(id, -1, "internal error")),
    })
}

fn rpc_error(id: Value, code: i64, msg: &str) -> Value {
    json!({"result": null, "error": {"code": code, "message": msg}, "id": id})
}

type RpcResult = Result<Value, (i64, String)>;

fn param(p: &Value, i: usize) -> Result<&Value, (i64, String)> {
    p.get(i).ok_or((-8, format!("missing parameter {i}")))
}

fn chain_err(e: ChainError) -> (i64, String) {
    match e {
        ChainError::Rejected(m) => (-26, m),
        other => (-1, other.to_string()),
    }
}

fn dispatch(chain: &DevChain, method: &str, p: &Value) -> RpcResult {
    match method {
        "getblockcount" => Ok(json!(chain.height().map_err(chain_err)?)),
        "getblockchaininfo" => {
            let time = chain.tip_time().map_err(chain_err)?;
            Ok(
                json!({"chain": "regtest", "blocks": chain.height().map_err(chain_err)?, "time": time, "mediantime": time}),
            )
        }
        "waitfornewblock" => {
            let ms = p.get(0).and_then(Value::as_u64).unwrap_or(0);
            let wait = if ms == 0 { MAX_WAIT } else { Duration::from_millis(ms).min(MAX_WAIT) };
            let now = chain.height().map_err(chain_err)?;
            let h = chain.wait_for_block(now, wait).map_err(chain_err)?;
            Ok(json!({"hash": "", "height": h}))
        }
        "sendrawtransaction" => {
            let hex = param(p, 0)?.as_str().ok_or((-8, "hex string expected".to_string()))?;
            let tx = tx_from_hex(hex).map_err(|e| (-22, e.to_string()))?;
            let txid = chain.broadcast(&tx).map_err(chain_err)?;
            Ok(json!(txid.to_string()))
        }
        "gettxout" => {
            let txid: Txid = param(p, 0)?.as_str().and_then(|s| s.parse().ok()).ok_or((-8, "bad txid".to_string()))?;
            let vout = param(p, 1)?.as_u64().ok_or((-8, "bad vout".to_string()))? as u32;
            match chain.utxo(&OutPoint { txid, vout }).map_err(chain_err)? {
                None => Ok(Value::Null),
                Some(u) => Ok(json!({
                    "confirmations": u.confirmations,
                    "value": crate::rpc::btc_number(u.txout.value),
                    "scriptPubKey": {"hex": u.txout.script_pubkey.to_hex_string()},
                })),
            }
        }
        "scantxoutset" => {
            let desc = param(p, 1)?
                .get(0)
                .and_then(|d| d.get("desc").or(Some(d)))
                .and_then(Value::as_str)
                .ok_or((-8, "descriptor expected".to_string()))?;
            let hex = desc
                .strip_prefix("raw(")
                .and_then(|d| d.strip_suffix(')'))
                .ok_or((-8, "only raw(HEX) descriptors".to_string()))?;
            let script = ScriptBuf::from_hex(hex).map_err(|_| (-8, "bad script hex".to_string()))?;
            let height = chain.height().map_err(chain_err)?;
            let list: Vec<Value> = chain
                .unspent(&script)
                .map_err(chain_err)?
                .into_iter()
                .map(|u| {
                    json!({
                        "txid": u.outpoint.txid.to_string(),
                        "vout": u.outpoint.vout,
                        "scriptPubKey": u.txout.script_pubkey.to_hex_string(),
                        "amount": crate::rpc::btc_number(u.txout.value),
                        "height": height + 1 - u.confirmations,
                    })
                })
                .collect();
            Ok(json!({"success": true, "height": height, "unspents": list}))
        }
        "generatetoaddress" => {
            let n = param(p, 0)?.as_u64().ok_or((-8, "bad block count".to_string()))?.min(1000) as u32;
            let addr: Address<NetworkUnchecked> =
                param(p, 1)?.as_str().and_then(|s| s.parse().ok()).ok_or((-5, "invalid address".to_string()))?;
            let addr = addr.require_network(Network::Regtest).map_err(|_| (-5, "not a regtest address".to_string()))?;
            chain.mine(n, &addr.script_pubkey()).map_err(chain_err)?;
            Ok(json!([]))
        }
        other => {
            warn!(method = other, "unsupported rpc method");
            Err((-32601, format!("method not found: {other}")))
        }
    }
}
