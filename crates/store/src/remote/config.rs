//! The configuration of a [`RemoteStore`](super::RemoteStore): the schemes it serves,
//! its knobs, and the check of the per-scheme option keys.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use object_store::ClientConfigKey;
use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;

use crate::error::{Error, Result};

/// The URI schemes served by [`RemoteStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `s3://bucket/key` (also S3-compatible servers through `aws_endpoint`).
    S3,
    /// `gs://bucket/key`.
    Gcs,
    /// `az://container/key` (the account from `azure_storage_account_name`).
    Azure,
    /// `http://host[:port]/path`.
    Http,
    /// `https://host[:port]/path`.
    Https,
}

impl Scheme {
    /// Every scheme, for iteration in tests and docs.
    pub const ALL: [Scheme; 5] =
        [Scheme::S3, Scheme::Gcs, Scheme::Azure, Scheme::Http, Scheme::Https];

    /// The scheme of `uri` (`s3://...`), or `None` for paths and other schemes.
    pub fn of(uri: &str) -> Option<Scheme> {
        let (scheme, _) = uri.split_once("://")?;
        Some(match scheme {
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "azure" | "abfs" | "abfss" => Scheme::Azure,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        })
    }

    /// The key of this scheme's entry in [`RemoteConfig::options`]: `s3`, `gs`, `az`, or
    /// `http` (shared by `http` and `https`).
    pub fn options_key(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
            Scheme::Http | Scheme::Https => "http",
        }
    }
}

/// Configuration of a [`RemoteStore`] (shared by every bucket a [`crate::UriStore`]
/// opens).
///
/// ```
/// let mut cfg = store::RemoteConfig::default();
/// cfg.options
///     .entry("s3".into())
///     .or_default()
///     .insert("aws_endpoint".into(), "http://127.0.0.1:9000".into());
/// assert!(cfg.validate().is_ok());
/// assert!(cfg.min_part <= cfg.max_part);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Per scheme (`s3`, `gs`, `az`, `http`), options of the `object_store` crate's
    /// builders (`aws_endpoint`, `aws_access_key_id`, `aws_skip_signature` for anonymous
    /// access, `google_service_account`, `azure_storage_account_name`, `allow_http`,
    /// ...). They override the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`), which
    /// overrides the defaults.
    pub options: BTreeMap<String, BTreeMap<String, String>>,
    /// Most requests in flight at once for one store (bucket or host), all callers
    /// together.
    pub max_in_flight: usize,
    /// No part of a split read is smaller than this; it wins over `max_part`.
    pub min_part: usize,
    /// Reads larger than this are split into concurrent parts.
    pub max_part: usize,
    /// The planner hint of [`Store::merge_gap_hint`]: ranges closer than this merge.
    pub merge_gap: u64,
    /// Retries of a request that failed with a 5xx, throttling, a timeout or a dropped
    /// connection (object_store's `RetryConfig::max_retries`).
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
    /// The first backoff; it doubles per retry up to `max_backoff`.
    pub init_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// One attempt's limit, response body included.
    pub request_timeout: Duration,
    /// The limit on opening a connection.
    pub connect_timeout: Duration,
    /// Worker threads of the store's tokio runtime (they wait on sockets and copy
    /// bodies into buffers; a few suffice).
    pub runtime_threads: usize,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            options: BTreeMap::new(),
            max_in_flight: 64,
            min_part: 1 << 20,
            max_part: 8 << 20,
            merge_gap: 1 << 20,
            max_retries: 10,
            retry_timeout: Duration::from_secs(120),
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            runtime_threads: 2,
        }
    }
}

impl RemoteConfig {
    /// Checks every field and every option key.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field; [`Error::UnknownOption`] for
    /// an option its scheme does not know; [`Error::BadUri`] for an unknown scheme name.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: String, reason| Err(Error::InvalidConfig { field, value, reason });
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "0".into(), "need at least one request in flight");
        }
        if self.min_part == 0 {
            return bad("min_part", "0".into(), "must be at least 1 byte");
        }
        if self.max_part < self.min_part {
            return bad("max_part", self.max_part.to_string(), "must be at least min_part");
        }
        if self.runtime_threads == 0 {
            return bad("runtime_threads", "0".into(), "need at least one runtime thread");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "0s".into(), "must be positive");
        }
        for (scheme, opts) in &self.options {
            let s = match scheme.as_str() {
                "s3" => Scheme::S3,
                "gs" => Scheme::Gcs,
                "az" => Scheme::Azure,
                "http" => Scheme::Http,
                _ => {
                    return Err(Error::BadUri {
                        uri: format!("{scheme}://"),
                        reason: "not an options scheme: use s3, gs, az or http",
                    });
                }
            };
            for key in opts.keys() {
                check_key(s, key)?;
            }
        }
        Ok(())
    }
}

/// Checks that `key` is an option `scheme`'s builder knows.
fn check_key(scheme: Scheme, key: &str) -> Result<()> {
    let known = match scheme {
        Scheme::S3 => AmazonS3ConfigKey::from_str(key).is_ok(),
        Scheme::Gcs => GoogleConfigKey::from_str(key).is_ok(),
        Scheme::Azure => AzureConfigKey::from_str(key).is_ok(),
        Scheme::Http | Scheme::Https => ClientConfigKey::from_str(key).is_ok(),
    };
    if known {
        Ok(())
    } else {
        Err(Error::UnknownOption { scheme: scheme.options_key(), key: key.to_owned() })
    }
}
