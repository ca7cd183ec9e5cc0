//! The devnet chain, in process and over its JSON-RPC server through `BitcoindRpc`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::SecretKey;
use bitcoin::{Amount, OutPoint, TxOut};
use blackbox_chain::{burn_script, BitcoindRpc, Chain, DevChain, RpcConfig, RpcServer, SUBSIDY};
use blackbox_payments::channel::public_key;
use blackbox_payments::wallet::{receive_script, spend};
use blackbox_payments::{ChannelParams, PayerChannel, ProviderChannel};

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

fn coins(chain: &dyn Chain, k: &SecretKey) -> Vec<(OutPoint, TxOut)> {
    chain.unspent(&receive_script(k)).unwrap().into_iter().map(|u| (u.outpoint, u.txout)).collect()
}

/// Funds a channel from `payer`'s coins and mines it in; returns the parameters.
fn open(chain: &dyn Chain, payer: &SecretKey, provider: &SecretKey, timeout: u32) -> ChannelParams {
    let mut p = ChannelParams {
        funding: OutPoint::null(),
        capacity: 1_000_000,
        payer: public_key(payer),
        provider: public_key(provider),
        timeout,
        fee: 500,
    };
    let tx = spend(&coins(chain, payer), payer, vec![p.funding_output()]).unwrap();
    let txid = chain.broadcast(&tx).unwrap();
    p.funding = OutPoint { txid, vout: 0 };
    chain.mine(1, &burn_script()).unwrap();
    assert_eq!(chain.utxo(&p.funding).unwrap().unwrap().confirmations, 1);
    p
}

fn exercise(chain: &dyn Chain) {
    let (payer, provider) = (key(1), key(2));
    chain.mine(101, &receive_script(&payer)).unwrap();
    assert_eq!(chain.height().unwrap(), 101);
    let now = blackbox_util::now_secs();
    assert!(chain.tip_time().unwrap().abs_diff(now) < 60, "the tip's time is the block's");
    let mine = coins(chain, &payer);
    assert_eq!(mine.len(), 2, "two coinbases are mature at height 101");
    assert!(mine.iter().all(|(_, o)| o.value.to_sat() == SUBSIDY));

    // Invalid spends are refused.
    let mut overspend =
        spend(&mine, &payer, vec![TxOut { value: Amount::from_sat(1000), script_pubkey: burn_script() }]).unwrap();
    overspend.output[0].value = Amount::from_sat(3 * SUBSIDY);
    assert!(chain.broadcast(&overspend).is_err(), "outputs above inputs");
    let mut badsig =
        spend(&mine, &payer, vec![TxOut { value: Amount::from_sat(1000), script_pubkey: burn_script() }]).unwrap();
    badsig.output[0].value = Amount::from_sat(999);
    assert!(chain.broadcast(&badsig).is_err(), "signature no longer matches");
    let missing = OutPoint { txid: mine[0].0.txid, vout: 7 };
    let ghost = spend(
        &[(missing, mine[0].1.clone())],
        &payer,
        vec![TxOut { value: Amount::from_sat(1000), script_pubkey: burn_script() }],
    )
    .unwrap();
    assert!(chain.broadcast(&ghost).is_err(), "input does not exist");

    // A channel: pay, close, confirm.
    let p = open(chain, &payer, &provider, chain.height().unwrap() + 20);
    let payer_ch = PayerChannel::new(p).unwrap();
    let mut prov = ProviderChannel::new(p).unwrap();
    let u = payer_ch.sign(12_345, &payer).unwrap();
    prov.check(&u, &provider).unwrap();
    prov.accept(&u);
    let close = prov.closing_tx(&provider).unwrap().unwrap();
    let txid = chain.broadcast(&close).unwrap();
    // The refund now double-spends the funding output.
    assert!(chain.broadcast(&payer_ch.refund_tx(&payer).unwrap()).is_err());
    chain.mine(1, &burn_script()).unwrap();
    let paid = chain.utxo(&OutPoint { txid, vout: 0 }).unwrap().unwrap();
    assert_eq!((paid.txout.value.to_sat(), paid.confirmations), (12_345, 1));
    assert!(chain.utxo(&p.funding).unwrap().is_none(), "funding output is spent");

    // A refund: refused before the timeout, accepted after.
    let timeout = chain.height().unwrap() + 5;
    let p2 = open(chain, &payer, &provider, timeout);
    let refund = PayerChannel::new(p2).unwrap().refund_tx(&payer).unwrap();
    let err = chain.broadcast(&refund).unwrap_err().to_string();
    assert!(err.contains("non-final"), "{err}");
    chain.mine(timeout - chain.height().unwrap(), &burn_script()).unwrap();
    let rtxid = chain.broadcast(&refund).unwrap();
    chain.mine(1, &burn_script()).unwrap();
    assert_eq!(chain.utxo(&OutPoint { txid: rtxid, vout: 0 }).unwrap().unwrap().txout.value.to_sat(), 1_000_000 - 500);
}

#[test]
fn dev_chain_validates_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let height;
    {
        let chain = DevChain::open(dir.path()).unwrap();
        exercise(&chain);
        height = chain.height().unwrap();
    }
    // Reopened: same height and coins; a torn last record is cut off.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("blocks.dat")).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    }
    let chain = DevChain::open(dir.path()).unwrap();
    assert_eq!(chain.height().unwrap(), height);
    assert!(!coins(&chain, &key(1)).is_empty());
    chain.mine(1, &burn_script()).unwrap();
    assert_eq!(DevChain::open(dir.path()).unwrap().height().unwrap(), height + 1);
}

#[test]
fn rpc_server_and_client_speak_bitcoind_json_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(DevChain::open(dir.path()).unwrap());
    let server = RpcServer::start(chain, "127.0.0.1:0", "user", "secret").unwrap();
    let cfg = RpcConfig {
        rpc_addr: server.addr().to_string(),
        rpc_user: "user".into(),
        rpc_password: "secret".into(),
        rpc_cookie_file: None,
        network: "regtest".into(),
    };
    let rpc = BitcoindRpc::new(cfg.clone()).unwrap();
    exercise(&rpc);
    let wrong = BitcoindRpc::new(RpcConfig { rpc_password: "nope".into(), ..cfg.clone() }).unwrap();
    assert!(wrong.height().unwrap_err().to_string().contains("authentication"));

    // Cookie-file auth (Bitcoin Core's `__cookie__:PASSWORD`), read at each call.
    let cookie = dir.path().join(".cookie");
    let by_cookie = RpcConfig {
        rpc_user: String::new(),
        rpc_password: String::new(),
        rpc_cookie_file: Some(cookie.clone()),
        ..cfg.clone()
    };
    let rpc2 = BitcoindRpc::new(by_cookie).unwrap();
    assert!(rpc2.height().unwrap_err().to_string().contains("cookie"), "missing cookie file is named");
    std::fs::write(&cookie, "user:secret\n").unwrap();
    assert_eq!(rpc2.height().unwrap(), rpc.height().unwrap());

    // Waiting for a block: returns at once when one is there, at the timeout otherwise, and
    // as soon as a block is mined while waiting.
    let h = rpc.height().unwrap();
    assert_eq!(rpc.wait_for_block(h - 1, Duration::from_secs(5)).unwrap(), h);
    let t = Instant::now();
    assert_eq!(rpc.wait_for_block(h, Duration::from_millis(300)).unwrap(), h);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let miner = {
        let rpc = rpc.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            rpc.mine(1, &burn_script()).unwrap();
        })
    };
    assert_eq!(rpc.wait_for_block(h, Duration::from_secs(20)).unwrap(), h + 1);
    miner.join().unwrap();

    // Unknown methods and oversized requests are refused, and the server keeps serving.
    assert!(rpc.call("stop", serde_json::json!([])).is_err());
    let huge = "x".repeat(5 << 20);
    assert!(rpc.call("sendrawtransaction", serde_json::json!([huge])).is_err());
    assert_eq!(rpc.height().unwrap(), h + 1);
}
