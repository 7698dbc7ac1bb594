//! Shared helpers of the integration tests: service discovery and providers on Azurite.
#![allow(dead_code, unreachable_pub, missing_docs, unused_imports)]

pub mod fake;

use leasing_blob::{BlobLeaseProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use std::time::Duration;

pub use leasing_testkit::services::{service_env, skip_if_missing, AzuriteServer};

pub fn unique(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::new_v4().simple())
}

/// A container name unique to this run.
pub fn container(test: &str) -> String {
    format!(
        "t-{test}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The plain Azurite endpoint, or `None` (SKIPPED).
pub fn azurite() -> Option<String> {
    service_env("LEASING_AZURITE_BLOB_URL")
}

/// An account-key provider on `url` using `container`.
pub fn key_provider(url: &str, container: &str) -> BlobLeaseProvider {
    BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .endpoint(url)
            .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
            .container(container)
            .call_timeout(Duration::from_secs(5))
            .into_config()
            .expect("config"),
    )
    .expect("build")
}

/// An account SAS for the emulator account (blob service; service, container and object
/// resources; read, write, delete, list, add, create, update), signed with its key.
pub fn account_sas() -> String {
    account_sas_with("rwdlacu", "sco")
}

/// An account SAS for the emulator account with permissions `sp` on resource types `srt`.
pub fn account_sas_with(sp: &str, srt: &str) -> String {
    let se = "2099-01-01T00:00:00Z";
    let sv = "2020-12-06";
    let to_sign = format!("{DEV_ACCOUNT}\n{sp}\nb\n{srt}\n\n{se}\n\nhttps,http\n{sv}\n\n");
    let sig = azure_core::hmac::hmac_sha256(
        &to_sign,
        &azure_core::credentials::Secret::new(DEV_ACCOUNT_KEY),
    )
    .expect("sign");
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    format!("sv={sv}&ss=b&srt={srt}&sp={sp}&se={se}&spr=https,http&sig={sig}")
}

fn b64url(bytes: &[u8]) -> String {
    azure_core::base64::encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// An unsigned JWT that Azurite's `--oauth basic` accepts (it checks issuer, audience and
/// lifetime, not the signature).
pub fn azurite_jwt() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = br#"{"alg":"none","typ":"JWT"}"#;
    let payload = format!(
        r#"{{"aud":"https://storage.azure.com","iss":"https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/","iat":{},"nbf":{},"exp":{},"oid":"leasing-test","tid":"ab1f708d-50f6-404c-a006-d71b2ac7a606"}}"#,
        now - 60,
        now - 60,
        now + 3600
    );
    format!("{}.{}.", b64url(header), b64url(payload.as_bytes()))
}

/// A token credential that always hands out one static token.
#[derive(Debug)]
pub struct StaticToken(pub String);

impl azure_core::credentials::TokenCredential for StaticToken {
    fn get_token<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        _scopes: &'life1 [&'life2 str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'life3>>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = azure_core::Result<azure_core::credentials::AccessToken>,
                > + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        let token = self.0.clone();
        Box::pin(async move {
            Ok(azure_core::credentials::AccessToken::new(
                token,
                azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
            ))
        })
    }
}

/// The HTTPS + OAuth Azurite endpoint and its CA (PEM), or `None` (SKIPPED).
pub fn azurite_https() -> Option<(String, Vec<u8>)> {
    let url = service_env("LEASING_AZURITE_HTTPS_URL")?;
    let ca = service_env("LEASING_AZURITE_CA")?;
    Some((url, std::fs::read(ca).expect("read the Azurite CA")))
}

/// A token-credential provider on the HTTPS Azurite.
pub fn token_provider(url: &str, ca: &[u8], container: &str, token: &str) -> BlobLeaseProvider {
    BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .endpoint(url)
            .credential(std::sync::Arc::new(StaticToken(token.to_owned())))
            .root_certificates_pem(ca.to_vec())
            .container(container)
            .into_config()
            .expect("config"),
    )
    .expect("build")
}

/// A SAS provider on `url`.
pub fn sas_provider(url: &str, container: &str) -> BlobLeaseProvider {
    BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .sas_url(format!("{url}?{}", account_sas()))
            .container(container)
            .into_config()
            .expect("config"),
    )
    .expect("build")
}
