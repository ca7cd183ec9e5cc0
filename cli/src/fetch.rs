//! The node's reader of job inputs: a client of its own (from `[compute] fetch_client`), opened on
//! first use, that reads files from the grid and verifies every block, paying with its wallet.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use blackbox_client::Session;
use blackbox_storage_node::jobs::{FetchFuture, InputFetcher};
use tokio::sync::OnceCell;

/// Reads at most this much per request to the grid.
const PIECE: u64 = 8 << 20;

/// Job inputs read through a client session.
pub struct GridFetcher {
    config: PathBuf,
    session: Arc<OnceCell<Session>>,
}

impl GridFetcher {
    /// A fetcher over the client config at `config`.
    pub fn new(config: PathBuf) -> Self {
        Self { config, session: Arc::default() }
    }
}

impl InputFetcher for GridFetcher {
    fn fetch(&self, cap: String, dest: PathBuf, max: u64) -> FetchFuture {
        let (config, cell) = (self.config.clone(), self.session.clone());
        Box::pin(async move {
            let s = cell.get_or_try_init(|| Session::open(&config)).await.map_err(|e| format!("fetch client: {e}"))?;
            let f = s.client.open_reader(&cap).await.map_err(|e| e.to_string())?;
            if f.size() > max {
                return Err(format!("input of {} bytes is over this node's limit of {max} left", f.size()));
            }
            let mut out = std::io::BufWriter::new(std::fs::File::create(&dest).map_err(|e| e.to_string())?);
            let mut at = 0;
            while at < f.size() {
                let piece = s.client.read_at(&f, at, PIECE).await.map_err(|e| e.to_string())?;
                if piece.is_empty() {
                    return Err("the file ended early".into());
                }
                out.write_all(&piece).map_err(|e| e.to_string())?;
                at += piece.len() as u64;
            }
            out.flush().map_err(|e| e.to_string())?;
            s.record_outcomes();
            Ok(at)
        })
    }
}
