//! How requests are authorized: an account key, a SAS or a token credential. The token
//! credential `from_env` picks is chosen by `leasing_azure::credential`, in the order
//! shared with the Cosmos DB provider.

use azure_core::credentials::{Secret, TokenCredential};
use std::fmt;
use std::sync::Arc;

/// How requests are authorized.
#[derive(Clone)]
#[non_exhaustive]
pub enum BlobAuth {
    /// Account name and key: each request is signed (SharedKey).
    AccountKey {
        /// Storage account name.
        account: String,
        /// Base64 account key.
        key: Secret,
    },
    /// A shared access signature: the query string (without `?`) added to every request.
    Sas(Secret),
    /// A Microsoft Entra ID token credential from `azure_identity` (HTTPS only).
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobAuth::AccountKey { account, .. } => f
                .debug_struct("AccountKey")
                .field("account", account)
                .field("key", &"<redacted>")
                .finish(),
            BlobAuth::Sas(_) => f.write_str("Sas(<redacted>)"),
            BlobAuth::Token(_) => f.write_str("Token(<credential>)"),
        }
    }
}
