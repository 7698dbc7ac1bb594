//! `Name=Value;…` connection strings (Azure Storage, Cosmos DB).

use leasing_abstractions::{LeaseError, Result};
use std::collections::HashMap;
use std::fmt;

/// The parts of a connection string: names compared without case, values trimmed. Its
/// `Debug` shows the names only (values may be keys).
#[derive(Clone, Default)]
pub struct ConnectionString {
    parts: HashMap<String, String>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.parts.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("ConnectionString")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    /// Splits `s` at `;` into `Name=Value` parts (empty parts are skipped; a value may hold
    /// `=`, as base64 keys do; a name given twice keeps its last value).
    ///
    /// # Errors
    /// `Configuration`, field `connection_string`, when a part has no `=`; the message
    /// never holds the string.
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_azure::ConnectionString;
    /// let cs = ConnectionString::parse("AccountName=acct; AccountKey=a2V5==;")?;
    /// assert_eq!(cs.get("accountname"), Some("acct"));
    /// assert_eq!(cs.get("AccountKey"), Some("a2V5=="));
    /// assert!(!format!("{cs:?}").contains("a2V5"));
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = HashMap::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(LeaseError::configuration(
                    "connection_string",
                    "each part must be Name=Value",
                ));
            };
            parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        Ok(Self { parts })
    }

    /// The value of part `name` (any case), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.parts
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_errors() {
        let cs = ConnectionString::parse(" A=1 ;;b = x=y; a=2").unwrap();
        assert_eq!(cs.get("a"), Some("2"));
        assert_eq!(cs.get("B"), Some("x=y"));
        assert_eq!(cs.get("c"), None);
        assert_eq!(
            format!("{cs:?}"),
            r#"ConnectionString { names: ["a", "b"], .. }"#
        );
        assert!(ConnectionString::parse("").unwrap().get("a").is_none());
        let e = ConnectionString::parse("AccountKey=SECRET;garbage").unwrap_err();
        assert_eq!(e.field(), Some("connection_string"));
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}
