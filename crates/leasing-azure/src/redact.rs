//! Error texts without secrets.

/// `e` and its sources, one after the other (a source already contained in the text so far
/// is left out).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// Removes what may carry a secret from an error text: every URL query (a SAS token is
/// one) and any `Authorization`/`SharedKey`/`Bearer` value, `sig=`, `AccountKey=` and
/// `SharedAccessSignature=`.
///
/// # Examples
///
/// ```
/// let text = "GET https://acct.blob.core.windows.net/c?sv=1&sig=SECRET failed";
/// assert_eq!(
///     leasing_azure::redact(text),
///     "GET https://acct.blob.core.windows.net/c?<redacted> failed"
/// );
/// ```
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_query = false;
    for c in text.chars() {
        if in_query {
            if c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ',') {
                in_query = false;
                out.push(c);
            }
            continue;
        }
        if c == '?' {
            in_query = true;
            out.push_str("?<redacted>");
            continue;
        }
        out.push(c);
    }
    for marker in [
        "SharedKey ",
        "Bearer ",
        "sig=",
        "AccountKey=",
        "SharedAccessSignature=",
    ] {
        while let Some(i) = out.find(marker) {
            let start = i + marker.len();
            let end = out[start..]
                .find(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '"')
                .map_or(out.len(), |j| start + j);
            if out[start..end].starts_with("<redacted>") || start == end {
                break;
            }
            out.replace_range(start..end, "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_queries_and_credentials() {
        let text = "error sending request for url (https://a.blob.core.windows.net/c/b?sv=1&sig=SECRET1): Authorization: SharedKey acct:SECRET2 Bearer SECRET3 AccountKey=SECRET4;SharedAccessSignature=SECRET5 sig=SECRET6&se=1 \"sig=SECRET7\" sig=SECRET8";
        let r = redact(text);
        for s in [
            "SECRET1", "SECRET2", "SECRET3", "SECRET4", "SECRET5", "SECRET6",
        ] {
            assert!(!r.contains(s), "{s} in {r}");
        }
        assert!(
            r.contains("https://a.blob.core.windows.net/c/b?<redacted>)"),
            "{r}"
        );
        assert_eq!(redact("plain"), "plain");
        assert_eq!(redact("Bearer "), "Bearer ");
    }

    #[test]
    fn chains_leave_repeated_sources_out() {
        let e = azure_core::Error::new(
            azure_core::error::ErrorKind::Io,
            std::io::Error::other("reset"),
        );
        assert_eq!(chain(&e), "reset");
        let e = azure_core::Error::with_error(
            azure_core::error::ErrorKind::Io,
            std::io::Error::other("reset"),
            "send failed",
        );
        assert_eq!(chain(&e), "send failed: reset");
    }
}
