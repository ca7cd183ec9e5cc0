//! JSON-RPC client for Bitcoin Core (regtest, testnet or mainnet), also used against the devnet
//! chain's server, which answers the same calls, over hyper's HTTP/1.1 client. Password or
//! cookie-file authentication.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, Amount, Network, OutPoint, Script, ScriptBuf, Transaction, TxOut, Txid};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Chain, ChainError, Unspent};

/// Longest single `waitfornewblock` call; longer waits are made of several.
const WAIT_SLICE: Duration = Duration::from_secs(10);

/// Where and how to reach the node (the `[chain]` section of configs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    /// `host:port` of the JSON-RPC server (e.g. `127.0.0.1:18443` for regtest).
    pub rpc_addr: String,
    /// RPC user (ignored with `rpc_cookie_file`).
    #[serde(default)]
    pub rpc_user: String,
    /// RPC password (ignored with `rpc_cookie_file`).
    #[serde(default)]
    pub rpc_password: String,
    /// Bitcoin Core's cookie file (e.g. `~/.bitcoin/regtest/.cookie`), read at every call since
    /// Core writes a new one each start; when set, user and password are not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_cookie_file: Option<PathBuf>,
    /// `regtest`, `testnet`, `signet` or `bitcoin` (mainnet).
    pub network: String,
}

/// A Bitcoin Core JSON-RPC client.
#[derive(Debug, Clone)]
pub struct BitcoindRpc {
    cfg: RpcConfig,
    network: Network,
    timeout: Duration,
}

impl BitcoindRpc {
    /// A client for `cfg`.
    pub fn new(cfg: RpcConfig) -> Result<Self, ChainError> {
        let network = cfg
            .network
            .parse::<Network>()
            .map_err(|_| ChainError::Unavailable(format!("unknown network `{}`", cfg.network)))?;
        Ok(Self { cfg, network, timeout: Duration::from_secs(30) })
    }

    /// The basic-auth credentials, from the cookie file when one is configured.
    fn auth(&self) -> Result<String, ChainError> {
        let pair = match &self.cfg.rpc_cookie_file {
            None => format!("{}:{}", self.cfg.rpc_user, self.cfg.rpc_password),
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| ChainError::Unavailable(format!("cannot read rpc cookie {}: {e}", path.display())))?
                .trim()
                .to_string(),
        };
        Ok(data_encoding::BASE64.encode(pair.as_bytes()))
    }

    /// The network the node runs.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Calls `method` with `params`; returns `result` or the node's error.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        self.call_within(method, params, self.timeout)
    }

    fn call_within(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, ChainError> {
        let body = json!({"jsonrpc": "1.0", "id": "blackbox", "method": method, "params": params}).to_string();
        let (status, bytes) = crate::http::post(&self.cfg.rpc_addr, &self.auth()?, body, timeout)
            .map_err(|e| ChainError::Unavailable(format!("{}: {e}", self.cfg.rpc_addr)))?;
        if status == 401 {
            return Err(ChainError::Unavailable(
                "rpc authentication failed (check user and password, or the cookie)".into(),
            ));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ChainError::Unavailable(format!("bad rpc response (HTTP {status}): {e}")))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
            let msg = err.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_string();
            // -25/-26/-27: verify errors; -8/-5: bad parameters.
            return Err(if matches!(code, -25 | -26 | -27 | -22) {
                ChainError::Rejected(msg)
            } else {
                ChainError::Unavailable(format!("{method}: {msg} ({code})"))
            });
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }
}

fn bad(what: &str) -> ChainError {
    ChainError::Unavailable(format!("malformed rpc result: {what}"))
}

/// BTC amounts come as JSON decimals; their text is converted exactly to satoshis (never
/// through floating point).
pub(crate) fn sats(v: &Value) -> Result<Amount, ChainError> {
    let Value::Number(n) = v else { return Err(bad("amount")) };
    Amount::from_str_in(&n.to_string(), bitcoin::Denomination::Bitcoin).map_err(|_| bad("amount"))
}

/// An amount as the JSON decimal of its BTC value, exactly.
pub(crate) fn btc_number(a: Amount) -> Value {
    let text = a.to_string_in(bitcoin::Denomination::Bitcoin);
    text.parse::<serde_json::Number>().map_or(Value::Null, Value::Number)
}

fn script_of(v: &Value) -> Result<ScriptBuf, ChainError> {
    let hex = v.get("scriptPubKey").and_then(|s| s.get("hex").or(Some(s))).and_then(Value::as_str);
    ScriptBuf::from_hex(hex.ok_or_else(|| bad("scriptPubKey"))?).map_err(|_| bad("scriptPubKey"))
}

impl Chain for BitcoindRpc {
    fn height(&self) -> Result<u32, ChainError> {
        let h = self.call("getblockcount", json!([]))?;
        h.as_u64().and_then(|h| u32::try_from(h).ok()).ok_or_else(|| bad("height"))
    }

    fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let r = self.call("sendrawtransaction", json!([serialize_hex(tx)]))?;
        r.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| bad("txid"))
    }

    fn utxo(&self, outpoint: &OutPoint) -> Result<Option<Unspent>, ChainError> {
        let r = self.call("gettxout", json!([outpoint.txid.to_string(), outpoint.vout, true]))?;
        if r.is_null() {
            return Ok(None);
        }
        let confirmations = r.get("confirmations").and_then(Value::as_u64).unwrap_or(0) as u32;
        let value = sats(r.get("value").ok_or_else(|| bad("value"))?)?;
        Ok(Some(Unspent { outpoint: *outpoint, txout: TxOut { value, script_pubkey: script_of(&r)? }, confirmations }))
    }

    fn unspent(&self, script: &Script) -> Result<Vec<Unspent>, ChainError> {
        let desc = format!("raw({})", script.to_hex_string());
        let r = self.call("scantxoutset", json!(["start", [{"desc": desc}]]))?;
        let tip = r.get("height").and_then(Value::as_u64).unwrap_or(0);
        let list = r.get("unspents").and_then(Value::as_array).ok_or_else(|| bad("unspents"))?;
        list.iter()
            .map(|u| {
                let txid: Txid =
                    u.get("txid").and_then(Value::as_str).and_then(|s| s.parse().ok()).ok_or_else(|| bad("txid"))?;
                let vout = u.get("vout").and_then(Value::as_u64).ok_or_else(|| bad("vout"))? as u32;
                let height = u.get("height").and_then(Value::as_u64).unwrap_or(tip);
                let value = sats(u.get("amount").ok_or_else(|| bad("amount"))?)?;
                Ok(Unspent {
                    outpoint: OutPoint { txid, vout },
                    txout: TxOut { value, script_pubkey: script.to_owned() },
                    confirmations: (tip + 1).saturating_sub(height) as u32,
                })
            })
            .collect()
    }

    fn tip_time(&self) -> Result<u64, ChainError> {
        let info = self.call("getblockchaininfo", json!([]))?;
        // `time` (the tip's timestamp) where Bitcoin Core reports it, else the median time past.
        info.get("time").or_else(|| info.get("mediantime")).and_then(Value::as_u64).ok_or_else(|| bad("block time"))
    }

    fn wait_for_block(&self, above: u32, timeout: Duration) -> Result<u32, ChainError> {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.height()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if h > above || left.is_zero() {
                return Ok(h);
            }
            // Bitcoin Core returns as soon as a block arrives (or at the timeout), so waiting
            // costs one call per block or per slice, not a poll loop.
            // At least 1 ms: Bitcoin Core (and the devnet server) read 0 as "no timeout".
            let slice = left.min(WAIT_SLICE).max(Duration::from_millis(1));
            let ms = slice.as_millis() as u64;
            self.call_within("waitfornewblock", json!([ms]), slice + Duration::from_secs(5))?;
        }
    }

    fn mine(&self, blocks: u32, script: &Script) -> Result<(), ChainError> {
        if self.network == Network::Bitcoin {
            return Err(ChainError::Unsupported("mining on mainnet".into()));
        }
        let addr = Address::from_script(script, self.network).map_err(|_| bad("address for script"))?;
        self.call("generatetoaddress", json!([blocks, addr.to_string()]))?;
        Ok(())
    }
}

/// Parses a transaction given as hex (for the server and tools).
pub(crate) fn tx_from_hex(hex: &str) -> Result<Transaction, ChainError> {
    deserialize_hex(hex).map_err(|e| ChainError::Rejected(format!("TX decode failed: {e}")))
}
