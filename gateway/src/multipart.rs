//! Multipart uploads, kept in the namespace so a restarted (or killed) gateway can finish them:
//! each upload is a directory under the root's `.multipart-uploads`, holding an `object` entry
//! (bucket, key, content type and attributes of the object to be) and one entry per part. Complete
//! writes the object as a multi-part file (`bb:multi:`, a manifest of the parts' caps): no byte is
//! copied. Parts are files of their own, so a part uploaded twice simply replaces the first.

use std::collections::BTreeMap;

use blackbox_client::namespace::DirCap;
use blackbox_core::dir::Entry;
use blackbox_core::multi::Part;
use blackbox_core::LiteralCap;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Result};

use crate::body::drain;
use crate::ops::{attributes, content_headers, etag_of, timestamp, Gateway};
use crate::store::{attr, internal, object_entry, ETAG};

/// Most parts of one upload.
pub const MAX_PARTS: i32 = 10_000;
/// Smallest part but the last.
pub const MIN_PART: u64 = 5 << 20;
const BUCKET: &str = "s3:bucket";
const KEY: &str = "s3:key";

fn part_name(n: i32) -> String {
    format!("part-{n:05}")
}

impl Gateway {
    /// The directory of upload `id`, checked to be for `bucket`/`key`; with its `object` entry.
    async fn upload(&self, id: &str, bucket: &str, key: &str) -> S3Result<(DirCap, Entry)> {
        let store = &self.store;
        let valid = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let entry = if valid { store.entry(&store.uploads, id).await? } else { None };
        let entry = entry.ok_or_else(|| s3_error!(NoSuchUpload))?;
        let dir = blackbox_client::Session::child_dir(&store.uploads, &entry, id).map_err(internal)?;
        let object = store.entry(&dir, "object").await?.ok_or_else(|| s3_error!(NoSuchUpload))?;
        if attr(&object, BUCKET) != Some(bucket) || attr(&object, KEY) != Some(key) {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok((dir, object))
    }

    pub(crate) async fn mp_create(&self, i: CreateMultipartUploadInput) -> S3Result<CreateMultipartUploadOutput> {
        self.store.bucket(&i.bucket).await?;
        if i.key.is_empty() || i.key.len() > 1024 {
            return Err(s3_error!(KeyTooLongError));
        }
        crate::ops::check_metadata(i.metadata.as_ref())?;
        let id = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>());
        let headers =
            content_headers(&i.cache_control, &i.content_disposition, &i.content_encoding, &i.content_language);
        let mut attrs = attributes("", headers, i.metadata.as_ref());
        attrs.remove(ETAG);
        attrs.insert(BUCKET.into(), i.bucket.clone());
        attrs.insert(KEY.into(), i.key.clone());
        let ctype = i.content_type.as_ref().map(ToString::to_string);
        let dir = self.store.link_new_dir(&self.store.uploads, &id).await?;
        let object = object_entry(LiteralCap { data: Vec::new() }.to_string(), 0, ctype.as_deref(), attrs);
        self.store.create(&dir, "object", object).await?;
        Ok(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(id),
            ..Default::default()
        })
    }

    pub(crate) async fn mp_part(&self, mut i: UploadPartInput) -> S3Result<UploadPartOutput> {
        if !(1..=MAX_PARTS).contains(&i.part_number) {
            return Err(drain(i.body.take(), s3_error!(InvalidArgument, "part numbers are 1 to 10000")).await);
        }
        let dir = match self.upload(&i.upload_id, &i.bucket, &i.key).await {
            Ok((dir, _)) => dir,
            Err(e) => return Err(drain(i.body.take(), e).await),
        };
        let t0 = std::time::Instant::now();
        let body = self.spool_body(i.body, i.content_length.map(|l| l as u64)).await?;
        let (size, etag) = (body.size, body.etag.clone());
        if i.content_length.is_some_and(|l| l as u64 != size) {
            return Err(s3_error!(IncompleteBody));
        }
        let t1 = std::time::Instant::now();
        let cap = self.store_body(&body).await?;
        drop(body);
        let t2 = std::time::Instant::now();
        let attrs = BTreeMap::from([(ETAG.to_string(), etag.clone())]);
        self.store.set(&dir, &part_name(i.part_number), Some(object_entry(cap, size, None, attrs))).await?;
        let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_millis() as u64;
        let (body_ms, store_ms, record_ms) = (ms(t0, t1), ms(t1, t2), ms(t2, std::time::Instant::now()));
        tracing::debug!(part = i.part_number, body_ms, store_ms, record_ms, "part stored");
        Ok(UploadPartOutput { e_tag: Some(ETag::Strong(etag)), ..Default::default() })
    }

    pub(crate) async fn mp_part_copy(&self, i: UploadPartCopyInput, src: Entry) -> S3Result<UploadPartCopyOutput> {
        if !(1..=MAX_PARTS).contains(&i.part_number) {
            return Err(s3_error!(InvalidArgument, "part numbers are 1 to 10000"));
        }
        let (dir, _) = self.upload(&i.upload_id, &i.bucket, &i.key).await?;
        let part = match i.copy_source_range.as_deref() {
            // The whole object, of a single stored file: the part names the same file.
            None if !src.cap.starts_with("bb:multi:") => src,
            range => {
                let range = match range {
                    Some(r) => {
                        Range::parse(r).map_err(|_| s3_error!(InvalidArgument, "bad x-amz-copy-source-range"))?
                    }
                    None => Range::Int { first: 0, last: None },
                };
                let range = range.check(src.size).map_err(|_| s3_error!(InvalidRange))?;
                let len = range.end - range.start;
                let body = self.spool_body(Some(self.body(&src, range)), Some(len)).await?;
                let cap = self.store_body(&body).await?;
                object_entry(cap, body.size, None, BTreeMap::from([(ETAG.to_string(), body.etag.clone())]))
            }
        };
        let result = CopyPartResult {
            e_tag: etag_of(&part),
            last_modified: Some(timestamp(part.mtime_ns)),
            ..Default::default()
        };
        self.store.set(&dir, &part_name(i.part_number), Some(part)).await?;
        Ok(UploadPartCopyOutput { copy_part_result: Some(result), ..Default::default() })
    }

    pub(crate) async fn mp_complete(&self, i: CompleteMultipartUploadInput) -> S3Result<CompleteMultipartUploadOutput> {
        let (dir, object) = self.upload(&i.upload_id, &i.bucket, &i.key).await?;
        let asked = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if asked.is_empty() {
            return Err(s3_error!(MalformedXML, "no parts"));
        }
        let numbers: Vec<i32> = asked.iter().map(|p| p.part_number.unwrap_or(0)).collect();
        if numbers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(s3_error!(InvalidPartOrder));
        }
        if asked.len() > MAX_PARTS as usize {
            return Err(s3_error!(MalformedXML, "more than 10000 parts"));
        }
        let mut parts = Vec::with_capacity(asked.len());
        let mut md5s = Md5::new();
        for (n, p) in asked.iter().enumerate() {
            let number = p.part_number.ok_or_else(|| s3_error!(InvalidPart))?;
            let stored = self.store.entry(&dir, &part_name(number)).await?.ok_or_else(|| s3_error!(InvalidPart))?;
            let tag = attr(&stored, ETAG).unwrap_or_default();
            if p.e_tag.as_ref().is_none_or(|t| t.value() != tag) {
                return Err(s3_error!(InvalidPart));
            }
            if n + 1 < asked.len() && stored.size < MIN_PART {
                return Err(s3_error!(EntityTooSmall));
            }
            md5s.update(data_encoding::HEXLOWER.decode(tag.as_bytes()).unwrap_or_default());
            parts.push(Part { size: stored.size, cap: stored.cap });
        }
        let etag = format!("{}-{}", data_encoding::HEXLOWER.encode(&md5s.finalize()), parts.len());
        let total: u64 = parts.iter().map(|p| p.size).sum();
        let client = &self.store.session.client;
        let multi = client.store_multi(parts, &self.store.opts).await.map_err(internal)?;
        let mut entry = object;
        entry.cap = multi;
        entry.size = total;
        entry.mtime_ns = blackbox_client::namespace::now_ns();
        entry.metadata.retain(|(k, _)| k != BUCKET && k != KEY);
        entry.metadata.push((ETAG.into(), etag.clone()));
        entry.metadata.sort();
        let bucket = self.store.bucket(&i.bucket).await?;
        self.store.set(&bucket, &i.key, Some(entry)).await?;
        // The parts stay stored (the object names them); only the upload's record goes.
        self.store.set(&self.store.uploads, &i.upload_id, None).await?;
        Ok(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", i.bucket, i.key)),
            ..Default::default()
        })
    }

    pub(crate) async fn mp_abort(&self, i: AbortMultipartUploadInput) -> S3Result<AbortMultipartUploadOutput> {
        self.upload(&i.upload_id, &i.bucket, &i.key).await?;
        self.store.set(&self.store.uploads, &i.upload_id, None).await?;
        Ok(AbortMultipartUploadOutput::default())
    }

    pub(crate) async fn mp_list_parts(&self, i: ListPartsInput) -> S3Result<ListPartsOutput> {
        let (dir, _) = self.upload(&i.upload_id, &i.bucket, &i.key).await?;
        let max = i.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
        let after = part_name(i.part_number_marker.unwrap_or(0));
        let listed = self.store.list(&dir, Some(&after), max + 1).await?;
        let mut parts: Vec<s3s::dto::Part> = listed
            .iter()
            .filter_map(|(name, e)| {
                let number = name.strip_prefix("part-")?.parse().ok()?;
                Some(s3s::dto::Part {
                    part_number: Some(number),
                    size: Some(e.size as i64),
                    e_tag: etag_of(e),
                    last_modified: Some(timestamp(e.mtime_ns)),
                    ..Default::default()
                })
            })
            .collect();
        let truncated = parts.len() > max;
        parts.truncate(max);
        Ok(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            next_part_number_marker: parts.last().and_then(|p| p.part_number).filter(|_| truncated),
            part_number_marker: i.part_number_marker,
            parts: Some(parts),
            ..Default::default()
        })
    }

    pub(crate) async fn mp_list_uploads(&self, i: ListMultipartUploadsInput) -> S3Result<ListMultipartUploadsOutput> {
        self.store.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let mut uploads = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(&self.store.uploads, after.as_deref(), 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (id, e) in page {
                let Ok(dir) = blackbox_client::Session::child_dir(&self.store.uploads, &e, &id) else { continue };
                let Some(object) = self.store.entry(&dir, "object").await? else { continue };
                let key = attr(&object, KEY).unwrap_or_default().to_string();
                if attr(&object, BUCKET) == Some(i.bucket.as_str()) && key.starts_with(&prefix) {
                    let initiated = Some(timestamp(object.mtime_ns));
                    uploads.push(MultipartUpload {
                        key: Some(key),
                        upload_id: Some(id),
                        initiated,
                        ..Default::default()
                    });
                }
            }
        }
        uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        Ok(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: i.prefix,
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..Default::default()
        })
    }
}

impl crate::store::Store {
    /// Removes uploads started more than `max_age_secs` ago; returns how many.
    pub async fn collect_abandoned(&self, max_age_secs: u64) -> S3Result<usize> {
        let cutoff = blackbox_util::now_secs().saturating_sub(max_age_secs).saturating_mul(1_000_000_000);
        let mut old = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list(&self.uploads, after.as_deref(), 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            old.extend(page.into_iter().filter(|(_, e)| e.mtime_ns < cutoff).map(|(id, _)| id));
        }
        for id in &old {
            self.set(&self.uploads, id, None).await?;
        }
        Ok(old.len())
    }
}
