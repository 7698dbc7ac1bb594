//! A Microsoft Entra ID token credential chosen from the environment, in one order for
//! every Azure provider.
//!
//! The order (the first that applies wins):
//!
//! 1. the credential the provider's selector variable names (`LEASING_BLOB_CREDENTIAL`,
//!    `LEASING_COSMOS_CREDENTIAL`): `client-secret`, `workload-identity`,
//!    `managed-identity` or `developer-tools`;
//! 2. client secret, when `AZURE_CLIENT_SECRET` is set (it needs `AZURE_TENANT_ID` and
//!    `AZURE_CLIENT_ID`: one of them missing is an error naming it, not a fall-through to
//!    another identity);
//! 3. workload identity, when `AZURE_FEDERATED_TOKEN_FILE` is set;
//! 4. managed identity, when `IDENTITY_ENDPOINT` or `MSI_ENDPOINT` is set (on a VM with
//!    only IMDS, name `managed-identity` in the selector variable);
//! 5. the developer tools (Azure CLI, then Azure Developer CLI).
//!
//! The choice is made from which variables are set, never by trying each credential in
//! turn. An empty variable counts as unset.

use crate::redact::{chain, redact};
use azure_core::credentials::{Secret, TokenCredential};
use leasing_abstractions::{LeaseError, Result};
use std::sync::Arc;

/// The variables that choose and configure a token credential (besides the provider's
/// selector variable).
pub mod env {
    /// The client secret of an app registration.
    pub const CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
    /// The tenant of the app registration.
    pub const TENANT_ID: &str = "AZURE_TENANT_ID";
    /// The client (application) id.
    pub const CLIENT_ID: &str = "AZURE_CLIENT_ID";
    /// The token file of workload identity (set by AKS).
    pub const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
    /// The managed-identity endpoint of App Service, Functions, Container Apps, Arc.
    pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
    /// The older managed-identity endpoint variable.
    pub const MSI_ENDPOINT: &str = "MSI_ENDPOINT";
}

/// A way of looking up an environment variable (`None`: unset).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Which token credential the environment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialKind {
    /// `ClientSecretCredential` (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
    ClientSecret,
    /// `WorkloadIdentityCredential`.
    WorkloadIdentity,
    /// `ManagedIdentityCredential`.
    ManagedIdentity,
    /// `DeveloperToolsCredential` (Azure CLI, then Azure Developer CLI).
    DeveloperTools,
}

impl CredentialKind {
    /// Every kind, in the order of the automatic choice.
    pub const ALL: [CredentialKind; 4] = [
        Self::ClientSecret,
        Self::WorkloadIdentity,
        Self::ManagedIdentity,
        Self::DeveloperTools,
    ];

    /// The name a selector variable uses for this kind (`client-secret`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientSecret => "client-secret",
            Self::WorkloadIdentity => "workload-identity",
            Self::ManagedIdentity => "managed-identity",
            Self::DeveloperTools => "developer-tools",
        }
    }

    /// The kind a selector variable names, if it names one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

fn config_error(rule: impl Into<String>) -> LeaseError {
    LeaseError::configuration("credential", rule)
}

/// `var(k)`, with an empty value counted as unset.
fn set(var: Lookup<'_>, k: &str) -> Option<String> {
    var(k).filter(|v| !v.is_empty())
}

/// The credential the environment asks for, in the order of the [module docs](self);
/// `selector` is the provider's variable (`LEASING_BLOB_CREDENTIAL`, …).
///
/// # Errors
/// `Configuration` (field `credential`) when `selector` holds a name that is not one of
/// the four kinds; the message names the variable.
pub fn credential_kind(selector: &str, var: Lookup<'_>) -> Result<CredentialKind> {
    if let Some(name) = set(var, selector) {
        return CredentialKind::from_name(&name).ok_or_else(|| {
            config_error(format!(
                "{selector}={name:?} is not one of client-secret, workload-identity, managed-identity, developer-tools"
            ))
        });
    }
    let has = |k: &str| set(var, k).is_some();
    Ok(if has(env::CLIENT_SECRET) {
        CredentialKind::ClientSecret
    } else if has(env::FEDERATED_TOKEN_FILE) {
        CredentialKind::WorkloadIdentity
    } else if has(env::IDENTITY_ENDPOINT) || has(env::MSI_ENDPOINT) {
        CredentialKind::ManagedIdentity
    } else {
        CredentialKind::DeveloperTools
    })
}

/// Creates the credential of `kind` with `azure_identity`; a client secret reads its
/// three variables through `var`, the others read the process environment themselves.
///
/// # Errors
/// `Configuration` (field `credential`) naming a missing variable, or saying why
/// `azure_identity` refused (never a secret's value).
pub fn token_credential(kind: CredentialKind, var: Lookup<'_>) -> Result<Arc<dyn TokenCredential>> {
    use azure_identity::{
        ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
        WorkloadIdentityCredential,
    };
    let created: azure_core::Result<Arc<dyn TokenCredential>> = match kind {
        CredentialKind::ClientSecret => {
            let need = |k: &str| set(var, k).ok_or_else(|| config_error(format!("{k} is not set")));
            let (tenant, client, secret) = (
                need(env::TENANT_ID)?,
                need(env::CLIENT_ID)?,
                need(env::CLIENT_SECRET)?,
            );
            ClientSecretCredential::new(&tenant, client, Secret::new(secret), None)
                .map(|c| c as Arc<dyn TokenCredential>)
        }
        CredentialKind::WorkloadIdentity => {
            WorkloadIdentityCredential::new(None).map(|c| c as Arc<dyn TokenCredential>)
        }
        CredentialKind::ManagedIdentity => {
            ManagedIdentityCredential::new(None).map(|c| c as Arc<dyn TokenCredential>)
        }
        CredentialKind::DeveloperTools => {
            DeveloperToolsCredential::new(None).map(|c| c as Arc<dyn TokenCredential>)
        }
    };
    created.map_err(|e| config_error(format!("could not be created: {}", redact(&chain(&e)))))
}

/// [`credential_kind`] then [`token_credential`]: the token credential the environment
/// asks for.
///
/// # Errors
/// As those two.
///
/// # Examples
///
/// ```
/// use leasing_azure::credential::credential_from_env;
/// let var = |k: &str| match k {
///     "LEASING_BLOB_CREDENTIAL" => Some("managed-identity".to_owned()),
///     _ => None,
/// };
/// let credential = credential_from_env("LEASING_BLOB_CREDENTIAL", &var)?;
/// # let _ = credential;
/// # Ok::<(), leasing_abstractions::LeaseError>(())
/// ```
pub fn credential_from_env(selector: &str, var: Lookup<'_>) -> Result<Arc<dyn TokenCredential>> {
    token_credential(credential_kind(selector, var)?, var)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasing_abstractions::ErrorKind;
    use std::collections::HashMap;

    const SELECTOR: &str = "LEASING_TEST_CREDENTIAL";

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    fn kind(pairs: &[(&str, &str)]) -> Result<CredentialKind> {
        credential_kind(SELECTOR, &vars(pairs))
    }

    #[test]
    fn the_order() {
        use CredentialKind::*;
        assert_eq!(kind(&[]).unwrap(), DeveloperTools);
        assert_eq!(kind(&[("MSI_ENDPOINT", "x")]).unwrap(), ManagedIdentity);
        assert_eq!(
            kind(&[("IDENTITY_ENDPOINT", "x")]).unwrap(),
            ManagedIdentity
        );
        assert_eq!(
            kind(&[("AZURE_FEDERATED_TOKEN_FILE", "f"), ("MSI_ENDPOINT", "x")]).unwrap(),
            WorkloadIdentity
        );
        assert_eq!(
            kind(&[
                ("AZURE_CLIENT_SECRET", "s"),
                ("AZURE_FEDERATED_TOKEN_FILE", "f")
            ])
            .unwrap(),
            ClientSecret
        );
        // Empty counts as unset, for the selector too.
        assert_eq!(
            kind(&[("AZURE_CLIENT_SECRET", ""), (SELECTOR, "")]).unwrap(),
            DeveloperTools
        );
        for k in CredentialKind::ALL {
            assert_eq!(kind(&[(SELECTOR, k.name())]).unwrap(), k);
            assert_eq!(CredentialKind::from_name(k.name()), Some(k));
        }
        // The selector wins over what is set.
        assert_eq!(
            kind(&[(SELECTOR, "developer-tools"), ("AZURE_CLIENT_SECRET", "s")]).unwrap(),
            DeveloperTools
        );
        let e = kind(&[(SELECTOR, "magic")]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert_eq!(e.field(), Some("credential"));
        assert!(e.to_string().contains(SELECTOR), "{e}");
        assert!(e.to_string().contains("managed-identity"), "{e}");
    }

    #[test]
    fn credentials_are_created_or_say_what_is_missing() {
        use CredentialKind::*;
        let secret = vars(&[
            ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("AZURE_CLIENT_ID", "id"),
            ("AZURE_CLIENT_SECRET", "SECRETVALUE"),
        ]);
        token_credential(ClientSecret, &secret).unwrap();
        credential_from_env(SELECTOR, &secret).unwrap();
        for (missing, pairs) in [
            ("AZURE_TENANT_ID", vec![("AZURE_CLIENT_ID", "id")]),
            ("AZURE_CLIENT_ID", vec![("AZURE_TENANT_ID", "t")]),
            (
                "AZURE_CLIENT_SECRET",
                vec![("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "id")],
            ),
        ] {
            let e = token_credential(ClientSecret, &vars(&pairs)).unwrap_err();
            assert_eq!(e.field(), Some("credential"));
            assert!(e.to_string().contains(missing), "{e}");
        }
        // Only the secret set: client secret is chosen, and the missing tenant is named.
        let e = credential_from_env(SELECTOR, &vars(&[("AZURE_CLIENT_SECRET", "SECRETVALUE")]))
            .unwrap_err();
        assert!(e.to_string().contains("AZURE_TENANT_ID"), "{e}");
        let bad_tenant = vars(&[
            ("AZURE_TENANT_ID", "not a tenant!"),
            ("AZURE_CLIENT_ID", "id"),
            ("AZURE_CLIENT_SECRET", "SECRETVALUE"),
        ]);
        let e = token_credential(ClientSecret, &bad_tenant).unwrap_err();
        assert!(e.to_string().contains("could not be created"), "{e}");
        assert!(!format!("{e} {e:?}").contains("SECRETVALUE"));
        token_credential(ManagedIdentity, &vars(&[])).unwrap();
        token_credential(DeveloperTools, &vars(&[])).unwrap();
        // Workload identity reads its variables from the process environment.
        if let Err(e) = token_credential(WorkloadIdentity, &vars(&[])) {
            assert_eq!(e.field(), Some("credential"));
        }
        assert!(credential_from_env(SELECTOR, &vars(&[(SELECTOR, "nope")])).is_err());
    }
}
