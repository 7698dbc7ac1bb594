//! How the provider authenticates: an account key (given, or from a connection string)
//! or a token credential (given, or chosen from the environment by
//! `leasing_azure::credential`, in the order shared with the Blob provider).

use azure_core::credentials::{Secret, TokenCredential};
use leasing_abstractions::{LeaseError, Result};
use leasing_azure::ConnectionString;
use std::fmt;
use std::sync::Arc;

/// How the provider authenticates.
#[derive(Clone)]
pub(crate) enum Auth {
    /// Account key (primary or secondary), from a key or a connection string.
    Key(Secret),
    /// A Microsoft Entra ID token credential.
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Key(_) => f.write_str("Key(<redacted>)"),
            Auth::Token(_) => f.write_str("TokenCredential"),
        }
    }
}

/// A parsed connection string: `AccountEndpoint=https://…;AccountKey=…;`.
pub(crate) fn parse_connection_string(s: &str) -> Result<(String, Secret)> {
    let parts = ConnectionString::parse(s)?;
    // The key is base64 and may end with '=': the value is everything after the first '='.
    match (parts.get("AccountEndpoint"), parts.get("AccountKey")) {
        (Some(e), Some(k)) if !e.is_empty() && !k.is_empty() => {
            Ok((e.to_owned(), Secret::new(k.to_owned())))
        }
        _ => Err(LeaseError::configuration(
            "connection_string",
            "needs both AccountEndpoint and AccountKey",
        )),
    }
}

/// Checks an account key before any request: the SDK signs every request with the
/// base64-decoded key, so a key that does not decode cannot sign anything. The message
/// never contains the key.
pub(crate) fn validate_key(key: &Secret) -> Result<()> {
    match azure_core::base64::decode(key.secret()) {
        Ok(bytes) if !bytes.is_empty() => Ok(()),
        Ok(_) => Err(LeaseError::configuration(
            "key",
            "the account key is empty (AccountKey in a connection string)",
        )),
        Err(_) => Err(LeaseError::configuration(
            "key",
            "the account key (AccountKey in a connection string) is not valid base64; copy the primary or secondary key of the account as shown in the portal",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse_and_reject_incomplete_ones() {
        let (e, k) = parse_connection_string(
            "AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=abc==;Database=x",
        )
        .expect("parse");
        assert_eq!(e, "https://acct.documents.azure.com:443/");
        assert_eq!(k.secret(), "abc==");
        for bad in [
            "",
            "AccountEndpoint=https://x/",
            "AccountKey=k",
            "garbage",
            "AccountEndpoint=;AccountKey=k",
            "AccountEndpoint=https://x/;AccountKey=",
        ] {
            let err = parse_connection_string(bad).expect_err(bad);
            assert_eq!(err.field(), Some("connection_string"));
            assert!(!err.to_string().contains("k;"), "{err}");
        }
    }

    #[test]
    fn keys_must_be_base64_and_are_never_printed() {
        validate_key(&Secret::new("a2V5")).expect("base64");
        validate_key(&Secret::new(
            "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==",
        ))
        .expect("the emulator's key");
        for bad in ["not base64!", "a2V5=", "s3cr3t-key-value", ""] {
            let e = validate_key(&Secret::new(bad)).expect_err(bad);
            assert_eq!(e.field(), Some("key"), "{bad}");
            let text = format!("{e} {e:?}");
            assert!(bad.is_empty() || !text.contains(bad), "{text}");
        }
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(
            format!("{:?}", Auth::Key(Secret::new("sekrit"))),
            "Key(<redacted>)"
        );
    }
}
