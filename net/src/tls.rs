//! TLS 1.3 as libp2p secures connections (`/tls/1.0.0`: a self-signed certificate carrying the
//! peer's identity key, checked on both sides), with AES-GCM offered first: on CPUs with AES
//! instructions it costs a fraction of ChaCha20-Poly1305 per byte, and every share block crosses
//! the transport once per hop. libp2p-tls's own configuration puts ChaCha20 first; its certificate
//! functions are used as they are.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use futures_rustls::TlsStream;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::Keypair;
use libp2p::tls::certificate;
use libp2p::PeerId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The libp2p ALPN value.
const ALPN: &[u8] = b"libp2p";

/// Why a TLS connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate could not be made.
    #[error("certificate: {0}")]
    Certificate(#[from] certificate::GenError),
    /// rustls refused the configuration.
    #[error("tls config: {0}")]
    Config(#[from] rustls::Error),
    /// The handshake failed (or the peer's certificate did not check out).
    #[error("tls handshake: {0}")]
    Handshake(std::io::Error),
    /// The peer sent no certificate, or one that is not a libp2p certificate.
    #[error("peer certificate: {0}")]
    Peer(String),
}

/// The security upgrade: one client and one server configuration per identity.
#[derive(Clone)]
pub struct Config {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// aws-lc's provider with the TLS 1.3 suites only, AES-GCM first.
fn provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    let rank = |s: CipherSuite| match s {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
        _ => 2,
    };
    p.cipher_suites.retain(|s| s.version() == &rustls::version::TLS13);
    p.cipher_suites.sort_by_key(|s| rank(s.suite()));
    Arc::new(p)
}

impl Config {
    /// Configurations for `identity` (a fresh certificate key, bound to the identity).
    pub fn new(identity: &Keypair) -> Result<Self, TlsError> {
        let (cert, key) = certificate::generate(identity)?;
        let provider = provider();
        let signer = provider.key_provider.load_private_key(key)?;
        // (rustls's own single-cert setup would refuse the critical libp2p extension.)
        let mine = Arc::new(MyCert(Arc::new(CertifiedKey::new(vec![cert], signer))));
        let verifier = Arc::new(PeerCert);
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(mine.clone());
        server.alpn_protocols = vec![ALPN.to_vec()];
        // The server picks the first of its own suites that the client offers.
        server.ignore_client_order = true;
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(mine);
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Self { server: Arc::new(server), client: Arc::new(client) })
    }
}

/// Our one certificate, for both sides of a handshake.
#[derive(Debug)]
struct MyCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for MyCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for MyCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The peer id in the one certificate a finished handshake presented.
fn peer_of(certs: Option<&[CertificateDer<'_>]>) -> Result<PeerId, TlsError> {
    match certs {
        Some([one]) => certificate::parse(one).map(|c| c.peer_id()).map_err(|e| TlsError::Peer(e.to_string())),
        _ => Err(TlsError::Peer("exactly one certificate is required".into())),
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/tls/1.0.0")
    }
}

impl<C: AsyncRead + AsyncWrite + Send + Unpin + 'static> InboundConnectionUpgrade<C> for Config {
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, TlsError>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let stream =
                futures_rustls::TlsAcceptor::from(self.server).accept(socket).await.map_err(TlsError::Handshake)?;
            let peer = peer_of(stream.get_ref().1.peer_certificates())?;
            Ok((peer, stream.into()))
        }
        .boxed()
    }
}

impl<C: AsyncRead + AsyncWrite + Send + Unpin + 'static> OutboundConnectionUpgrade<C> for Config {
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, TlsError>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The libp2p TLS handshake sends no server name.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let stream = futures_rustls::TlsConnector::from(self.client)
                .connect(name, socket)
                .await
                .map_err(TlsError::Handshake)?;
            let peer = peer_of(stream.get_ref().1.peer_certificates())?;
            Ok((peer, stream.into()))
        }
        .boxed()
    }
}

/// Accepts exactly one self-signed libp2p certificate whose extension is signed by the identity
/// key it names; handshake signatures are checked against the certificate's key. Which peer it is
/// is checked by the swarm against the peer dialled.
#[derive(Debug)]
struct PeerCert;

fn check_cert(end: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::General("libp2p certificates come alone".into()));
    }
    certificate::parse(end).map(|_| ()).map_err(|e| rustls::Error::General(e.to_string()))
}

fn check_signature(msg: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<(), rustls::Error> {
    let c = certificate::parse(cert).map_err(|e| rustls::Error::General(e.to_string()))?;
    c.verify_signature(dss.scheme, msg, dss.signature()).map_err(|e| rustls::Error::General(e.to_string()))
}

/// The schemes libp2p certificates are signed with.
const SCHEMES: [SignatureScheme; 3] =
    [SignatureScheme::ECDSA_NISTP256_SHA256, SignatureScheme::ECDSA_NISTP384_SHA384, SignatureScheme::ED25519];

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is refused: libp2p peers speak TLS 1.3".into())
}

impl ServerCertVerifier for PeerCert {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_cert(end, intermediates).map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_signature(msg, cert, dss).map(|_| HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for PeerCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_cert(end, intermediates).map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_signature(msg, cert, dss).map(|_| HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}
