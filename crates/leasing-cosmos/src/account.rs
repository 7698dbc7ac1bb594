//! Reads the account's properties (write regions) at start-up.
//!
//! The SDK does not expose `enableMultipleWriteLocations`, so we make the one `GET /`
//! ourselves through `azure_core`'s HTTP client, signed as the REST API documents
//! (master-key HMAC, or an Entra ID token). Only this call is hand-written.

use crate::credential::Auth;
use crate::error;
use azure_core::http::{Method, Request, Url};
use leasing_abstractions::{ErrorKind, LeaseError, Result};
use serde::Deserialize;
use std::time::Duration;

/// What start-up needs to know about the account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AccountInfo {
    pub(crate) multiple_write_locations: bool,
    pub(crate) write_locations: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Properties {
    #[serde(default)]
    writable_locations: Vec<Location>,
    #[serde(default)]
    enable_multiple_write_locations: bool,
}

/// `Authorization` for `GET /` at `date` (RFC 7231, as sent in `x-ms-date`).
pub(crate) fn master_key_signature(
    key: &azure_core::credentials::Secret,
    date: &str,
) -> Result<String> {
    let payload = format!("get\n\n\n{}\n\n", date.to_lowercase());
    let sig = azure_core::hmac::hmac_sha256(&payload, key)
        .map_err(|_| LeaseError::configuration("key", "the account key is not valid base64"))?;
    Ok(url_encode(&format!("type=master&ver=1.0&sig={sig}")))
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn parse(body: &[u8]) -> Result<AccountInfo> {
    let p: Properties = serde_json::from_slice(body).map_err(|e| {
        error::corrupt(
            "read account",
            format!("unexpected account properties: {e}"),
        )
    })?;
    Ok(AccountInfo {
        multiple_write_locations: p.enable_multiple_write_locations,
        write_locations: p.writable_locations.into_iter().map(|l| l.name).collect(),
    })
}

/// `GET /` on the account endpoint.
pub(crate) async fn read_account(
    endpoint: &str,
    auth: &Auth,
    timeout: Duration,
) -> Result<AccountInfo> {
    let url = Url::parse(endpoint)
        .map_err(|_| LeaseError::configuration("endpoint", "is not an absolute http(s) URL"))?;
    let fut = async {
        let date = azure_core::time::to_rfc7231(&azure_core::time::OffsetDateTime::now_utc());
        let authorization = match auth {
            Auth::Key(k) => master_key_signature(k, &date)?,
            Auth::Token(c) => {
                let token = c
                    .get_token(&["https://cosmos.azure.com/.default"], None)
                    .await
                    .map_err(|_| {
                        LeaseError::new(
                            ErrorKind::Unauthorized,
                            "cosmos db: could not get a token from the credential",
                        )
                    })?;
                url_encode(&format!("type=aad&ver=1.0&sig={}", token.token.secret()))
            }
        };
        let mut req = Request::new(url, Method::Get);
        req.insert_header("x-ms-date", date);
        req.insert_header("x-ms-version", "2020-07-15");
        req.insert_header("authorization", authorization);
        let client = azure_core::http::new_http_client(None);
        let resp = client.execute_request(&req).await.map_err(|_| {
            LeaseError::unavailable("cosmos db: read account: the endpoint could not be reached")
        })?;
        let status = u16::from(resp.status());
        let body = resp.into_body().collect().await.map_err(|_| {
            LeaseError::unavailable("cosmos db: read account: the answer was cut short")
        })?;
        if !(200..300).contains(&status) {
            return Err(error::map_status(status, None, None, true, "read account").error);
        }
        parse(&body)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| error::deadline("read account", timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::credentials::Secret;

    #[test]
    fn signature_matches_the_documented_scheme() {
        // Key and date from the REST API's "access control" page example shape.
        let key = Secret::new("dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw==");
        let sig = master_key_signature(&key, "Thu, 27 Apr 2017 00:51:12 GMT").expect("sign");
        assert!(
            sig.starts_with("type%3Dmaster%26ver%3D1.0%26sig%3D"),
            "{sig}"
        );
        for c in ['/', '+', '='] {
            assert!(!sig.contains(c), "{sig}");
        }
        let e = master_key_signature(&Secret::new("not base64!"), "x").expect_err("bad key");
        assert_eq!(e.field(), Some("key"));
    }

    #[test]
    fn account_properties_give_the_write_regions() {
        let info = parse(br#"{"writableLocations":[{"name":"West Europe","databaseAccountEndpoint":"x"},{"name":"East US"}],"enableMultipleWriteLocations":true}"#)
            .expect("parse");
        assert!(info.multiple_write_locations);
        assert_eq!(info.write_locations, ["West Europe", "East US"]);
        assert_eq!(parse(b"{}").expect("parse"), AccountInfo::default());
        assert!(parse(b"not json").is_err());
    }
}

#[cfg(test)]
mod server_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server answering `response` to the first request.
    async fn answer(response: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn an_unauthorized_answer_is_unauthorized_and_a_silent_one_times_out() {
        let key = Auth::Key(azure_core::credentials::Secret::new("a2V5"));
        let url =
            answer("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        let e = read_account(&url, &key, Duration::from_secs(5))
            .await
            .expect_err("401");
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
        let url = answer("HTTP/1.1 200 OK\r\ncontent-length: 48\r\nconnection: close\r\n\r\n{\"writableLocations\":[{\"name\":\"West Europe\"}]}  ").await;
        let info = read_account(&url, &key, Duration::from_secs(5))
            .await
            .expect("200");
        assert_eq!(info.write_locations, ["West Europe"]);
        // Accepts, never answers: the deadline.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let e = read_account(&url, &key, Duration::from_millis(300))
            .await
            .expect_err("silent");
        assert!(e.is_retryable(), "{e}");
        drop(listener);
        let e = read_account("not a url", &key, Duration::from_secs(1))
            .await
            .expect_err("url");
        assert_eq!(e.field(), Some("endpoint"));
    }
}
