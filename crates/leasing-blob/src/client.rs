//! The SDK's container client: no SDK retries, the account-key policy or the SAS, the
//! transport (its request timeout, any extra CA).

use crate::config::BlobConfig;
use crate::credential::BlobAuth;
use crate::shared_key::SharedKeyPolicy;
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use leasing_abstractions::{LeaseError, Result};
use std::sync::Arc;

fn config_error(field: &'static str, rule: impl Into<String>) -> LeaseError {
    LeaseError::configuration(field, rule)
}

/// The container client for `config`: no SDK retries, the auth policy or SAS, the
/// transport with any extra CA.
pub(crate) fn container_client(config: &BlobConfig) -> Result<BlobContainerClient> {
    let mut url = config.endpoint.clone();
    url.path_segments_mut()
        .map_err(|()| config_error("endpoint", "cannot be a base URL"))?
        .pop_if_empty()
        .push(&config.container);
    let mut client_options = ClientOptions {
        // Off: a dead server took 81 s to surface through the default retries, longer than
        // any blob lease. The core retries on its own schedule.
        retry: RetryOptions::none(),
        ..ClientOptions::default()
    };
    let mut credential = None;
    match &config.auth {
        BlobAuth::AccountKey { account, key } => client_options
            .per_try_policies
            .push(Arc::new(SharedKeyPolicy::new(account.clone(), key.clone()))),
        BlobAuth::Sas(sas) => url.set_query(Some(sas.secret())),
        BlobAuth::Token(c) => credential = Some(c.clone()),
    }
    client_options.transport = Some(Transport::new(Arc::new(http_client(config)?)));
    let options = BlobContainerClientOptions {
        client_options,
        ..BlobContainerClientOptions::default()
    };
    BlobContainerClient::new(url, credential, Some(options)).map_err(|e| {
        config_error(
            "endpoint",
            format!(
                "rejected by the blob client: {}",
                crate::error::Failure::from_azure(&e)
            ),
        )
    })
}

/// The HTTP transport: the SDK's settings (no redirects, 20 s to connect) with
/// `call_timeout` as the bound of one request, and any extra root certificates. The
/// request bound is a transport setting: within the core, a call's deadline (which the
/// provider applies) usually ends it sooner.
fn http_client(config: &BlobConfig) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20).min(config.call_timeout))
        .timeout(config.call_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &config.root_certificates_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| config_error("root_certificates_pem", format!("unreadable: {e}")))?;
        if certs.is_empty() {
            return Err(config_error(
                "root_certificates_pem",
                "holds no PEM certificate",
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| config_error("root_certificates_pem", format!("HTTP client: {e}")))
}
