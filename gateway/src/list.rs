//! Listing objects: a range scan of the bucket's sorted map from the marker, keeping the keys
//! under the prefix and folding those with a delimiter after the prefix into common prefixes.

use blackbox_client::namespace::DirCap;
use blackbox_core::dir::Entry;
use s3s::S3Result;

use crate::store::Store;

/// Entries read from the bucket per scan step.
const SCAN: usize = 1000;

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    /// Objects, in key order.
    pub objects: Vec<(String, Entry)>,
    /// Common prefixes, in order.
    pub prefixes: Vec<String>,
    /// When truncated: the last key or prefix returned (where the next page starts).
    pub next: Option<String>,
}

/// Up to `max` objects and common prefixes after `after` (exclusive) under `prefix`.
pub async fn list_page(
    store: &Store,
    dir: &DirCap,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    after: Option<String>,
    max: usize,
) -> S3Result<Page> {
    let prefix = prefix.unwrap_or("");
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut page = Page::default();
    // A marker that is a common prefix: its keys were listed (as that prefix) already.
    let mut skip = after.clone().filter(|a| delimiter.is_some_and(|d| a.starts_with(prefix) && a.ends_with(d)));
    let mut start = after.filter(|a| a.as_str() >= prefix);
    if start.is_none() && !prefix.is_empty() {
        // The scan is exclusive of its start: look the prefix itself up as a key first.
        if let Ok(e) = store.object(dir, prefix).await {
            page.objects.push((prefix.to_string(), e));
        }
        start = Some(prefix.to_string());
    }
    let mut count = page.objects.len();
    loop {
        let batch = store.list(dir, start.as_deref(), SCAN).await?;
        let full = batch.len() == SCAN;
        start = batch.last().map(|(k, _)| k.clone());
        for (key, e) in batch {
            if !key.starts_with(prefix) {
                if key.as_str() > prefix {
                    return Ok(page);
                }
                continue;
            }
            if skip.as_ref().is_some_and(|s| key.starts_with(s.as_str())) {
                continue;
            }
            let folded = delimiter
                .and_then(|d| key[prefix.len()..].find(d).map(|i| key[..prefix.len() + i + d.len()].to_string()));
            if count == max {
                page.next = page.prefixes.last().max(page.objects.last().map(|(k, _)| k)).cloned();
                return Ok(page);
            }
            match folded {
                Some(cp) => {
                    skip = Some(cp.clone());
                    page.prefixes.push(cp);
                }
                None => page.objects.push((key, e)),
            }
            count += 1;
        }
        if !full {
            return Ok(page);
        }
    }
}
