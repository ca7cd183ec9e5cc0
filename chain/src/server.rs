//! Serves a [`DevChain`] over the subset of Bitcoin Core's JSON-RPC that [`crate::BitcoindRpc`]
//! uses, on a local address, so that every process of a devnet shares one chain. Basic auth;
//! one request per connection; bounded request sizes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Network, OutPoint, ScriptBuf, Txid};
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::rpc::tx_from_hex;
use crate::{Chain, ChainError, DevChain};

const MAX_HEADERS: usize = 16 << 10;
const MAX_BODY: usize = 4 << 20;

/// A running RPC server; stops when dropped.
pub struct RpcServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl RpcServer {
    /// Serves `chain` on `listen` (e.g. `127.0.0.1:0`) for clients presenting `user`/`password`.
    pub fn start(chain: Arc<DevChain>, listen: &str, user: &str, password: &str) -> Result<Self, ChainError> {
        let listener = TcpListener::bind(listen)
            .map_err(|e| ChainError::Unavailable(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| ChainError::Unavailable(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!("Basic {}", data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes()));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("chain-rpc".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (chain, expected) = (chain.clone(), expected.clone());
                    let _ = std::thread::Builder::new().name("chain-rpc-conn".into()).spawn(move || {
                        if let Err(e) = serve(conn, &chain, &expected) {
                            debug!(error = %e, "rpc connection failed");
                        }
                    });
                }
            })
            .map_err(|e| ChainError::Unavailable(e.to_string()))?;
        Ok(Self { addr, stop })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(mut conn: TcpStream, chain: &DevChain, auth: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEADERS {
            return respond(&mut conn, 431, &json!({"error": "headers too large"}));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
    };
    if header("authorization") != Some(auth) {
        return respond(&mut conn, 401, &json!({"error": "unauthorized"}));
    }
    let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if len > MAX_BODY {
        return respond(&mut conn, 413, &json!({"error": "request too large"}));
    }
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..(head_end + len).min(buf.len())];
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return respond(&mut conn, 400, &rpc_error(Value::Null, -32700, "parse error")),
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let params = req.get("params").cloned().unwrap_or(json!([]));
    match dispatch(chain, method, &params) {
        Ok(result) => respond(&mut conn, 200, &json!({"result": result, "error": null, "id": id})),
        Err((code, msg)) => respond(&mut conn, 500, &rpc_error(id, code, &msg)),
    }
}

fn rpc_error(id: Value, code: i64, msg: &str) -> Value {
    json!({"result": null, "error": {"code": code, "message": msg}, "id": id})
}

fn respond(conn: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Error" },
        text.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(text.as_bytes())
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
