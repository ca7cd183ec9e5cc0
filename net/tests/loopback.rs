//! A real libp2p node on 127.0.0.1 answering through the wire protocol.

use std::sync::Arc;
use std::time::Duration;

use blackbox_net::wire::{ErrorCode, NodeStatus};
use blackbox_net::{serve, Keypair, Libp2pTransport, PeerId, Request, RequestHandler, Response, Transport};
use bytes::Bytes;

struct Fixed;

impl RequestHandler for Fixed {
    fn handle(&self, _from: &PeerId, req: Request) -> Response {
        match req {
            Request::Status => Response::Status(NodeStatus { shares: 1, pending: 2, used: 3, quota: 4 }),
            Request::WriteBlocks { blocks, .. } => Response::Blocks(blocks),
            _ => Response::error(ErrorCode::NotFound, "nothing here"),
        }
    }
}

#[tokio::test]
async fn request_response_over_tcp() {
    let node =
        serve(Keypair::generate_ed25519(), "/ip4/127.0.0.1/tcp/0".parse().unwrap(), Arc::new(Fixed)).await.unwrap();
    let client = Libp2pTransport::new(Duration::from_secs(10)).unwrap();
    let (peer, addrs) = (node.peer_id, node.listen_addrs.clone());
    let status = client.request(peer, &addrs, Request::Status).await.unwrap();
    assert_eq!(status, Response::Status(NodeStatus { shares: 1, pending: 2, used: 3, quota: 4 }));

    // A block near the size limit travels whole.
    let data = Bytes::from(vec![7u8; 1 << 20]);
    let req = Request::WriteBlocks { si: [0; 32], share: 0, upload: 1, start: 0, blocks: vec![data.clone()] };
    assert_eq!(client.request(peer, &addrs, req).await.unwrap(), Response::Blocks(vec![data]));

    // Garbage gets an error response, not a dropped connection or a crash.
    let raw = client.request_raw(peer, &addrs, vec![1, 200, 3]).await.unwrap();
    match Response::decode(raw).unwrap() {
        Response::Error { code, .. } => assert_eq!(code, ErrorCode::Malformed),
        other => panic!("unexpected {other:?}"),
    }
    // The node still serves afterwards.
    assert!(matches!(client.request(peer, &addrs, Request::Status).await, Ok(Response::Status(_))));

    // A stopped node is reported unreachable.
    node.stop().await;
    assert!(client.request(peer, &addrs, Request::Status).await.is_err());
}

#[tokio::test]
async fn a_port_in_use_is_named_in_the_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("/ip4/127.0.0.1/tcp/{}", taken.local_addr().unwrap().port());
    let err = serve(Keypair::generate_ed25519(), addr.parse().unwrap(), Arc::new(Fixed)).await.err().unwrap();
    let text = err.to_string();
    assert!(text.contains(&addr) && text.to_lowercase().contains("in use"), "{text}");
}

#[tokio::test]
async fn a_node_that_is_not_the_peer_dialled_is_refused() {
    // The TLS certificate binds the connection to the node's identity key: dialling its address
    // while expecting another peer (a node impersonating, or a man in the middle) fails.
    let node =
        serve(Keypair::generate_ed25519(), "/ip4/127.0.0.1/tcp/0".parse().unwrap(), Arc::new(Fixed)).await.unwrap();
    let client = Libp2pTransport::new(Duration::from_secs(10)).unwrap();
    let someone_else = Keypair::generate_ed25519().public().to_peer_id();
    let err = client.request(someone_else, &node.listen_addrs, Request::Status).await.unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(matches!(client.request(node.peer_id, &node.listen_addrs, Request::Status).await, Ok(Response::Status(_))));
    node.stop().await;
}
