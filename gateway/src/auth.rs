//! Who may do what: SigV4 secrets by access key (s3s checks the signatures, clock skew and
//! presigned expiry), and each operation checked against the buckets the key may use.

use std::collections::HashMap;
use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

use crate::config::{KeyConfig, Need};

/// The configured keys, by access key id, and the buckets anyone may read.
#[derive(Clone)]
pub struct Keys(Arc<HashMap<String, KeyConfig>>, Arc<Vec<String>>);

impl Keys {
    /// The keys of the config.
    pub fn new(keys: &[KeyConfig], public_read: &[String]) -> Self {
        let keys = keys.iter().map(|k| (k.access_key_id.clone(), k.clone())).collect();
        Self(Arc::new(keys), Arc::new(public_read.to_vec()))
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&KeyConfig> {
        self.0.get(id)
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.get(access_key) {
            Some(k) => Ok(SecretKey::from(k.secret_access_key.as_str())),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

/// What an operation needs of its bucket (`None`: no bucket, e.g. ListBuckets).
fn need_of(op: &str) -> Need {
    match op {
        "CreateBucket" | "DeleteBucket" => Need::Owner,
        "PutObject"
        | "DeleteObject"
        | "DeleteObjects"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload" => Need::Write,
        _ => Need::Read,
    }
}

#[async_trait::async_trait]
impl S3Access for Keys {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(creds) = cx.credentials() else {
            // Anonymous: only reads of objects and listings of a public-read bucket.
            let public = match cx.s3_path() {
                S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => self.1.iter().any(|b| **b == **bucket),
                S3Path::Root => false,
            };
            let read = matches!(
                cx.s3_op().name(),
                "GetObject" | "HeadObject" | "ListObjects" | "ListObjectsV2" | "HeadBucket"
            );
            return if public && read { Ok(()) } else { Err(s3_error!(AccessDenied, "Signature is required")) };
        };
        let key = self.0.get(&creds.access_key).ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let bucket = match cx.s3_path() {
            S3Path::Root => return Ok(()),
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket.to_string(),
        };
        if key.allows(&bucket, need_of(cx.s3_op().name())) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied))
        }
    }
}
