//! The backend, from `--backend` / `LEASING_BACKEND` or from the providers' own
//! environment variables: one syntax for every provider (see docs/cli.md).
//!
//! | form | backend |
//! |---|---|
//! | `redis://host:port[/db]`, `rediss://…` | one Redis server |
//! | `redis://a:6379,redis://b:6379,redis://c:6379`, `redlock://a:6379,b:6379,c:6379` | Redlock over independent servers |
//! | `redis+cluster://a:6379,b:6379` | Redis Cluster (seed nodes) |
//! | `blob:` + connection string, SAS URL or account URL (Azure identity) | Azure Blob Storage |
//! | `cosmos:` + connection string or endpoint (key in `LEASING_COSMOS_KEY`, or Azure identity) | Azure Cosmos DB |
//! | `memory` | in this process only (for trying the command) |
//!
//! A connection string is recognised without its prefix (`AccountEndpoint=` is Cosmos,
//! `AccountName=`, `BlobEndpoint=` or `UseDevelopmentStorage=` is Blob), and so are
//! `https://….blob.core.windows.net` and `https://….documents.azure.com` URLs. Redis URLs
//! take `prefix=`, `restart_fence=` (a duration) and `ca_file=` (for `rediss://`) query
//! parameters. Nothing here ever prints a secret: errors name the form, never the value.

use crate::exit::CliError;
use distributed_leasing::blob::BlobLeaseProviderBuilder;
use distributed_leasing::cosmos::CosmosLeaseProviderBuilder;
use distributed_leasing::redis::{RedisLeaseProviderBuilder, RedlockLeaseProviderBuilder};
use distributed_leasing::{InMemoryLeaseProvider, LeaseProvider};
use std::sync::Arc;
use std::time::Duration;

/// Redis settings carried as query parameters.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RedisExtras {
    prefix: Option<String>,
    restart_fence: Option<Duration>,
    ca_file: Option<String>,
}

/// A parsed backend, built later (inside the runtime).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Backend {
    Memory,
    Redis(String, RedisExtras),
    Redlock(Vec<String>, RedisExtras),
    Cluster(Vec<String>, RedisExtras),
    BlobConnectionString(String),
    BlobSasUrl(String),
    /// The provider's `from_env()`: its variables (an account URL given on the command
    /// line has been put in `AZURE_STORAGE_BLOB_ENDPOINT` first).
    BlobEnv,
    CosmosConnectionString(String),
    /// The provider's `from_env()` (an endpoint given on the command line has been put in
    /// `LEASING_COSMOS_ENDPOINT` first).
    CosmosEnv,
}

/// The forms, for error messages.
const FORMS: &str = "redis://HOST:PORT, rediss://…, redlock://H1:P1,H2:P2,H3:P3, \
redis+cluster://H1:P1,H2:P2, blob:CONNECTION-STRING|SAS-URL|ACCOUNT-URL, \
cosmos:CONNECTION-STRING|ENDPOINT, memory";

/// What to set when nothing names a backend.
const NOTHING_SET: &str = "no backend: set --backend or LEASING_BACKEND (for example \
redis://127.0.0.1:6379), or a provider's variables: LEASING_REDIS_URL, \
LEASING_REDLOCK_URLS, LEASING_REDIS_CLUSTER_URLS, AZURE_STORAGE_CONNECTION_STRING \
(or AZURE_STORAGE_ACCOUNT), LEASING_COSMOS_CONNECTION_STRING (or LEASING_COSMOS_ENDPOINT)";

/// Reads the backend from `spec` (the flag or `LEASING_BACKEND`), else from the providers'
/// variables as `var` reports them. Sets the variables an Azure identity form needs
/// (`set`), so call it before any thread starts.
pub(crate) fn parse(
    spec: Option<&str>,
    var: &dyn Fn(&str) -> Option<String>,
    set: &mut dyn FnMut(&str, &str),
) -> Result<Backend, CliError> {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return from_provider_vars(var);
    };
    if spec == "memory" || spec == "memory:" {
        return Ok(Backend::Memory);
    }
    if let Some(rest) = spec.strip_prefix("blob:") {
        return blob(rest.trim(), set);
    }
    if let Some(rest) = spec.strip_prefix("cosmos:") {
        return cosmos(rest.trim(), set);
    }
    if let Some(rest) = spec.strip_prefix("redlock://") {
        let (hosts, extras) = redis_extras(rest)?;
        let urls = list(&hosts, "redis://");
        return check_redlock(urls, extras);
    }
    if let Some(rest) = spec.strip_prefix("redis+cluster://") {
        let (hosts, extras) = redis_extras(rest)?;
        let urls = list(&hosts, "redis://");
        return nonempty(urls, "redis+cluster://").map(|u| Backend::Cluster(u, extras));
    }
    if let Some(rest) = spec.strip_prefix("rediss+cluster://") {
        let (hosts, extras) = redis_extras(rest)?;
        let urls = list(&hosts, "rediss://");
        return nonempty(urls, "rediss+cluster://").map(|u| Backend::Cluster(u, extras));
    }
    if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        let (urls, extras) = redis_extras(spec)?;
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        return match urls.len() {
            1 => Ok(Backend::Redis(urls[0].clone(), extras)),
            _ => check_redlock(urls, extras),
        };
    }
    let lower = spec.to_ascii_lowercase();
    if lower.contains("accountendpoint=") || lower.contains(".documents.azure.com") {
        return cosmos(spec, set);
    }
    if lower.contains("accountname=")
        || lower.contains("blobendpoint=")
        || lower.contains("usedevelopmentstorage=")
        || lower.contains(".blob.core.windows.net")
    {
        return blob(spec, set);
    }
    Err(CliError::usage(format!(
        "the backend{} is none of the forms {FORMS}",
        scheme_hint(spec)
    )))
}

/// The scheme of an unrecognised backend, if it looks like one (never the rest: it may
/// hold a password).
fn scheme_hint(spec: &str) -> String {
    match spec.split_once(':') {
        Some((s, _))
            if !s.is_empty()
                && s.len() <= 20
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            format!(" (scheme {s:?})")
        }
        _ => String::new(),
    }
}

fn from_provider_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Backend, CliError> {
    if let Some(url) = var("LEASING_REDIS_URL") {
        return Ok(Backend::Redis(url, RedisExtras::default()));
    }
    if let Some(urls) = var(distributed_leasing::redis::URLS_ENV) {
        return check_redlock(list(&urls, "redis://"), RedisExtras::default());
    }
    if let Some(urls) = var("LEASING_REDIS_CLUSTER_URLS") {
        return nonempty(list(&urls, "redis://"), "LEASING_REDIS_CLUSTER_URLS")
            .map(|u| Backend::Cluster(u, RedisExtras::default()));
    }
    if [
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_BLOB_ENDPOINT",
    ]
    .iter()
    .any(|k| var(k).is_some())
    {
        return Ok(Backend::BlobEnv);
    }
    if [
        "LEASING_COSMOS_CONNECTION_STRING",
        "LEASING_COSMOS_ENDPOINT",
    ]
    .iter()
    .any(|k| var(k).is_some())
    {
        return Ok(Backend::CosmosEnv);
    }
    Err(CliError::usage(NOTHING_SET))
}

/// Splits Redis query parameters of ours off a URL (or list): `prefix`, `restart_fence`,
/// `ca_file`. Other parameters stay on the URL.
fn redis_extras(spec: &str) -> Result<(String, RedisExtras), CliError> {
    let Some((base, query)) = spec.split_once('?') else {
        return Ok((spec.to_owned(), RedisExtras::default()));
    };
    let mut extras = RedisExtras::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "prefix" => extras.prefix = Some(v.to_owned()),
            "restart_fence" => {
                extras.restart_fence = Some(humantime::parse_duration(v).map_err(|e| {
                    CliError::usage(format!("restart_fence={v:?} in the backend URL: {e}"))
                })?)
            }
            "ca_file" => extras.ca_file = Some(v.to_owned()),
            _ => rest.push(pair),
        }
    }
    let base = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, extras))
}

/// Comma-separated hosts or URLs, each given `scheme` unless it has one.
fn list(hosts: &str, scheme: &str) -> Vec<String> {
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.contains("://") {
                h.to_owned()
            } else {
                format!("{scheme}{h}")
            }
        })
        .collect()
}

fn nonempty(urls: Vec<String>, what: &str) -> Result<Vec<String>, CliError> {
    if urls.is_empty() {
        Err(CliError::usage(format!("{what} names no server")))
    } else {
        Ok(urls)
    }
}

fn check_redlock(urls: Vec<String>, extras: RedisExtras) -> Result<Backend, CliError> {
    if urls.len() < 3 {
        return Err(CliError::usage(format!(
            "Redlock needs at least 3 independent servers; the backend lists {}",
            urls.len()
        )));
    }
    Ok(Backend::Redlock(urls, extras))
}

fn blob(rest: &str, set: &mut dyn FnMut(&str, &str)) -> Result<Backend, CliError> {
    if rest.is_empty() {
        return Ok(Backend::BlobEnv);
    }
    if rest.starts_with("https://") || rest.starts_with("http://") {
        if rest.contains('?') {
            return Ok(Backend::BlobSasUrl(rest.to_owned()));
        }
        // An account URL, optionally with the container as its last path segment (as in a
        // container SAS URL; before it, a path-style endpoint such as Azurite's
        // `http://127.0.0.1:10000/devstoreaccount1`): an Azure identity from the
        // environment, as the provider's from_env() chooses it.
        let trimmed = rest.trim_end_matches('/');
        let after_scheme = trimmed.find("://").map_or(0, |i| i + 3);
        let (endpoint, container) = match trimmed[after_scheme..].rfind('/') {
            Some(i) => (
                trimmed[..after_scheme + i].to_owned(),
                Some(&trimmed[after_scheme + i + 1..]),
            ),
            None => (trimmed.to_owned(), None),
        };
        set("AZURE_STORAGE_CONNECTION_STRING", "");
        set("AZURE_STORAGE_KEY", "");
        set("AZURE_STORAGE_SAS_TOKEN", "");
        set("AZURE_STORAGE_BLOB_ENDPOINT", &endpoint);
        if let Some(c) = container {
            set("LEASING_BLOB_CONTAINER", c);
        }
        return Ok(Backend::BlobEnv);
    }
    if rest.contains('=') {
        return Ok(Backend::BlobConnectionString(rest.to_owned()));
    }
    Err(CliError::usage(
        "blob: takes a connection string, a SAS URL or an account URL (https://ACCOUNT.blob.core.windows.net)",
    ))
}

fn cosmos(rest: &str, set: &mut dyn FnMut(&str, &str)) -> Result<Backend, CliError> {
    if rest.is_empty() {
        return Ok(Backend::CosmosEnv);
    }
    if rest.to_ascii_lowercase().contains("accountendpoint=") {
        return Ok(Backend::CosmosConnectionString(rest.to_owned()));
    }
    if rest.starts_with("https://") || rest.starts_with("http://") {
        set("LEASING_COSMOS_CONNECTION_STRING", "");
        set("LEASING_COSMOS_ENDPOINT", rest);
        return Ok(Backend::CosmosEnv);
    }
    Err(CliError::usage(
        "cosmos: takes a connection string (AccountEndpoint=…;AccountKey=…) or an endpoint URL",
    ))
}

impl Backend {
    /// What the backend is, without secrets (for `--verbose` and errors).
    pub(crate) fn describe(&self) -> String {
        match self {
            Backend::Memory => "in-memory (this process only)".into(),
            Backend::Redis(u, _) => format!("Redis at {}", redact(u)),
            Backend::Redlock(u, _) => format!(
                "Redlock over {}",
                u.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", ")
            ),
            Backend::Cluster(u, _) => format!(
                "Redis Cluster via {}",
                u.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", ")
            ),
            Backend::BlobConnectionString(_) => "Azure Blob (connection string)".into(),
            Backend::BlobSasUrl(u) => format!(
                "Azure Blob (SAS URL {})",
                u.split('?').next().unwrap_or_default()
            ),
            Backend::BlobEnv => "Azure Blob (from the AZURE_STORAGE_* variables)".into(),
            Backend::CosmosConnectionString(_) => "Cosmos DB (connection string)".into(),
            Backend::CosmosEnv => "Cosmos DB (from the LEASING_COSMOS_* variables)".into(),
        }
    }

    /// Connects. Every backend checks what it can before returning.
    pub(crate) async fn build(&self) -> Result<Arc<dyn LeaseProvider>, CliError> {
        let doing = format!("connecting to {}", self.describe());
        let err = |e: distributed_leasing::LeaseError| CliError::backend(&doing, &e);
        Ok(match self {
            Backend::Memory => Arc::new(InMemoryLeaseProvider::new()),
            Backend::Redis(url, x) => Arc::new(
                redis_setters(RedisLeaseProviderBuilder::new().url(url), x)
                    .map_err(err)?
                    .build()
                    .await
                    .map_err(err)?,
            ),
            Backend::Cluster(urls, x) => Arc::new(
                redis_setters(RedisLeaseProviderBuilder::new().cluster_urls(urls), x)
                    .map_err(err)?
                    .build()
                    .await
                    .map_err(err)?,
            ),
            Backend::Redlock(urls, x) => Arc::new(
                redlock_setters(RedlockLeaseProviderBuilder::new().urls(urls), x)
                    .map_err(err)?
                    .build()
                    .await
                    .map_err(err)?,
            ),
            Backend::BlobConnectionString(cs) => Arc::new(
                BlobLeaseProviderBuilder::default()
                    .connection_string(cs)
                    .build()
                    .await
                    .map_err(err)?,
            ),
            Backend::BlobSasUrl(url) => {
                let b = BlobLeaseProviderBuilder::default();
                let has_container = url
                    .split('?')
                    .next()
                    .and_then(|u| u.split_once("://"))
                    .is_some_and(|(_, after)| {
                        after.trim_end_matches('/').split_once('/').is_some()
                    });
                let b = if has_container {
                    b.container_sas_url(url)
                } else {
                    b.sas_url(url)
                };
                Arc::new(b.build().await.map_err(err)?)
            }
            Backend::BlobEnv => Arc::new(
                BlobLeaseProviderBuilder::from_env()
                    .build()
                    .await
                    .map_err(err)?,
            ),
            Backend::CosmosConnectionString(cs) => Arc::new(
                CosmosLeaseProviderBuilder::default()
                    .connection_string(cs.clone())
                    .build()
                    .await
                    .map_err(err)?,
            ),
            Backend::CosmosEnv => Arc::new(
                CosmosLeaseProviderBuilder::from_env()
                    .build()
                    .await
                    .map_err(err)?,
            ),
        })
    }
}

macro_rules! setters {
    ($name:ident, $builder:ty) => {
        fn $name(mut b: $builder, x: &RedisExtras) -> distributed_leasing::Result<$builder> {
            if let Some(p) = &x.prefix {
                b = b.key_prefix(p.clone());
            }
            if let Some(f) = x.restart_fence {
                b = b.restart_fence(f);
            }
            if let Some(ca) = &x.ca_file {
                b = b.ca_file(ca)?;
            }
            Ok(b)
        }
    };
}
setters!(redis_setters, RedisLeaseProviderBuilder);
setters!(redlock_setters, RedlockLeaseProviderBuilder);

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, after)), Some(_)) => {
            let host = after.rsplit_once('@').map_or(after, |(_, h)| h);
            format!("{scheme}://***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(
        spec: Option<&str>,
        vars: &[(&str, &str)],
    ) -> (Result<Backend, CliError>, HashMap<String, String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut set = HashMap::new();
        let r = parse(spec, &|k| vars.get(k).cloned(), &mut |k, v| {
            set.insert(k.to_owned(), v.to_owned());
        });
        (r, set)
    }

    #[test]
    fn every_form_parses() {
        let ok = |s: &str| parse_with(Some(s), &[]).0.unwrap();
        assert_eq!(ok("memory"), Backend::Memory);
        assert_eq!(
            ok("redis://h:1"),
            Backend::Redis("redis://h:1".into(), RedisExtras::default())
        );
        assert_eq!(
            ok("rediss://u:p@h:1/2?prefix=x:&restart_fence=30s&ca_file=/ca.pem&protocol=resp3"),
            Backend::Redis(
                "rediss://u:p@h:1/2?protocol=resp3".into(),
                RedisExtras {
                    prefix: Some("x:".into()),
                    restart_fence: Some(Duration::from_secs(30)),
                    ca_file: Some("/ca.pem".into()),
                }
            )
        );
        let three = vec![
            "redis://a:1".to_owned(),
            "redis://b:2".into(),
            "redis://c:3".into(),
        ];
        assert_eq!(
            ok("redlock://a:1,b:2,c:3"),
            Backend::Redlock(three.clone(), RedisExtras::default())
        );
        assert_eq!(
            ok("redis://a:1,redis://b:2,redis://c:3"),
            Backend::Redlock(three, RedisExtras::default())
        );
        assert_eq!(
            ok("redis+cluster://a:1,b:2"),
            Backend::Cluster(
                vec!["redis://a:1".into(), "redis://b:2".into()],
                RedisExtras::default()
            )
        );
        assert_eq!(
            ok("rediss+cluster://a:1"),
            Backend::Cluster(vec!["rediss://a:1".into()], RedisExtras::default())
        );
        assert_eq!(
            ok("UseDevelopmentStorage=true"),
            Backend::BlobConnectionString("UseDevelopmentStorage=true".into())
        );
        assert_eq!(
            ok("blob:AccountName=a;AccountKey=k"),
            Backend::BlobConnectionString("AccountName=a;AccountKey=k".into())
        );
        assert_eq!(
            ok("blob:https://a.blob.core.windows.net/c?sv=1&sig=2"),
            Backend::BlobSasUrl("https://a.blob.core.windows.net/c?sv=1&sig=2".into())
        );
        assert_eq!(
            ok("AccountEndpoint=https://a.documents.azure.com:443/;AccountKey=k;"),
            Backend::CosmosConnectionString(
                "AccountEndpoint=https://a.documents.azure.com:443/;AccountKey=k;".into()
            )
        );
        assert_eq!(ok("cosmos:"), Backend::CosmosEnv);
        assert_eq!(ok("blob:"), Backend::BlobEnv);
    }

    #[test]
    fn account_urls_go_through_the_identity_variables() {
        let (r, set) = parse_with(Some("https://acct.blob.core.windows.net/leases/"), &[]);
        assert_eq!(r.unwrap(), Backend::BlobEnv);
        assert_eq!(
            set["AZURE_STORAGE_BLOB_ENDPOINT"],
            "https://acct.blob.core.windows.net"
        );
        assert_eq!(set["LEASING_BLOB_CONTAINER"], "leases");
        assert_eq!(set["AZURE_STORAGE_CONNECTION_STRING"], "");
        let (r, set) = parse_with(Some("blob:https://acct.blob.core.windows.net"), &[]);
        assert_eq!(r.unwrap(), Backend::BlobEnv);
        assert!(!set.contains_key("LEASING_BLOB_CONTAINER"));
        let (r, set) = parse_with(Some("cosmos:https://a.documents.azure.com:443/"), &[]);
        assert_eq!(r.unwrap(), Backend::CosmosEnv);
        assert_eq!(
            set["LEASING_COSMOS_ENDPOINT"],
            "https://a.documents.azure.com:443/"
        );
    }

    #[test]
    fn the_less_common_spellings_parse() {
        let ok = |s: &str| parse_with(Some(s), &[]).0.unwrap();
        assert_eq!(ok("memory:"), Backend::Memory);
        assert_eq!(ok(" memory "), Backend::Memory);
        // Only our parameters: nothing is left on the URL, not even the `?`.
        assert_eq!(
            ok("redis://h:1?prefix=p:&&restart_fence=1m"),
            Backend::Redis(
                "redis://h:1".into(),
                RedisExtras {
                    prefix: Some("p:".into()),
                    restart_fence: Some(Duration::from_secs(60)),
                    ca_file: None,
                }
            )
        );
        // A parameter without a value stays on the URL as it was.
        assert_eq!(
            ok("redis://h:1?prefix=p:&insecure"),
            Backend::Redis(
                "redis://h:1?insecure".into(),
                RedisExtras {
                    prefix: Some("p:".into()),
                    ..RedisExtras::default()
                }
            )
        );
        assert_eq!(
            ok("redlock://a:1, redis://b:2 ,,c:3?prefix=x"),
            Backend::Redlock(
                vec![
                    "redis://a:1".into(),
                    "redis://b:2".into(),
                    "redis://c:3".into()
                ],
                RedisExtras {
                    prefix: Some("x".into()),
                    ..RedisExtras::default()
                }
            )
        );
        // Connection strings and Azure URLs without their prefix, in any case.
        assert_eq!(
            ok("accountname=a;accountkey=k"),
            Backend::BlobConnectionString("accountname=a;accountkey=k".into())
        );
        assert_eq!(
            ok("BlobEndpoint=https://a.example/;SharedAccessSignature=sv=1"),
            Backend::BlobConnectionString(
                "BlobEndpoint=https://a.example/;SharedAccessSignature=sv=1".into()
            )
        );
        let (r, set) = parse_with(Some("https://A.Documents.Azure.com:443/"), &[]);
        assert_eq!(r.unwrap(), Backend::CosmosEnv);
        assert_eq!(
            set["LEASING_COSMOS_ENDPOINT"],
            "https://A.Documents.Azure.com:443/"
        );
        assert_eq!(set["LEASING_COSMOS_CONNECTION_STRING"], "");
        // Plain http (emulators): a SAS URL, a Cosmos endpoint.
        assert_eq!(
            ok("blob:http://127.0.0.1:10000/devstoreaccount1/leases?sv=1&sig=2"),
            Backend::BlobSasUrl("http://127.0.0.1:10000/devstoreaccount1/leases?sv=1&sig=2".into())
        );
        let (r, set) = parse_with(Some("cosmos:http://127.0.0.1:8081/"), &[]);
        assert_eq!(r.unwrap(), Backend::CosmosEnv);
        assert_eq!(set["LEASING_COSMOS_ENDPOINT"], "http://127.0.0.1:8081/");
    }

    /// The container is the last path segment of an account URL, as in a container SAS
    /// URL: a path-style endpoint (Azurite's, `http://HOST:PORT/ACCOUNT`) keeps its path.
    #[test]
    fn a_path_style_account_url_keeps_its_path_in_the_endpoint() {
        let (r, set) = parse_with(
            Some("blob:http://127.0.0.1:10000/devstoreaccount1/leases/"),
            &[],
        );
        assert_eq!(r.unwrap(), Backend::BlobEnv);
        assert_eq!(
            set["AZURE_STORAGE_BLOB_ENDPOINT"],
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(set["LEASING_BLOB_CONTAINER"], "leases");
        assert_eq!(set["AZURE_STORAGE_KEY"], "");
        assert_eq!(set["AZURE_STORAGE_SAS_TOKEN"], "");
    }

    #[test]
    fn a_scheme_is_named_only_when_it_looks_like_one() {
        assert_eq!(scheme_hint("ftp://x"), " (scheme \"ftp\")");
        assert_eq!(scheme_hint("redis+tls://x"), " (scheme \"redis+tls\")");
        // No colon, an empty scheme, a long one, odd characters: nothing is echoed.
        for spec in [
            "hunter2",
            ":hunter2",
            "averyveryverylongscheme:x",
            "user hunter2:x",
            "a_b:x",
        ] {
            assert_eq!(scheme_hint(spec), "", "{spec}");
        }
        let e = parse_with(Some("user:pw@host"), &[]).0.unwrap_err();
        assert!(!e.message.contains("pw@host"), "{e}");
    }

    #[test]
    fn provider_variables_are_the_fallback_in_order() {
        let p = |vars: &[(&str, &str)]| parse_with(None, vars).0;
        assert_eq!(
            p(&[
                ("LEASING_REDIS_URL", "redis://x:1"),
                ("AZURE_STORAGE_ACCOUNT", "a")
            ])
            .unwrap(),
            Backend::Redis("redis://x:1".into(), RedisExtras::default())
        );
        assert!(matches!(
            p(&[("LEASING_REDLOCK_URLS", "redis://a,redis://b,redis://c")]).unwrap(),
            Backend::Redlock(..)
        ));
        assert!(matches!(
            p(&[("LEASING_REDIS_CLUSTER_URLS", "redis://a")]).unwrap(),
            Backend::Cluster(..)
        ));
        assert_eq!(
            p(&[("AZURE_STORAGE_ACCOUNT", "a")]).unwrap(),
            Backend::BlobEnv
        );
        assert_eq!(
            p(&[("LEASING_COSMOS_ENDPOINT", "https://x")]).unwrap(),
            Backend::CosmosEnv
        );
        assert_eq!(
            p(&[("LEASING_COSMOS_CONNECTION_STRING", "AccountEndpoint=x")]).unwrap(),
            Backend::CosmosEnv
        );
        assert_eq!(
            p(&[("AZURE_STORAGE_BLOB_ENDPOINT", "https://a.example")]).unwrap(),
            Backend::BlobEnv
        );
        // Blob's variables come before Cosmos's.
        assert_eq!(
            p(&[
                ("LEASING_COSMOS_ENDPOINT", "https://x"),
                (
                    "AZURE_STORAGE_CONNECTION_STRING",
                    "UseDevelopmentStorage=true"
                )
            ])
            .unwrap(),
            Backend::BlobEnv
        );
        for (k, v, needle) in [
            ("LEASING_REDLOCK_URLS", "redis://a,redis://b", "at least 3"),
            ("LEASING_REDIS_CLUSTER_URLS", " , ", "names no server"),
        ] {
            let e = p(&[(k, v)]).unwrap_err();
            assert_eq!(e.code, crate::exit::USAGE, "{k}");
            assert!(e.message.contains(needle), "{k}: {e}");
        }
        let e = p(&[]).unwrap_err();
        assert_eq!(e.code, crate::exit::USAGE);
        assert!(e.message.contains("LEASING_BACKEND"), "{e}");
        assert_eq!(
            parse_with(Some("  "), &[]).0.unwrap_err().code,
            crate::exit::USAGE
        );
    }

    #[test]
    fn bad_backends_are_usage_errors_without_secrets() {
        for (spec, needle) in [
            ("postgres://user:hunter2@db/x", "scheme \"postgres\""),
            ("hunter2", "none of the forms"),
            ("redlock://a:1,b:2", "at least 3"),
            ("redis+cluster://", "names no server"),
            ("redis://h?restart_fence=soon", "restart_fence"),
            ("redis://a:1,redis://b:2", "lists 2"),
            ("rediss+cluster://,", "names no server"),
            ("redlock://", "lists 0"),
            ("blob:hunter2", "blob: takes"),
            ("cosmos:hunter2", "cosmos: takes"),
        ] {
            let e = parse_with(Some(spec), &[]).0.unwrap_err();
            assert_eq!(e.code, crate::exit::USAGE, "{spec}");
            assert!(e.message.contains(needle), "{spec}: {e}");
            assert!(!e.message.contains("hunter2"), "{spec}: {e}");
        }
    }

    #[test]
    fn the_redis_parameters_reach_the_builders() {
        let ca = std::env::temp_dir().join(format!("leasing-cli-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, b"not really a certificate").unwrap();
        let x = RedisExtras {
            prefix: Some("cli:".into()),
            restart_fence: Some(Duration::from_secs(42)),
            ca_file: Some(ca.display().to_string()),
        };
        let b = redis_setters(RedisLeaseProviderBuilder::new().url("rediss://h:1"), &x).unwrap();
        assert_eq!(b.config().key_prefix, "cli:");
        assert_eq!(b.config().restart_fence, Duration::from_secs(42));
        assert_eq!(
            b.config().ca_cert_pem.as_deref(),
            Some(&b"not really a certificate"[..])
        );
        let urls = ["redis://a", "redis://b", "redis://c"];
        let b = redlock_setters(RedlockLeaseProviderBuilder::new().urls(urls), &x).unwrap();
        assert_eq!(b.config().key_prefix, "cli:");
        let _ = std::fs::remove_file(&ca);
        // Nothing given: the builder's defaults stay.
        let plain = RedisLeaseProviderBuilder::new().url("redis://h:1");
        let default_prefix = plain.config().key_prefix.clone();
        let b = redis_setters(plain, &RedisExtras::default()).unwrap();
        assert_eq!(b.config().key_prefix, default_prefix);
        assert!(b.config().ca_cert_pem.is_none());
    }

    fn build(b: &Backend) -> Result<Arc<dyn LeaseProvider>, CliError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(b.build())
    }

    #[test]
    fn configuration_errors_are_usage_errors_that_name_the_backend() {
        // An unreadable CA file: exit code 2 before anything is dialled.
        for b in [
            Backend::Redis(
                "rediss://h:1".into(),
                RedisExtras {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..RedisExtras::default()
                },
            ),
            Backend::Redlock(
                vec!["redis://a".into(), "redis://b".into(), "redis://c".into()],
                RedisExtras {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..RedisExtras::default()
                },
            ),
            Backend::Cluster(
                vec!["redis://a".into()],
                RedisExtras {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..RedisExtras::default()
                },
            ),
        ] {
            let e = build(&b).err().unwrap();
            assert_eq!(e.code, crate::exit::USAGE, "{b:?}: {e}");
            assert!(e.message.starts_with("connecting to Re"), "{e}");
            assert!(e.message.contains("ca_file"), "{e}");
        }
        let e = build(&Backend::BlobConnectionString("AccountKey=secret".into()))
            .err()
            .unwrap();
        assert_eq!(e.code, crate::exit::USAGE, "{e}");
        assert!(
            e.message
                .starts_with("connecting to Azure Blob (connection string): "),
            "{e}"
        );
        assert!(!e.message.contains("secret"), "{e}");
    }

    #[test]
    fn sas_urls_build_with_or_without_a_container() {
        // Both forms are accepted as configuration; building then dials the service,
        // which is not there (no usage error: "unavailable").
        for url in [
            "https://acct.blob.core.windows.net/leases?sv=1&sig=secret",
            "https://acct.blob.core.windows.net/?sv=1&sig=secret",
            "https://acct.blob.core.windows.net?sv=1&sig=secret",
        ] {
            if let Err(e) = build(&Backend::BlobSasUrl(url.into())) {
                assert_ne!(e.code, crate::exit::USAGE, "{url}: {e}");
                assert!(!e.message.contains("secret"), "{e}");
            }
        }
        // A bad container name is refused: the last path segment is the container.
        let e = build(&Backend::BlobSasUrl(
            "https://acct.blob.core.windows.net/Bad_Name?sv=1&sig=secret".into(),
        ))
        .err()
        .unwrap();
        assert_eq!(e.code, crate::exit::USAGE, "{e}");
        assert!(e.message.contains("container"), "{e}");
        assert!(!e.message.contains("secret"), "{e}");
    }

    #[test]
    fn descriptions_never_show_a_password() {
        let b = Backend::Redis("redis://user:hunter2@h:1".into(), RedisExtras::default());
        assert_eq!(b.describe(), "Redis at redis://***@h:1");
        let b = Backend::Redlock(
            vec!["redis://:pw@a".into(), "redis://b".into()],
            RedisExtras::default(),
        );
        assert_eq!(b.describe(), "Redlock over redis://***@a, redis://b");
        let b = Backend::BlobSasUrl("https://a/c?sig=secret".into());
        assert_eq!(b.describe(), "Azure Blob (SAS URL https://a/c)");
        let b = Backend::Cluster(
            vec!["rediss://u:pw@a:1".into(), "rediss://b:2".into()],
            RedisExtras::default(),
        );
        assert_eq!(
            b.describe(),
            "Redis Cluster via rediss://***@a:1, rediss://b:2"
        );
        // A password with an `@` in it: everything up to the last `@` goes.
        assert_eq!(redact("redis://u:p@ss@h:1"), "redis://***@h:1");
        // Not a URL: as it is.
        assert_eq!(redact("h:1"), "h:1");
        assert_eq!(redact("user@h"), "user@h");
        for b in [
            Backend::BlobConnectionString("AccountKey=secret".into()),
            Backend::CosmosConnectionString("AccountKey=secret".into()),
            Backend::BlobEnv,
            Backend::CosmosEnv,
            Backend::Memory,
            Backend::Cluster(vec!["redis://a".into()], RedisExtras::default()),
        ] {
            assert!(!b.describe().contains("secret"));
        }
    }
}
