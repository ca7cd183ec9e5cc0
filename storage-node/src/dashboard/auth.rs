//! The dashboard's token and login sessions: a 256-bit token in `dashboard.token` (0600 from its
//! first byte), compared in constant time; sessions are random ids in an HttpOnly, SameSite=Strict
//! cookie, a bounded number of them, each for a week; failed logins are limited per minute.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::{HeaderMap, AUTHORIZATION, COOKIE};

/// The token file in the node's data dir.
pub const TOKEN_FILE: &str = "dashboard.token";
const COOKIE_NAME: &str = "bb_session";
/// The header that removes the session cookie.
pub const CLEAR_COOKIE: &str = "bb_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0";
const SESSION_LIFE: Duration = Duration::from_secs(7 * 86_400);
const MAX_SESSIONS: usize = 32;
const FAILED_LOGINS_PER_MINUTE: u32 = 10;

/// The dashboard token of the node in `dir`, created on first use.
pub fn load_or_create_token(dir: &Path) -> std::io::Result<String> {
    let bytes = blackbox_util::load_or_create_secret(&dir.join(TOKEN_FILE), || {
        let raw: [u8; 32] = rand::random();
        format!("{}\n", data_hex(&raw)).into_bytes()
    })?;
    let token = String::from_utf8_lossy(&bytes).trim().to_string();
    if token.len() < 32 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{TOKEN_FILE} holds no token")));
    }
    Ok(token)
}

fn data_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The token of a login form body (`token=…`, URL-encoded; the token is hex, so no decoding).
pub fn login_token(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split('&').find_map(|kv| kv.strip_prefix("token=")).unwrap_or("").trim().to_string()
}

/// Constant-time equality of two secrets (through their hashes).
fn same(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

struct Inner {
    sessions: HashMap<String, Instant>,
    failures: (Instant, u32),
}

/// The token and the open sessions.
pub struct Sessions {
    token: String,
    inner: Mutex<Inner>,
}

impl Sessions {
    /// Sessions of a dashboard whose token is `token`.
    pub fn new(token: String) -> Self {
        Self { token, inner: Mutex::new(Inner { sessions: HashMap::new(), failures: (Instant::now(), 0) }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another login may be tried now (failed ones are limited per minute).
    pub fn may_try(&self) -> bool {
        let mut i = self.lock();
        if i.failures.0.elapsed() > Duration::from_secs(60) {
            i.failures = (Instant::now(), 0);
        }
        i.failures.1 < FAILED_LOGINS_PER_MINUTE
    }

    /// Opens a session if `given` is the token; returns its `Set-Cookie` value.
    pub fn login(&self, given: &str) -> Option<String> {
        let mut i = self.lock();
        if !same(given, &self.token) {
            i.failures.1 += 1;
            return None;
        }
        let now = Instant::now();
        i.sessions.retain(|_, exp| *exp > now);
        while i.sessions.len() >= MAX_SESSIONS {
            let oldest = i.sessions.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())?;
            i.sessions.remove(&oldest);
        }
        let id = data_hex(&rand::random::<[u8; 32]>());
        i.sessions.insert(id.clone(), now + SESSION_LIFE);
        Some(format!("{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION_LIFE.as_secs()))
    }

    /// The session id in a request's `Cookie` headers.
    fn cookie(headers: &HeaderMap) -> Option<String> {
        headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE_NAME).then(|| v.to_string())
        })
    }

    /// Whether the request carries the token or a live session.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| same(t.trim(), &self.token)) {
            return true;
        }
        let Some(id) = Self::cookie(headers) else { return false };
        let now = Instant::now();
        // Looked up by hash comparison of every id: no early exit on a matching prefix.
        self.lock().sessions.iter().any(|(k, exp)| same(k, &id) && *exp > now)
    }

    /// Ends the request's session, if any.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = Self::cookie(headers) {
            self.lock().sessions.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn token_bearer_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let token = load_or_create_token(dir.path()).unwrap();
        assert_eq!(token, load_or_create_token(dir.path()).unwrap());
        assert_eq!(token.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let s = Sessions::new(token.clone());
        let mut h = HeaderMap::new();
        assert!(!s.allows(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        assert!(s.allows(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert!(!s.allows(&h));
        assert!(s.login("nope").is_none());
        let cookie = s.login(&token).unwrap();
        let id = cookie.split(';').next().unwrap().to_string();
        let mut c = HeaderMap::new();
        c.insert(COOKIE, HeaderValue::from_str(&format!("other=1; {id}")).unwrap());
        assert!(s.allows(&c));
        s.end(&c);
        assert!(!s.allows(&c));
        for _ in 0..FAILED_LOGINS_PER_MINUTE {
            s.login("wrong");
        }
        assert!(!s.may_try());
    }
}
