//! The provider's dashboard: a page served from the binary, the JSON API behind it and a
//! Prometheus `/metrics` endpoint, on hyper. Everything but the page needs the token of
//! `dashboard.token` (0600, in the data dir), as `Authorization: Bearer TOKEN` or through the
//! session cookie the page gets by logging in once.

mod auth;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

pub use auth::{load_or_create_token, login_token, Sessions, TOKEN_FILE};
pub use status::{Sources, StatusCache};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 32;
/// Largest request body (the login form).
const MAX_BODY: usize = 4 << 10;

const PAGE: &str = include_str!("page.html");

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

fn json_error(status: StatusCode, message: &str) -> Reply {
    reply(status, "application/json", serde_json::json!({ "error": message }).to_string())
}

/// A running dashboard.
pub struct Dashboard {
    /// The address it listens on.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// The URL to open.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Whether it listens beyond this machine.
    pub fn public(&self) -> bool {
        !self.addr.ip().is_loopback()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts serving on `listen` (inside a tokio runtime) with `token` and the node's `sources`.
pub async fn serve(listen: &str, token: String, sources: Arc<Sources>) -> std::io::Result<Dashboard> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "THE DASHBOARD IS REACHABLE FROM OTHER MACHINES: anyone who has the token can read it");
    }
    let state =
        Arc::new(State { sessions: Sessions::new(token), cache: StatusCache::new(sources, !addr.ip().is_loopback()) });
    let task = tokio::spawn(accept(listener, state));
    Ok(Dashboard { addr, task })
}

struct State {
    sessions: Sessions,
    cache: StatusCache,
}

async fn accept(listener: tokio::net::TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(route(req, &state).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 << 10)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(error = %e, "dashboard connection failed");
            }
            drop(permit);
        });
    }
}

async fn route(req: Request<Incoming>, state: &State) -> Reply {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    match (method, path.as_str()) {
        (Method::GET, "/") => {
            let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", PAGE);
            r.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'",
                ),
            );
            r
        }
        (Method::POST, "/login") => login(req, state).await,
        (Method::POST, "/logout") => {
            state.sessions.end(req.headers());
            let mut r = reply(StatusCode::NO_CONTENT, "text/plain", "");
            r.headers_mut().insert(SET_COOKIE, HeaderValue::from_static(auth::CLEAR_COOKIE));
            r
        }
        (Method::GET, "/api/v1/status" | "/metrics") if !state.sessions.allows(req.headers()) => {
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "log in, or send Authorization: Bearer TOKEN (see dashboard.token)",
            );
            r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer realm=\"blackbox node\""));
            r
        }
        (Method::GET, "/api/v1/status") => match state.cache.get().await {
            Ok(s) => reply(StatusCode::OK, "application/json", s.to_string()),
            Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e),
        },
        (Method::GET, "/metrics") => match state.cache.get().await {
            Ok(s) => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", status::metrics(&s)),
            Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e),
        },
        (_, "/" | "/login" | "/logout" | "/api/v1/status" | "/metrics") => {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => json_error(StatusCode::NOT_FOUND, "no such page"),
    }
}

async fn login(req: Request<Incoming>, state: &State) -> Reply {
    if !state.sessions.may_try() {
        return json_error(StatusCode::TOO_MANY_REQUESTS, "too many failed logins; wait a minute");
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "login form too large"),
    };
    match state.sessions.login(&login_token(&body)) {
        Some(cookie) => {
            let mut r = reply(StatusCode::NO_CONTENT, "text/plain", "");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            r
        }
        None => json_error(StatusCode::UNAUTHORIZED, "wrong token"),
    }
}
