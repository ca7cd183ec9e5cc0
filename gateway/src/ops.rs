//! The S3 operations over the [`Store`]: buckets, objects (streamed both ways, ETag = MD5),
//! conditional and ranged reads, and listings as range scans of a bucket's sorted map.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use blackbox_core::dir::Entry;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use crate::body::drain;
use crate::list::{list_page, Page};
use crate::store::{attr, object_entry, Store, CONTENT_HEADERS, ETAG, USER_META};

/// The gateway: S3 over the grid.
pub struct Gateway {
    pub(crate) store: Arc<Store>,
    keys: crate::auth::Keys,
    region: String,
    pub(crate) max_object_size: u64,
    pub(crate) spool: std::path::PathBuf,
    /// Grid uploads running at once (memory: each holds its encoding buffers).
    pub(crate) uploads: tokio::sync::Semaphore,
    /// MiB of request bodies held in memory at once.
    pub(crate) memory: Arc<tokio::sync::Semaphore>,
}

impl Gateway {
    /// A gateway over `store`; request bodies are spooled under `spool` (the client data dir).
    pub fn new(
        store: Arc<Store>,
        keys: crate::auth::Keys,
        cfg: &crate::GatewayConfig,
        spool: std::path::PathBuf,
    ) -> Self {
        let (region, max_object_size) = (cfg.region.clone(), cfg.max_object_size);
        let uploads = tokio::sync::Semaphore::new(cfg.max_concurrent_uploads.max(1));
        let memory = Arc::new(tokio::sync::Semaphore::new(crate::body::MEMORY_BUDGET_MIB));
        Self { store, keys, region, max_object_size, spool, uploads, memory }
    }
}

/// The S3 output `$ty` describing the object entry `$e` (its type, content headers, ETag, time and
/// user metadata), with the fields in braces set as well.
macro_rules! described {
    ($ty:ident, $e:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let e: &Entry = $e;
        $ty {
            accept_ranges: Some("bytes".into()),
            content_type: e.content_type.parse().ok().filter(|_| !e.content_type.is_empty()),
            cache_control: attr(e, CONTENT_HEADERS[0]).map(Into::into),
            content_disposition: attr(e, CONTENT_HEADERS[1]).map(Into::into),
            content_encoding: attr(e, CONTENT_HEADERS[2]).map(Into::into),
            content_language: attr(e, CONTENT_HEADERS[3]).map(Into::into),
            e_tag: etag_of(e),
            last_modified: Some(timestamp(e.mtime_ns)),
            metadata: user_metadata(e),
            $($field: $value,)*
            ..Default::default()
        }
    }};
}

pub(crate) fn timestamp(ns: u64) -> Timestamp {
    Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
}

pub(crate) fn etag_of(e: &Entry) -> Option<ETag> {
    attr(e, ETAG).map(|t| ETag::Strong(t.to_string()))
}

fn user_metadata(e: &Entry) -> Option<Metadata> {
    let m: Metadata =
        e.metadata.iter().filter_map(|(k, v)| Some((k.strip_prefix(USER_META)?.to_string(), v.clone()))).collect();
    (!m.is_empty()).then_some(m)
}

/// Whole seconds: HTTP dates carry no more.
fn secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// Checks If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since (RFC 9110 order).
fn preconditions(
    e: &Entry,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    modified_since: Option<&Timestamp>,
    unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let tag = etag_of(e);
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(t) => tag.as_ref().is_some_and(|mine| mine.value() == t.value()),
    };
    let mtime = (e.mtime_ns / 1_000_000_000) as i64;
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(PreconditionFailed));
        }
    } else if unmodified_since.is_some_and(|t| mtime > secs(t)) {
        return Err(s3_error!(PreconditionFailed));
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(s3_error!(NotModified));
        }
    } else if modified_since.is_some_and(|t| mtime <= secs(t)) {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}

/// The four content headers kept with an object, by name.
pub(crate) fn content_headers<'a>(
    cache: &'a Option<String>,
    disposition: &'a Option<String>,
    encoding: &'a Option<String>,
    language: &'a Option<String>,
) -> [(&'static str, Option<&'a String>); 4] {
    [
        (CONTENT_HEADERS[0], cache.as_ref()),
        (CONTENT_HEADERS[1], disposition.as_ref()),
        (CONTENT_HEADERS[2], encoding.as_ref()),
        (CONTENT_HEADERS[3], language.as_ref()),
    ]
}

/// User metadata over S3's limit (2 KiB of names and values) is refused, as S3 does.
pub(crate) fn check_metadata(meta: Option<&Metadata>) -> S3Result<()> {
    let bytes: usize = meta.into_iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_USER_METADATA {
        return Err(s3_error!(MetadataTooLarge, "user metadata is limited to 2 KiB"));
    }
    Ok(())
}

/// Bytes of user metadata names and values an object may carry.
const MAX_USER_METADATA: usize = 2 << 10;

/// The S3 attributes of a PUT: content headers and user metadata, as entry metadata.
pub(crate) fn attributes(
    etag: &str,
    headers: [(&str, Option<&String>); 4],
    meta: Option<&Metadata>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(ETAG.to_string(), etag.to_string());
    for (k, v) in headers {
        if let Some(v) = v {
            out.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in meta.into_iter().flatten() {
        out.insert(format!("{USER_META}{}", k.to_ascii_lowercase()), v.clone());
    }
    out
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let key = req
            .credentials
            .as_ref()
            .and_then(|c| self.keys.get(&c.access_key))
            .ok_or_else(|| s3_error!(AccessDenied))?;
        let buckets = self.store.list_buckets().await?;
        let buckets = buckets
            .into_iter()
            .filter(|(name, _)| key.allows(name, crate::config::Need::Read))
            .map(|(name, ns)| Bucket { name: Some(name), creation_date: Some(timestamp(ns)), ..Default::default() })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let name = req.input.bucket;
        self.store.create_bucket(&name).await?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{name}")) }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.store.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(self.region.clone()), ..Default::default() }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.store.delete_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.store.bucket(&req.input.bucket).await?;
        let constraint = (self.region != "us-east-1").then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint: constraint }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let mut i = req.input;
        let dir = match self.store.bucket(&i.bucket).await {
            Ok(d) => d,
            Err(e) => return Err(drain(i.body.take(), e).await),
        };
        if i.key.len() > 1024 || i.key.is_empty() {
            return Err(drain(i.body.take(), s3_error!(KeyTooLongError)).await);
        }
        if i.content_length.is_some_and(|l| l < 0 || l as u64 > self.max_object_size) {
            return Err(drain(i.body.take(), s3_error!(EntityTooLarge)).await);
        }
        if let Err(e) = check_metadata(i.metadata.as_ref()) {
            return Err(drain(i.body.take(), e).await);
        }
        let body = self.spool_body(i.body, i.content_length.map(|l| l as u64)).await?;
        let (size, etag) = (body.size, body.etag.clone());
        if i.content_length.is_some_and(|l| l as u64 != size) {
            return Err(s3_error!(IncompleteBody));
        }
        let cap = self.store_body(&body).await?;
        drop(body);
        let headers =
            content_headers(&i.cache_control, &i.content_disposition, &i.content_encoding, &i.content_language);
        let attrs = attributes(&etag, headers, i.metadata.as_ref());
        let ctype = i.content_type.as_ref().map(ToString::to_string);
        self.store.set(&dir, &i.key, Some(object_entry(cap, size, ctype.as_deref(), attrs))).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            size: Some(size as i64),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        let dir = self.store.bucket(&i.bucket).await?;
        let e = self.store.object(&dir, &i.key).await?;
        let (m, n) = (i.if_modified_since.as_ref(), i.if_unmodified_since.as_ref());
        preconditions(&e, i.if_match.as_ref(), i.if_none_match.as_ref(), m, n)?;
        let whole = 0..e.size;
        let range = match &i.range {
            Some(r) => r.check(e.size).map_err(|_| s3_error!(InvalidRange))?,
            None => whole.clone(),
        };
        let content_range =
            i.range.is_some().then(|| format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), e.size));
        let out = described!(GetObjectOutput, &e, {
            body: Some(self.body(&e, range.clone())),
            content_length: Some((range.end - range.start) as i64),
            content_range: content_range,
        });
        Ok(S3Response::new(out))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        let dir = self.store.bucket(&i.bucket).await?;
        let e = self.store.object(&dir, &i.key).await?;
        let (m, n) = (i.if_modified_since.as_ref(), i.if_unmodified_since.as_ref());
        preconditions(&e, i.if_match.as_ref(), i.if_none_match.as_ref(), m, n)?;
        let out = described!(HeadObjectOutput, &e, { content_length: Some(e.size as i64) });
        Ok(S3Response::new(out))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let dir = self.store.bucket(&req.input.bucket).await?;
        self.store.set(&dir, &req.input.key, None).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        if i.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per DeleteObjects"));
        }
        let dir = self.store.bucket(&i.bucket).await?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        // All at once: the bucket's group commit removes them in one or two directory writes.
        let results =
            futures::future::join_all(i.delete.objects.iter().map(|o| self.store.set(&dir, &o.key, None))).await;
        for (o, r) in i.delete.objects.into_iter().zip(results) {
            match r {
                Ok(()) => deleted.push(DeletedObject { key: Some(o.key), ..Default::default() }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(o.key),
                    message: e.message().map(ToString::to_string),
                    ..Default::default()
                }),
            }
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let key = req
            .credentials
            .as_ref()
            .and_then(|c| self.keys.get(&c.access_key))
            .ok_or_else(|| s3_error!(AccessDenied))?;
        let i = req.input;
        let CopySource::Bucket { bucket: src_bucket, key: src_key, .. } = &i.copy_source else {
            return Err(s3_error!(NotImplemented, "copy from an access point"));
        };
        if !key.allows(src_bucket, crate::config::Need::Read) {
            return Err(s3_error!(AccessDenied));
        }
        let src_dir = self.store.bucket(src_bucket).await?;
        let mut e = self.store.object(&src_dir, src_key).await?;
        let (m, n) = (i.copy_source_if_modified_since.as_ref(), i.copy_source_if_unmodified_since.as_ref());
        preconditions(&e, i.copy_source_if_match.as_ref(), i.copy_source_if_none_match.as_ref(), m, n)
            .map_err(|_| s3_error!(PreconditionFailed))?;
        let replace = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if replace {
            check_metadata(i.metadata.as_ref())?;
            let etag = attr(&e, ETAG).unwrap_or_default().to_string();
            let headers =
                content_headers(&i.cache_control, &i.content_disposition, &i.content_encoding, &i.content_language);
            let attrs = attributes(&etag, headers, i.metadata.as_ref());
            let ctype = i.content_type.as_ref().map(ToString::to_string);
            e = object_entry(e.cap, e.size, ctype.as_deref(), attrs);
        } else if src_bucket.as_ref() == i.bucket && src_key.as_ref() == i.key {
            return Err(s3_error!(InvalidRequest, "copying an object to itself needs the REPLACE metadata directive"));
        }
        // Content is immutable: the copy names the same stored file.
        e.mtime_ns = blackbox_client::namespace::now_ns();
        let dir = self.store.bucket(&i.bucket).await?;
        self.store.set(&dir, &i.key, Some(e.clone())).await?;
        let result =
            CopyObjectResult { e_tag: etag_of(&e), last_modified: Some(timestamp(e.mtime_ns)), ..Default::default() };
        Ok(S3Response::new(CopyObjectOutput { copy_object_result: Some(result), ..Default::default() }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        Ok(S3Response::new(self.mp_create(req.input).await?))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        Ok(S3Response::new(self.mp_part(req.input).await?))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let key = req
            .credentials
            .as_ref()
            .and_then(|c| self.keys.get(&c.access_key))
            .ok_or_else(|| s3_error!(AccessDenied))?;
        let CopySource::Bucket { bucket, key: src_key, .. } = &req.input.copy_source else {
            return Err(s3_error!(NotImplemented, "copy from an access point"));
        };
        if !key.allows(bucket, crate::config::Need::Read) {
            return Err(s3_error!(AccessDenied));
        }
        let src = self.store.object(&self.store.bucket(bucket).await?, src_key).await?;
        Ok(S3Response::new(self.mp_part_copy(req.input, src).await?))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        Ok(S3Response::new(self.mp_complete(req.input).await?))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        Ok(S3Response::new(self.mp_abort(req.input).await?))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        Ok(S3Response::new(self.mp_list_parts(req.input).await?))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        Ok(S3Response::new(self.mp_list_uploads(req.input).await?))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let dir = self.store.bucket(&i.bucket).await?;
        let token = match &i.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => None,
        };
        let after = token.clone().or(i.start_after.clone());
        let max = i.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let page = list_page(&self.store, &dir, i.prefix.as_deref(), i.delimiter.as_deref(), after, max).await?;
        let url = i.encoding_type.as_ref().is_some_and(|t| t.as_str() == "url");
        let key_count = (page.objects.len() + page.prefixes.len()) as i32;
        let next = page.next.as_ref().map(|n| encode_token(n));
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(i.prefix.unwrap_or_default()).map(|p| encode_key(&p, url)),
            delimiter: i.delimiter.map(|d| encode_key(&d, url)),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: i.continuation_token,
            next_continuation_token: next,
            is_truncated: Some(page.next.is_some()),
            start_after: i.start_after.map(|s| encode_key(&s, url)),
            encoding_type: i.encoding_type,
            contents: Some(objects(&page, url)),
            common_prefixes: Some(prefixes(&page, url)),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let dir = self.store.bucket(&i.bucket).await?;
        let max = i.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let page =
            list_page(&self.store, &dir, i.prefix.as_deref(), i.delimiter.as_deref(), i.marker.clone(), max).await?;
        let url = i.encoding_type.as_ref().is_some_and(|t| t.as_str() == "url");
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(i.prefix.unwrap_or_default()).map(|p| encode_key(&p, url)),
            delimiter: i.delimiter.clone().map(|d| encode_key(&d, url)),
            marker: Some(i.marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(page.next.is_some()),
            next_marker: page.next.clone().filter(|_| i.delimiter.is_some()).map(|n| encode_key(&n, url)),
            encoding_type: i.encoding_type,
            contents: Some(objects(&page, url)),
            common_prefixes: Some(prefixes(&page, url)),
            ..Default::default()
        }))
    }
}

fn objects(page: &Page, url: bool) -> Vec<Object> {
    page.objects
        .iter()
        .map(|(key, e)| Object {
            key: Some(encode_key(key, url)),
            size: Some(e.size as i64),
            e_tag: etag_of(e),
            last_modified: Some(timestamp(e.mtime_ns)),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            ..Default::default()
        })
        .collect()
}

fn prefixes(page: &Page, url: bool) -> Vec<CommonPrefix> {
    page.prefixes.iter().map(|p| CommonPrefix { prefix: Some(encode_key(p, url)) }).collect()
}

/// A key as listed: percent-encoded with `encoding-type=url`.
fn encode_key(key: &str, url: bool) -> String {
    if !url {
        return key.to_string();
    }
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn encode_token(key: &str) -> String {
    data_encoding::BASE64URL_NOPAD.encode(key.as_bytes())
}

fn decode_token(t: &str) -> S3Result<String> {
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(t.as_bytes())
        .map_err(|_| s3_error!(InvalidArgument, "bad continuation token"))?;
    String::from_utf8(bytes).map_err(|_| s3_error!(InvalidArgument, "bad continuation token"))
}
