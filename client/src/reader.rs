//! Random reads of one file: its holders located and its header verified once, then any byte
//! range fetched segment by segment (a drive reads a file in many small pieces).

use blackbox_core::{LiteralCap, ReadCap, ShareHeader};
use blackbox_net::Transport;

use crate::{Client, ClientError, NodeRef};

/// A file opened for reading.
pub struct FileReader {
    size: u64,
    kind: Kind,
}

enum Kind {
    Literal(Vec<u8>),
    Chk {
        cap: ReadCap,
        header: ShareHeader,
        holders: Vec<(u8, NodeRef)>,
    },
    /// Parts: where each starts, its size and cap, and the parts opened so far (each part is
    /// located once however many reads it serves).
    Multi(Vec<(u64, u64, String)>, std::sync::Mutex<std::collections::HashMap<usize, std::sync::Arc<FileReader>>>),
}

impl FileReader {
    /// Bytes in the file.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<T: Transport> Client<T> {
    /// Opens the file `cap` names (immutable, literal or multi-part) for reads.
    pub async fn open_reader(&self, cap: &str) -> Result<FileReader, ClientError> {
        if let Ok(l) = cap.parse::<LiteralCap>() {
            return Ok(FileReader { size: l.data.len() as u64, kind: Kind::Literal(l.data) });
        }
        if let Ok(r) = cap.parse::<ReadCap>() {
            let (header, holders) = self.locate_file(&r).await?;
            return Ok(FileReader { size: r.size, kind: Kind::Chk { cap: r, header, holders } });
        }
        let m = self.manifest(&cap.parse()?).await?;
        let mut at = 0u64;
        let mut parts = Vec::with_capacity(m.parts.len());
        for p in &m.parts {
            parts.push((at, p.size, p.cap.clone()));
            at += p.size;
        }
        Ok(FileReader { size: at, kind: Kind::Multi(parts, Default::default()) })
    }

    /// Bytes `offset..offset+len` of the file (fewer at its end), verified.
    pub async fn read_at(&self, f: &FileReader, offset: u64, len: u64) -> Result<Vec<u8>, ClientError> {
        let end = offset.saturating_add(len).min(f.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        match &f.kind {
            Kind::Literal(data) => out.extend_from_slice(&data[offset as usize..end as usize]),
            Kind::Chk { cap, header, holders } => {
                let si = cap.verify_cap().storage_index;
                let sink = |b: &[u8]| {
                    out.extend_from_slice(b);
                    Ok(())
                };
                let range = (offset, end - offset, 0);
                if self.download_from(si, header, &cap.key, holders.clone(), range, sink).await.is_err() {
                    // The holders found at open may be gone: look again, once.
                    out.clear();
                    let (header, holders) = self.locate_file(cap).await?;
                    let sink = |b: &[u8]| {
                        out.extend_from_slice(b);
                        Ok(())
                    };
                    self.download_from(si, &header, &cap.key, holders, range, sink).await?;
                }
            }
            Kind::Multi(parts, opened) => {
                for (i, (start, size, cap)) in parts.iter().enumerate() {
                    let (from, to) = (offset.max(*start), end.min(start + size));
                    if from >= to {
                        continue;
                    }
                    let known = opened.lock().unwrap_or_else(|p| p.into_inner()).get(&i).cloned();
                    let part = match known {
                        Some(p) => p,
                        None => {
                            let p = std::sync::Arc::new(Box::pin(self.open_reader(cap)).await?);
                            opened.lock().unwrap_or_else(|p| p.into_inner()).insert(i, p.clone());
                            p
                        }
                    };
                    out.extend(Box::pin(self.read_at(&part, from - start, to - from)).await?);
                }
            }
        }
        Ok(out)
    }
}
