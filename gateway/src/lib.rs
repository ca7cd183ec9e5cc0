//! blackbox S3 gateway: stock S3 clients store into the grid. Buckets are directories under the
//! gateway's root in the namespace, objects their entries named by full keys; s3s does the HTTP,
//! XML and SigV4 work, every storage behaviour is here, over the client library.

mod auth;
mod body;
pub mod config;
mod list;
mod multipart;
mod ops;
mod store;

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::service::S3ServiceBuilder;
use thiserror::Error;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::{GatewayConfig, KeyConfig};

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The config does not load.
    #[error(transparent)]
    Config(#[from] blackbox_util::ConfigError),
    /// The grid could not be reached, or the root directory not made.
    #[error(transparent)]
    Client(#[from] blackbox_client::ClientError),
    /// No access key configured.
    #[error("gateway.toml has no [[keys]]: every request must be signed by a configured key")]
    NoKeys,
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
}

/// Bytes a connection may buffer (headers must fit; bodies stream through it in pieces).
const HTTP_BUFFER: usize = 256 << 10;
/// Headers a request may carry.
const MAX_HEADERS: usize = 100;

/// Whether a POST's XML body is over `max` bytes (or chunked, of unknown length). Browser form
/// uploads (multipart/form-data) carry an object, not XML, and are not limited here.
fn xml_too_long<B>(req: &hyper::Request<B>, max: u64) -> bool {
    let h = req.headers();
    let form = h
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/form-data"));
    let len: Option<u64> = h.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    !form && (len.is_some_and(|l| l > max) || (len.is_none() && h.contains_key(hyper::header::TRANSFER_ENCODING)))
}

/// The bytes of a request's header section as sent (each line: name, ": ", value, CRLF).
fn header_bytes<B>(req: &hyper::Request<B>) -> usize {
    req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

/// A 400 answer with S3 error `code`, closing the connection (its body is not read).
fn refuse(code: &str, message: &str) -> s3s::HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut resp = s3s::HttpResponse::new(s3s::Body::from(body));
    *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
    resp.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    resp
}

/// Removes abandoned multipart uploads now and every hour.
fn spawn_collector(store: Arc<store::Store>, max_age_secs: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store.collect_abandoned(max_age_secs).await {
                Ok(0) => {}
                Ok(n) => info!(uploads = n, "removed abandoned multipart uploads"),
                Err(e) => warn!(error = %e, "cannot collect abandoned multipart uploads"),
            }
        }
    });
}

/// Runs the gateway until `stop` resolves; calls `ready` with the bound address once listening.
pub async fn run(
    cfg: GatewayConfig,
    ready: impl FnOnce(std::net::SocketAddr),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), GatewayError> {
    if cfg.keys.is_empty() {
        return Err(GatewayError::NoKeys);
    }
    let client_cfg = blackbox_client::ClientConfig::load(&cfg.client_config)?;
    let spool = client_cfg.data_dir.join("gateway-spool");
    std::fs::create_dir_all(&spool)
        .map_err(|source| blackbox_client::ClientError::State { what: "the spool dir", source })?;
    let session = Arc::new(blackbox_client::Session::connect(client_cfg).await?);
    let store = Arc::new(store::Store::open(session, &cfg.root).await?);
    spawn_collector(store.clone(), cfg.multipart_max_age_secs);
    let keys = auth::Keys::new(&cfg.keys, &cfg.public_read);
    let gateway = ops::Gateway::new(store, keys.clone(), &cfg, spool);
    let mut builder = S3ServiceBuilder::new(gateway);
    builder.set_auth(keys.clone());
    builder.set_access(keys);
    let service = builder.build();
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|source| GatewayError::Listen { addr: cfg.listen.clone(), source })?;
    let addr = listener.local_addr().map_err(|source| GatewayError::Listen { addr: cfg.listen.clone(), source })?;
    info!(%addr, "S3 gateway listening");
    ready(addr);
    let limit = Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent_requests.max(1)));
    let connections = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1)));
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A connection buffers at most this much; headers past it are answered 431 by hyper.
    http.http1()
        .max_buf_size(HTTP_BUFFER)
        .max_headers(MAX_HEADERS)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(cfg.header_timeout_secs.max(1)));
    let max_header = cfg.max_header_bytes;
    tokio::pin!(stop);
    loop {
        // The semaphore is never closed, so waiting for a permit ends only with one.
        let connection = tokio::select! {
            p = connections.clone().acquire_owned() => p.ok(),
            () = &mut stop => return Ok(()),
        };
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut stop => return Ok(()),
        };
        let (service, http, limit, max_xml) = (service.clone(), http.clone(), limit.clone(), cfg.max_xml_body);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (service, limit) = (service.clone(), limit.clone());
                async move {
                    let _permit = limit.acquire_owned().await;
                    if header_bytes(&req) > max_header {
                        return Ok(refuse("RequestHeaderSectionTooLarge", "the request headers are too long"));
                    }
                    // XML bodies (POST) are read whole by the S3 layer: refuse big ones first.
                    if req.method() == hyper::Method::POST && xml_too_long(&req, max_xml) {
                        return Ok(refuse("MaxMessageLengthExceeded", "the request body is too long"));
                    }
                    hyper::service::Service::call(&service, req).await
                }
            });
            if let Err(e) = http.serve_connection(TokioIo::new(socket), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(connection);
        });
    }
}
