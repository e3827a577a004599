//! Building the `object_store` client of a scheme: defaults, then the environment
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`, as the crate's `from_env` reads them), then the
//! per-scheme options of [`RemoteConfig`], with this store's timeouts and retry policy.

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::config::{RemoteConfig, Scheme};
use crate::error::{Error, Result};
use crate::sync::Arc;

/// The environment variables starting with `prefix`, as lowercase option keys.
fn env_options(prefix: &str) -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// Applies `(key, value)` pairs that parse as `K` (environment entries that do not are
/// skipped, as `from_env` does; configured ones were checked by `validate`).
fn apply<B, K: std::str::FromStr>(
    mut b: B,
    pairs: impl IntoIterator<Item = (String, String)>,
    with: fn(B, K, String) -> B,
) -> B {
    for (k, v) in pairs {
        if let Ok(key) = k.parse::<K>() {
            b = with(b, key, v);
        }
    }
    b
}

/// The client for `base` (`scheme://authority`).
pub(super) fn build(
    scheme: Scheme,
    base: &str,
    cfg: &RemoteConfig,
) -> Result<Arc<dyn ObjectStore>> {
    // reqwest is built without a TLS provider of its own (see the workspace manifest);
    // ring is the process default unless the application installed another one first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: cfg.init_backoff,
            max_backoff: cfg.max_backoff.max(cfg.init_backoff),
            base: 2.0,
        },
        max_retries: cfg.max_retries,
        retry_timeout: cfg.retry_timeout,
    };
    let client = ClientOptions::new()
        .with_timeout(cfg.request_timeout)
        .with_connect_timeout(cfg.connect_timeout)
        .with_pool_max_idle_per_host(cfg.max_in_flight)
        .with_allow_http(scheme == Scheme::Http);
    let opts: Vec<(String, String)> = cfg
        .options
        .get(scheme.options_key())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let err = |e: object_store::Error| Error::ClientConfig {
        url: base.to_owned(),
        detail: e.to_string(),
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        Scheme::S3 => {
            let b = AmazonS3Builder::new().with_client_options(client).with_retry(retry);
            let b = apply(b, env_options("AWS_"), AmazonS3Builder::with_config);
            let b = apply(b, opts, AmazonS3Builder::with_config);
            Arc::new(b.with_url(base).build().map_err(err)?)
        }
        Scheme::Gcs => {
            let b = GoogleCloudStorageBuilder::new().with_client_options(client).with_retry(retry);
            let b = apply(b, env_options("GOOGLE_"), GoogleCloudStorageBuilder::with_config);
            let b = apply(b, opts, GoogleCloudStorageBuilder::with_config);
            Arc::new(b.with_url(base).build().map_err(err)?)
        }
        Scheme::Azure => {
            let b = MicrosoftAzureBuilder::new().with_client_options(client).with_retry(retry);
            let b = apply(b, env_options("AZURE_"), MicrosoftAzureBuilder::with_config);
            let b = apply(b, opts, MicrosoftAzureBuilder::with_config);
            Arc::new(b.with_url(base).build().map_err(err)?)
        }
        Scheme::Http | Scheme::Https => {
            let b = HttpBuilder::new().with_client_options(client).with_retry(retry);
            let b = apply(b, opts, HttpBuilder::with_config);
            Arc::new(b.with_url(base).build().map_err(err)?)
        }
    };
    Ok(store)
}
