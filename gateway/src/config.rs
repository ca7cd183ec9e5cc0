//! `gateway.toml`: where the gateway listens, which client it runs, where its buckets live, its
//! limits, and the access keys with the buckets each may use.

use std::path::{Path, PathBuf};

use blackbox_util::config::{load_config, relative_to, ConfigError};
use serde::{Deserialize, Serialize};

/// The gateway's configuration. Every field has a default except the keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// `host:port` to listen on (HTTP).
    pub listen: String,
    /// The region answered to GetBucketLocation and expected in signatures.
    pub region: String,
    /// The client config to run with (relative: to this file).
    pub client_config: PathBuf,
    /// Namespace directory whose entries are the buckets (created if missing).
    pub root: String,
    /// Largest object, in bytes (S3: 5 GiB).
    pub max_object_size: u64,
    /// Requests served at once; more wait.
    pub max_concurrent_requests: usize,
    /// Bodies uploaded to the grid at once (each holds its encoding buffers); more wait.
    pub max_concurrent_uploads: usize,
    /// Multipart uploads neither completed nor aborted after this many seconds are removed.
    pub multipart_max_age_secs: u64,
    /// Buckets anyone may read without signing (listing and GET/HEAD of objects).
    pub public_read: Vec<String>,
    /// Largest XML request body (CompleteMultipartUpload, DeleteObjects), in bytes.
    pub max_xml_body: u64,
    /// Largest request header section (names, values and line ends), in bytes (S3: 8 KiB).
    pub max_header_bytes: usize,
    /// Open client connections at once; more wait to be accepted.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers before the connection is closed.
    pub header_timeout_secs: u64,
    /// Access keys.
    pub keys: Vec<KeyConfig>,
}

/// One access key and the buckets it may use (`"*"`: every bucket).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyConfig {
    /// The access key id clients sign with.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// Buckets it owns: may create and delete them, read and write their objects.
    pub owner: Vec<String>,
    /// Buckets whose objects it may read and write.
    pub write: Vec<String>,
    /// Buckets whose objects it may read.
    pub read: Vec<String>,
}

/// What a request needs of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// List and read objects.
    Read,
    /// Also write and delete objects.
    Write,
    /// Also create and delete the bucket.
    Owner,
}

fn names(list: &[String], bucket: &str) -> bool {
    list.iter().any(|b| b == "*" || b == bucket)
}

impl KeyConfig {
    /// Whether this key may do what `need` says to `bucket`.
    pub fn allows(&self, bucket: &str, need: Need) -> bool {
        match need {
            Need::Owner => names(&self.owner, bucket),
            Need::Write => names(&self.owner, bucket) || names(&self.write, bucket),
            Need::Read => names(&self.owner, bucket) || names(&self.write, bucket) || names(&self.read, bucket),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            client_config: PathBuf::from("client.toml"),
            root: "/s3".into(),
            max_object_size: 5 << 30,
            max_concurrent_requests: 256,
            max_concurrent_uploads: 4,
            multipart_max_age_secs: 7 * 86_400,
            public_read: Vec::new(),
            max_xml_body: 2 << 20,
            max_header_bytes: 8 << 10,
            max_connections: 1024,
            header_timeout_secs: 30,
            keys: Vec::new(),
        }
    }
}

impl GatewayConfig {
    /// Loads `path`; relative paths in it are taken from its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: GatewayConfig = load_config(path)?;
        cfg.client_config = relative_to(path, &cfg.client_config);
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_allow_what_they_name() {
        let k = KeyConfig {
            owner: vec!["a".into()],
            write: vec!["b".into()],
            read: vec!["*".into()],
            ..Default::default()
        };
        assert!(k.allows("a", Need::Owner) && k.allows("b", Need::Write) && k.allows("z", Need::Read));
        assert!(!k.allows("b", Need::Owner) && !k.allows("z", Need::Write));
        let text =
            "listen = \"127.0.0.1:1\"\n[[keys]]\naccess_key_id = \"x\"\nsecret_access_key = \"y\"\nowner = [\"*\"]\n";
        let cfg: GatewayConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.keys.len(), 1);
        assert_eq!(cfg.root, "/s3");
        assert!(toml::from_str::<GatewayConfig>("bogus = 1").is_err());
    }
}
