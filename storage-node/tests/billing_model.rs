//! Property test of the node's books under several payers (billing on, over the devnet chain):
//! random sequences of paid, unpaid, forged and cross-channel requests from two payers never
//! panic; every receipt charges exactly the request's price at the channel's pinned prices (0
//! when it failed or was not covered); a channel's owed is the sum of its receipts and never
//! exceeds what its payer signed; nothing one payer sends changes the other's channel; a channel's
//! status is told to its payer only.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::SecretKey;
use bitcoin::OutPoint;
use blackbox_chain::{burn_script, Chain, DevChain};
use blackbox_core::Prices;
use blackbox_net::offer::{Availability, Offer, Resources};
use blackbox_net::wire::{JobReport, JobSpec};
use blackbox_net::{ErrorCode, Keypair, PeerId, Request, RequestHandler, Response};
use blackbox_payments::channel::public_key;
use blackbox_payments::wallet::{receive_script, spend};
use blackbox_payments::{ChannelParams, PayerChannel, Usage};
use blackbox_storage_node::billing::{Billing, BillingConfig};
use blackbox_storage_node::jobs::{Capacity, ComputeConfig, Jobs};
use blackbox_storage_node::{MemoryStore, StorageServer};
use proptest::prelude::*;

const PRICES: Prices = Prices {
    storage_sat_per_gb_month: 1_000_000,
    egress_sat_per_gb: 1_000_000,
    cpu_sat_per_core_hour: 36_000,
    fuel_sat_per_gfuel: 1_000,
};

struct Payer {
    peer: PeerId,
    key: SecretKey,
    channel: PayerChannel,
    /// Satoshis the node charged this channel, by its receipts.
    owed: u64,
}

struct World {
    server: StorageServer<MemoryStore>,
    payers: Vec<Payer>,
    cfg: BillingConfig,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

const SPIN: &str = "(module (memory (export \"memory\") 1) (func (export \"_start\") (loop $l (br $l))))";

fn spin(fuel: u64) -> Request {
    Request::JobStart(JobSpec {
        module: SPIN.into(),
        args: vec!["spin".into()],
        inputs: Vec::new(),
        fuel,
        memory: 1 << 20,
        timeout_secs: 60,
        cores: 1,
    })
}

fn poll(job: u64, accept_fuel: u64, accept_core_secs: u64) -> Request {
    Request::JobPoll { job, stdout_from: 0, stderr_from: 0, accept_fuel, accept_core_secs }
}

/// Starts a job of `fuel` for `p` (paid by its newest update, nothing charged) and waits for its
/// end, accepting no charge; returns the job and its final report.
fn ended_job(server: &StorageServer<MemoryStore>, p: &Payer, fuel: u64) -> (u64, JobReport) {
    let req = Request::Paid { update: update(p), inner: Box::new(spin(fuel)) };
    let Response::Receipt { charged: 0, inner, .. } = server.handle(&p.peer, req) else { panic!("no receipt") };
    let Response::JobStarted { job } = *inner else { panic!("not started: {inner:?}") };
    loop {
        let req = Request::Paid { update: update(p), inner: Box::new(poll(job, 0, 0)) };
        let Response::Receipt { charged: 0, inner, .. } = server.handle(&p.peer, req) else { panic!("poll") };
        let Response::Job(report) = *inner else { panic!("no report: {inner:?}") };
        if report.end.is_some() {
            return (job, report);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A node with billing on a fresh devnet chain, and two payers with a channel each.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(DevChain::open(&dir.path().join("chain")).unwrap());
    let node = Keypair::generate_ed25519();
    let node_key = SecretKey::from_slice(&[9; 32]).unwrap();
    let now = blackbox_util::now_secs();
    let offer = Offer {
        node: node.public(),
        resources: Resources::default(),
        availability: Availability::Always,
        prices: PRICES,
        bitcoin_pubkey: public_key(&node_key).to_bytes(),
        region: String::new(),
        issued_at: now,
        expires_at: now + 3600,
    }
    .sign(&node)
    .unwrap()
    .encode();
    let offer = bytes::Bytes::from(offer);
    let cfg = BillingConfig {
        node: node.public().to_peer_id(),
        prices: PRICES,
        key: node_key,
        chain: chain.clone(),
        min_confirmations: 1,
        min_timeout_blocks: 12,
        close_margin_blocks: 6,
        min_fee_sat: 200,
        dir: dir.path().join("channels"),
    };
    let billing = Billing::open(cfg.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let compute = ComputeConfig { enabled: true, max_jobs: 16, max_jobs_per_peer: 16, ..ComputeConfig::default() };
    let capacity = Capacity { millicores: 16_000, ram: 1 << 30, availability: Availability::Always };
    let jobs = Jobs::new(compute, capacity, dir.path().join("jobs"), None, rt.handle().clone()).unwrap();
    let server = StorageServer::new(MemoryStore::new(), 1 << 30, Duration::from_secs(600))
        .unwrap()
        .with_billing(Arc::new(billing))
        .with_jobs(Arc::new(jobs));
    let mut payers = Vec::new();
    for b in 1..=2u8 {
        let key = SecretKey::from_slice(&[b; 32]).unwrap();
        chain.mine(101, &receive_script(&key)).unwrap();
        let mut p = ChannelParams {
            funding: OutPoint::null(),
            capacity: 1_000_000,
            payer: public_key(&key),
            provider: public_key(&node_key),
            timeout: chain.height().unwrap() + 100,
            fee: 500,
        };
        let coins: Vec<_> =
            chain.unspent(&receive_script(&key)).unwrap().into_iter().map(|u| (u.outpoint, u.txout)).collect();
        let tx = spend(&coins, &key, vec![p.funding_output()]).unwrap();
        p.funding = OutPoint { txid: chain.broadcast(&tx).unwrap(), vout: 0 };
        chain.mine(1, &burn_script()).unwrap();
        let peer = PeerId::random();
        let open = Request::OpenChannel { params: p.encode().into(), offer: offer.clone() };
        assert!(matches!(server.handle(&peer, open), Response::Channel { .. }));
        payers.push(Payer { peer, key, channel: PayerChannel::new(p).unwrap(), owed: 0 });
    }
    World { server, payers, cfg, _rt: rt, _dir: dir }
}

#[derive(Debug, Clone)]
enum Op {
    /// Payer `who` runs a job of `mfuel` million fuel, then signs `extra` more and accepts its charge.
    Job { who: usize, extra: u64, mfuel: u64 },
    /// Payer `who` asks the status of channel `of`, paying nothing new.
    Status { who: usize, of: usize },
    /// Payer `who` signs an update on the other payer's channel with its own key.
    Forge { who: usize, amount: u64 },
    /// A billed request without an envelope.
    Unpaid { mfuel: u64 },
    /// Payer `who` resends its newest update with a request that fails (no such file to renew).
    Failing { who: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0u64..5_000, 1u64..50).prop_map(|(who, extra, mfuel)| Op::Job { who, extra, mfuel }),
        (0..2usize, 0..2usize).prop_map(|(who, of)| Op::Status { who, of }),
        (0..2usize, 1u64..900_000).prop_map(|(who, amount)| Op::Forge { who, amount }),
        (1u64..100).prop_map(|mfuel| Op::Unpaid { mfuel }),
        (0..2usize).prop_map(|who| Op::Failing { who }),
    ]
}

fn status_req(p: &PayerChannel) -> Request {
    let f = p.params.funding;
    Request::ChannelStatus { txid: f.txid.to_byte_array(), vout: f.vout }
}

fn update(p: &Payer) -> bytes::Bytes {
    p.channel.sign(p.channel.paid, &p.key).unwrap().encode().into()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn books_hold_under_several_payers(ops in proptest::collection::vec(op(), 1..30)) {
        let mut w = world();
        for op in ops {
            match op {
                Op::Job { who, extra, mfuel } => {
                    let p = &mut w.payers[who];
                    if p.channel.paid == 0 { p.channel.paid = 1; }
                    let (job, report) = ended_job(&w.server, p, mfuel * 1_000_000);
                    prop_assert_eq!(report.fuel, mfuel * 1_000_000, "a spin stops at exactly its fuel");
                    let cost = Usage::default().with_fuel(report.fuel).with_cpu(report.core_secs).owed(&PRICES);
                    p.channel.paid = (p.channel.paid + extra).min(p.channel.params.max_payable());
                    let req = Request::Paid { update: update(p), inner: Box::new(poll(job, u64::MAX, u64::MAX)) };
                    let Response::Receipt { charged, owed, inner } = w.server.handle(&p.peer, req) else {
                        return Err(TestCaseError::fail("no receipt"));
                    };
                    if p.owed + cost <= p.channel.paid {
                        let paid_fuel = match *inner { Response::Job(r) => r.fuel_charged, _ => 0 };
                        prop_assert_eq!(paid_fuel, report.fuel);
                        prop_assert_eq!(charged, cost);
                    } else {
                        prop_assert!(matches!(*inner, Response::Error { code: ErrorCode::PaymentRequired, .. }), "not refused");
                        prop_assert_eq!(charged, 0);
                    }
                    p.owed += charged;
                    prop_assert_eq!(owed, p.owed);
                }
                Op::Status { who, of } => {
                    let target = status_req(&w.payers[of].channel);
                    let p = &w.payers[who];
                    let req = if p.channel.paid == 0 { target } else {
                        Request::Paid { update: update(p), inner: Box::new(target) }
                    };
                    let r = w.server.handle(&p.peer, req);
                    let inner = match r { Response::Receipt { charged: 0, inner, .. } => *inner, other => other };
                    match inner {
                        Response::Channel { paid, owed, .. } => {
                            prop_assert_eq!(who, of, "status told to another payer");
                            prop_assert_eq!((paid, owed), (p.channel.paid, p.owed));
                        }
                        Response::Error { .. } => prop_assert!(who != of || p.channel.paid == 0),
                        other => return Err(TestCaseError::fail(format!("{other:?}"))),
                    }
                }
                Op::Forge { who, amount } => {
                    let victim = &w.payers[1 - who];
                    let forged = PayerChannel { params: victim.channel.params, paid: 0 }.sign(amount, &w.payers[who].key).unwrap();
                    let inner = Box::new(spin(1_000_000));
                    let r = w.server.handle(&w.payers[who].peer, Request::Paid { update: forged.encode().into(), inner });
                    prop_assert!(matches!(r, Response::Error { .. }), "forged payment accepted: {:?}", r);
                }
                Op::Unpaid { mfuel } => {
                    let r = w.server.handle(&w.payers[0].peer, spin(mfuel * 1_000_000));
                    prop_assert!(matches!(r, Response::Error { code: ErrorCode::PaymentRequired, .. }), "unpaid request served");
                }
                Op::Failing { who } => {
                    let p = &w.payers[who];
                    if p.channel.paid == 0 { continue; }
                    let req = Request::Paid { update: update(p), inner: Box::new(Request::Renew { si: [5; 32], lease_secs: 100 }) };
                    match w.server.handle(&p.peer, req) {
                        Response::Receipt { charged, owed, inner } => {
                            prop_assert_eq!(charged, 0, "a failed request is not billed");
                            prop_assert_eq!(owed, p.owed);
                            prop_assert!(matches!(*inner, Response::Error { .. }), "a renewal of nothing succeeded");
                        }
                        other => return Err(TestCaseError::fail(format!("{other:?}"))),
                    }
                }
            }
            // Every channel's books, as its payer sees them.
            for p in &w.payers {
                if p.channel.paid == 0 { continue; }
                let req = Request::Paid { update: update(p), inner: Box::new(status_req(&p.channel)) };
                let Response::Receipt { inner, .. } = w.server.handle(&p.peer, req) else {
                    return Err(TestCaseError::fail("no receipt for status"));
                };
                let Response::Channel { paid, owed, .. } = *inner else { return Err(TestCaseError::fail("no status")) };
                prop_assert_eq!((paid, owed), (p.channel.paid, p.owed));
                prop_assert!(owed <= paid);
            }
        }
    }
}

/// Charges that arrive at once on one channel share their syncs (group commit), yet every one of
/// them is in the books a restarted node loads.
#[test]
fn concurrent_charges_are_all_durable() {
    let mut w = world();
    let p = &mut w.payers[0];
    p.channel.paid = 400_000;
    let (signed, peer, funding) = (update(p), p.peer, p.channel.params.funding);
    let server = &w.server;
    const FUEL: u64 = 20_000_000;
    let jobs: Vec<u64> = (0..8).map(|_| ended_job(server, &w.payers[0], FUEL).0).collect();
    let charged: u64 = std::thread::scope(|s| {
        let threads: Vec<_> = jobs
            .iter()
            .map(|&job| {
                let signed = signed.clone();
                s.spawn(move || {
                    let mut sum = 0;
                    for i in 1..=20 {
                        let inner = Box::new(poll(job, i * FUEL / 20, 0));
                        match server.handle(&peer, Request::Paid { update: signed.clone(), inner }) {
                            Response::Receipt { charged, .. } => sum += charged,
                            other => panic!("{other:?}"),
                        }
                    }
                    sum
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(charged, Usage::default().with_fuel(8 * FUEL).owed(&PRICES));
    let restarted = Billing::open(w.cfg.clone()).unwrap();
    assert_eq!(restarted.owed(&funding), charged);
}

/// A payer can neither see, pay for, read the outputs of, nor stop another payer's job.
#[test]
fn jobs_belong_to_their_buyer() {
    let mut w = world();
    w.payers[0].channel.paid = 10_000;
    w.payers[1].channel.paid = 10_000;
    let (job, report) = ended_job(&w.server, &w.payers[0], 5_000_000);
    let thief = &w.payers[1];
    for req in [
        poll(job, u64::MAX, u64::MAX),
        Request::JobOutput { job, name: "x".into(), offset: 0 },
        Request::JobCancel { job },
    ] {
        let r = w.server.handle(&thief.peer, Request::Paid { update: update(thief), inner: Box::new(req) });
        let Response::Receipt { charged: 0, inner, .. } = r else { panic!("no receipt: {r:?}") };
        assert!(matches!(*inner, Response::Error { code: ErrorCode::NotFound, .. }), "{inner:?}");
    }
    // Nothing was charged to either channel; the owner still pays its own job, exactly.
    let owner = &w.payers[0];
    let r = w
        .server
        .handle(&owner.peer, Request::Paid { update: update(owner), inner: Box::new(poll(job, u64::MAX, u64::MAX)) });
    let Response::Receipt { charged, .. } = r else { panic!("no receipt") };
    assert_eq!(charged, Usage::default().with_fuel(report.fuel).with_cpu(report.core_secs).owed(&PRICES));
}
