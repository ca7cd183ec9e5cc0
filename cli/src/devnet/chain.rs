//! The devnet chain: a `DevChain` in `<dir>/chain`, served over JSON-RPC on a port kept across
//! restarts, and the client wallet funded from it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tracing::info;

use blackbox_chain::{Chain, DevChain, RpcConfig, RpcServer};

/// The devnet chain: a `DevChain` in `<dir>/chain`, served over JSON-RPC on a port kept across
/// restarts, mining a block every `block_secs`.
pub(super) struct DevnetChain {
    pub(super) chain: Arc<DevChain>,
    _server: RpcServer,
    pub(super) rpc: RpcConfig,
}

const CHAIN_FILE: &str = "rpc.toml";

pub(super) fn start_chain(root: &Path, host: &str) -> Result<DevnetChain> {
    let dir = root.join("chain");
    let chain = Arc::new(DevChain::open(&dir).context("devnet chain")?);
    let saved: Option<RpcConfig> =
        std::fs::read_to_string(dir.join(CHAIN_FILE)).ok().and_then(|t| toml::from_str(&t).ok());
    let password = saved.as_ref().map(|c| c.rpc_password.clone()).unwrap_or_else(|| {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        data_encoding::HEXLOWER.encode(&b)
    });
    let server = saved
        .as_ref()
        .filter(|c| c.rpc_addr.starts_with(&format!("{host}:")))
        .and_then(|c| RpcServer::start(chain.clone(), &c.rpc_addr, "devnet", &password).ok())
        .map_or_else(
            || {
                let port = super::pick_listen_port()?;
                anyhow::Ok(RpcServer::start(chain.clone(), &format!("{host}:{port}"), "devnet", &password)?)
            },
            Ok,
        )
        .context("devnet chain rpc")?;
    let rpc = RpcConfig {
        rpc_addr: server.addr().to_string(),
        rpc_user: "devnet".into(),
        rpc_password: password,
        rpc_cookie_file: None,
        network: "regtest".into(),
    };
    // It holds the RPC password: owner-only from the first byte.
    blackbox_util::write_secret(&dir.join(CHAIN_FILE), toml::to_string(&rpc)?.as_bytes())
        .context("cannot write the chain rpc file")?;
    Ok(DevnetChain { chain, _server: server, rpc })
}

/// Gives the client's wallet devnet coins (`blocks` blocks to its address) if it has none; they
/// are spendable once 100 more blocks are mined.
pub(super) fn fund_wallet(chain: &DevChain, client_data: &Path, blocks: u32) -> Result<()> {
    let key = blackbox_client::pay::load_or_create_wallet_key(client_data)?;
    let script = blackbox_payments::wallet::receive_script(&key);
    if chain.unspent(&script)?.is_empty() {
        chain.mine(blocks, &script)?;
        info!("funded the client wallet with devnet coins");
    }
    Ok(())
}
