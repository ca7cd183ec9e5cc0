//! The client against an in-process grid of real storage servers (memory stores).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blackbox_client::{Client, ClientError, NodeRef, ShareHealth, UploadOptions};
use blackbox_core::EncodingParams;
use blackbox_net::{ErrorCode, MemoryTransport, PeerId, Request, RequestHandler, Response};
use blackbox_storage_node::{MemoryStore, StorageServer};
use bytes::Bytes;

/// A storage server that can be told to corrupt the blocks it serves, or to die mid-upload.
struct Node {
    server: StorageServer<MemoryStore>,
    corrupt: AtomicBool,
    /// Answer every allocation with "already stored", holding nothing.
    squat: AtomicBool,
    /// Block writes left before the node stops answering anything but errors (negative: never).
    writes_left: AtomicI64,
}

impl RequestHandler for Node {
    fn handle(&self, from: &PeerId, req: Request) -> Response {
        if self.squat.load(Ordering::Relaxed) && matches!(req, Request::Allocate { .. }) {
            return Response::Allocated { already_have: true, upload: 0 };
        }
        if matches!(req, Request::WriteBlocks { .. }) {
            self.writes_left.fetch_sub(1, Ordering::SeqCst);
        }
        if self.writes_left.load(Ordering::SeqCst) == -1 {
            return Response::error(ErrorCode::Internal, "node died");
        }
        match self.server.handle(from, req) {
            Response::Blocks(blocks) if self.corrupt.load(Ordering::Relaxed) => Response::Blocks(
                blocks
                    .into_iter()
                    .map(|b| {
                        let mut v = b.to_vec();
                        v[b.len() / 2] ^= 0x40;
                        Bytes::from(v)
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

struct Grid {
    transport: MemoryTransport<Node>,
    nodes: Vec<(NodeRef, Arc<Node>)>,
}

fn grid(count: usize, quota: u64) -> Grid {
    let transport = MemoryTransport::new();
    let nodes = (0..count)
        .map(|_| {
            let peer = PeerId::random();
            let node = Arc::new(Node {
                server: StorageServer::new(MemoryStore::new(), quota, Duration::from_secs(60)).unwrap(),
                corrupt: AtomicBool::new(false),
                squat: AtomicBool::new(false),
                writes_left: AtomicI64::new(i64::MIN / 2),
            });
            transport.insert(peer, node.clone());
            (NodeRef { peer, addrs: vec![] }, node)
        })
        .collect();
    Grid { transport, nodes }
}

impl Grid {
    fn client(&self) -> Client<MemoryTransport<Node>> {
        Client::new(self.transport.clone(), self.nodes.iter().map(|(n, _)| n.clone()).collect())
    }
}

fn data(len: usize) -> Vec<u8> {
    blackbox_tests::random_bytes(len, 0x9e3779b97f4a7c15)
}

async fn put(
    c: &Client<MemoryTransport<Node>>,
    bytes: &[u8],
    k: usize,
    n: usize,
    happy: usize,
) -> Result<blackbox_client::UploadReport, ClientError> {
    let owned = bytes.to_vec();
    let opts = UploadOptions { params: EncodingParams::new(k, n, 64 * 1024).unwrap(), happy, key: None, lease_secs: 0 };
    c.upload(move || Ok(std::io::Cursor::new(owned.clone())), bytes.len() as u64, &opts, Arc::new(AtomicU64::new(0)))
        .await
}

async fn get(
    c: &Client<MemoryTransport<Node>>,
    cap: &blackbox_core::ReadCap,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.download(cap, range, |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_losing_all_but_k_nodes() {
    let g = grid(10, 1 << 30);
    let c = g.client();
    let bytes = data(1_000_000);
    let report = put(&c, &bytes, 3, 10, 7).await.unwrap();
    assert_eq!(report.happiness, 10);
    assert_eq!(get(&c, &report.cap, None).await.unwrap(), bytes);
    // Range reads return exactly the slice.
    assert_eq!(get(&c, &report.cap, Some((70_000, 200_000))).await.unwrap(), bytes[70_000..270_000]);
    assert_eq!(get(&c, &report.cap, Some((999_999, 1))).await.unwrap(), bytes[999_999..]);
    assert!(get(&c, &report.cap, Some((999_999, 2))).await.is_err());
    // Kill 7 nodes, including every data share's node: still recoverable by decoding.
    for (node, _) in &g.nodes[..7] {
        g.transport.remove(&node.peer);
    }
    assert_eq!(get(&c, &report.cap, None).await.unwrap(), bytes);
    g.transport.remove(&g.nodes[7].0.peer);
    match get(&c, &report.cap, None).await {
        Err(ClientError::NotEnoughShares { found: 2, needed: 3, asked: 10, answered: 2 }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

/// A node that claims to hold shares it does not is not counted as holding them, and is noted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn false_already_stored_claims_are_not_counted() {
    let g = grid(5, 1 << 30);
    g.nodes[0].1.squat.store(true, Ordering::Relaxed);
    let c = g.client();
    let bytes = data(300_000);
    let report = put(&c, &bytes, 2, 5, 4).await.unwrap();
    let liar = g.nodes[0].0.peer;
    assert!(report.placements.iter().all(|(_, p)| *p != liar), "{:?}", report.placements);
    assert_eq!(report.happiness, 4);
    assert!(c.take_outcomes().iter().any(|(p, o)| *p == liar && *o == blackbox_client::reputation::Outcome::BadData));
    assert_eq!(get(&c, &report.cap, None).await.unwrap(), bytes);
    // With every other node needed, the false claim makes the upload fail instead of lying.
    let c = g.client();
    assert!(matches!(put(&c, &bytes, 2, 5, 5).await, Err(ClientError::NotHappy { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_node_is_detected_and_skipped() {
    let g = grid(10, 1 << 30);
    let c = g.client();
    let bytes = data(500_000);
    let report = put(&c, &bytes, 3, 10, 7).await.unwrap();
    for (_, node) in &g.nodes[..4] {
        node.corrupt.store(true, Ordering::Relaxed);
    }
    assert_eq!(get(&c, &report.cap, None).await.unwrap(), bytes);
    let v = c.verify(&report.cap.verify_cap()).await.unwrap();
    let bad = v.shares.iter().filter(|(_, _, h)| *h != ShareHealth::Good).count();
    assert_eq!(bad, 4);
    assert!(v.recoverable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_nodes_are_skipped_and_happiness_is_enforced() {
    // Four tiny nodes refuse; six big ones take all ten shares (some two each).
    let g = grid(10, 1 << 30);
    let c = g.client();
    let bytes = data(300_000);
    for (node, _) in &g.nodes[..4] {
        let tiny = Arc::new(Node {
            server: StorageServer::new(MemoryStore::new(), 10, Duration::from_secs(60)).unwrap(),
            corrupt: AtomicBool::new(false),
            squat: AtomicBool::new(false),
            writes_left: AtomicI64::new(i64::MIN / 2),
        });
        g.transport.insert(node.peer, tiny);
    }
    let report = put(&c, &bytes, 3, 10, 6).await.unwrap();
    assert_eq!(report.happiness, 6);
    assert_eq!(report.placements.len(), 10);
    assert_eq!(get(&c, &report.cap, None).await.unwrap(), bytes);
    // Asking for happiness 7 with only six usable nodes fails clearly.
    match put(&c, &bytes, 3, 10, 7).await {
        Err(ClientError::NotHappy { achieved: 6, happy: 7, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_tiny_files() {
    let g = grid(5, 1 << 30);
    let c = g.client();
    for len in [0usize, 1, 65_536, 65_537] {
        let bytes = data(len);
        let report = put(&c, &bytes, 2, 5, 5).await.unwrap();
        assert_eq!(get(&c, &report.cap, None).await.unwrap(), bytes, "len {len}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_dying_mid_upload_are_replaced() {
    // Two of eleven nodes die after a few block writes; at most one of them was the spare.
    let g = grid(11, 1 << 30);
    for (_, node) in &g.nodes[..2] {
        node.writes_left.store(3, Ordering::SeqCst);
    }
    let c = g.client();
    let bytes = data(2_000_000);
    let report = put(&c, &bytes, 3, 10, 7).await.unwrap();
    let dead: Vec<PeerId> = g.nodes[..2].iter().map(|(n, _)| n.peer).collect();
    assert!(report.placements.iter().all(|(_, p)| !dead.contains(p)), "a share was left on a dead node");
    assert_eq!(report.placements.len(), 10);
    assert!(report.happiness >= 9, "happiness {}", report.happiness);
    for p in &dead {
        g.transport.remove(p);
    }
    assert_eq!(get(&c, &report.cap, None).await.unwrap(), bytes);
}

/// Serves a fixed offer, whatever it is.
struct OfferOnly(Bytes);

impl RequestHandler for OfferOnly {
    fn handle(&self, _from: &PeerId, _req: Request) -> Response {
        Response::Offer(self.0.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_offers_are_rejected() {
    use blackbox_net::offer::{Availability, Offer, Prices, Resources, SignedOffer};
    use blackbox_net::Keypair;
    let now = 1_900_000_000;
    let make = |key: &Keypair, expires_at: u64| Offer {
        node: key.public(),
        resources: Resources::default(),
        availability: Availability::Always,
        prices: Prices { storage_sat_per_gb_month: 100, ..Prices::default() },
        bitcoin_pubkey: [3; 33],
        region: String::new(),
        issued_at: now - 10,
        expires_at,
    };
    let transport: MemoryTransport<OfferOnly> = MemoryTransport::new();
    let mut nodes = Vec::new();
    let mut add = |peer: PeerId, offer: Vec<u8>| {
        transport.insert(peer, Arc::new(OfferOnly(Bytes::from(offer))));
        nodes.push(NodeRef { peer, addrs: vec![] });
    };
    // Honest.
    let honest = Keypair::generate_ed25519();
    add(honest.public().to_peer_id(), make(&honest, now + 600).sign(&honest).unwrap().encode());
    // Expired.
    let stale = Keypair::generate_ed25519();
    add(stale.public().to_peer_id(), make(&stale, now - 1).sign(&stale).unwrap().encode());
    // Forged: a price changed after signing.
    let forger = Keypair::generate_ed25519();
    let mut forged = SignedOffer::decode(&make(&forger, now + 600).sign(&forger).unwrap().encode()).unwrap();
    forged.offer.prices.storage_sat_per_gb_month = 1;
    add(forger.public().to_peer_id(), forged.encode());
    // Someone else's genuine offer, served by another node.
    add(PeerId::random(), make(&honest, now + 600).sign(&honest).unwrap().encode());
    // Garbage.
    add(PeerId::random(), vec![1, 2, 3]);

    let c = Client::new(transport.clone(), nodes);
    let offers = c.offers(now).await;
    let valid: Vec<bool> = offers.iter().map(|(_, o)| o.is_ok()).collect();
    assert_eq!(valid, vec![true, false, false, false, false]);
    for (_, o) in &offers[1..] {
        assert!(matches!(o, Err(ClientError::BadOffer { .. })), "{o:?}");
    }
}
