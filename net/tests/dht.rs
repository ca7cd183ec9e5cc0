//! Discovery: nodes that know only one bootstrap node find each other, and a client that knows
//! only that node finds every storage provider and reaches it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blackbox_net::wire::NodeStatus;
use blackbox_net::{
    serve_with, Discovery, Keypair, Libp2pTransport, PeerId, Request, RequestHandler, Response, Transport,
};

struct Answer;

impl RequestHandler for Answer {
    fn handle(&self, _from: &PeerId, _req: Request) -> Response {
        Response::Status(NodeStatus::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_finds_every_provider_through_one_bootstrap_node() {
    let listen: blackbox_net::Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    let first =
        serve_with(Keypair::generate_ed25519(), listen.clone(), Arc::new(Answer), &Discovery::default()).await.unwrap();
    let boot = Discovery { bootstrap: vec![(first.peer_id, first.listen_addrs[0].clone())] };
    let mut nodes = vec![first];
    for _ in 0..5 {
        nodes.push(serve_with(Keypair::generate_ed25519(), listen.clone(), Arc::new(Answer), &boot).await.unwrap());
    }
    let client = Libp2pTransport::with_discovery(Duration::from_secs(10), &boot).unwrap();
    let want: Vec<PeerId> = nodes.iter().map(|n| n.peer_id).collect();
    let start = Instant::now();
    let found = loop {
        let found = client.find_storage_providers().await.unwrap();
        if want.iter().all(|p| found.iter().any(|(f, addrs)| f == p && !addrs.is_empty())) {
            break found;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "found only {found:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every provider is reachable with nothing but what discovery returned.
    for (peer, _) in &found {
        let r = client.request(*peer, &[], Request::Status).await.unwrap();
        assert!(matches!(r, Response::Status(_)));
    }
    for n in nodes {
        n.stop().await;
    }
}
