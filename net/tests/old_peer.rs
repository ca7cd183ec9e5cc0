//! Peers of the previous protocol (wire version 2, noise only) are refused with a clear message,
//! both ways: a current client names the old node, and an old client reads why it was refused.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use blackbox_net::wire::ErrorCode;
use blackbox_net::{
    serve, Keypair, Libp2pTransport, PeerId, Request, RequestHandler, Response, Transport, TransportError,
};
use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, Event, Message, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol, Swarm};

const OLD: &str = "/blackbox/storage/2";

/// Length-prefixed raw bytes, as version 2 framed them.
#[derive(Clone, Default)]
struct Raw;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    io.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: Vec<u8>) -> io::Result<()> {
    io.write_all(&(body.len() as u32).to_le_bytes()).await?;
    io.write_all(&body).await?;
    io.close().await
}

impl request_response::Codec for Raw {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, r).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, r).await
    }
}

/// A version-2 peer: noise only, the old protocol only.
fn old_swarm(support: ProtocolSupport) -> Swarm<request_response::Behaviour<Raw>> {
    let rr = request_response::Behaviour::with_codec(
        Raw,
        [(StreamProtocol::new(OLD), support)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
    );
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| rr)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

struct Fixed;

impl RequestHandler for Fixed {
    fn handle(&self, _from: &PeerId, _req: Request) -> Response {
        Response::Ok
    }
}

#[tokio::test]
async fn a_current_client_names_an_old_node() {
    let mut old = old_swarm(ProtocolSupport::Inbound);
    old.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = old.select_next_some().await {
            break address;
        }
    };
    let peer = *old.local_peer_id();
    tokio::spawn(async move {
        loop {
            old.select_next_some().await;
        }
    });
    let client = Libp2pTransport::new(Duration::from_secs(10)).unwrap();
    let err = client.request(peer, &[addr], Request::Status).await.unwrap_err();
    assert!(matches!(err, TransportError::Incompatible(p) if p == peer), "{err}");
    assert!(err.to_string().contains("older blackbox and needs an upgrade"), "{err}");
}

#[tokio::test]
async fn an_old_client_reads_why_it_is_refused() {
    let node =
        serve(Keypair::generate_ed25519(), "/ip4/127.0.0.1/tcp/0".parse().unwrap(), Arc::new(Fixed)).await.unwrap();
    let mut old = old_swarm(ProtocolSupport::Outbound);
    old.add_peer_address(node.peer_id, node.listen_addrs[0].clone());
    // A version-2 Status request.
    old.behaviour_mut().send_request(&node.peer_id, vec![2u8, 0]);
    let answer = loop {
        match old.select_next_some().await {
            SwarmEvent::Behaviour(Event::Message { message: Message::Response { response, .. }, .. }) => {
                break response
            }
            SwarmEvent::Behaviour(Event::OutboundFailure { error, .. }) => panic!("no answer: {error}"),
            _ => {}
        }
    };
    // In the old client's own version, so it can decode the reason.
    assert_eq!(answer[0], 2);
    let mut current = answer.clone();
    current[0] = blackbox_net::wire::WIRE_VERSION;
    match Response::decode(Bytes::from(current)).unwrap() {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::Malformed);
            assert!(message.contains("no longer served") && message.contains("upgrade"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The node still serves current clients.
    let client = Libp2pTransport::new(Duration::from_secs(10)).unwrap();
    let ok = client.request(node.peer_id, &node.listen_addrs, Request::Status).await.unwrap();
    assert_eq!(ok, Response::Ok);
    node.stop().await;
}
