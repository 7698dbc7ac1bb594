//! Refused credentials: a wrong key, a read-only SAS, a SAS that cannot create the
//! container, an expired token. Each is `Unauthorized`, and no secret shows in the error.

mod common;

use common::{azurite, container, unique};
use leasing_abstractions::{
    AcquireRequest, ErrorKind, LeaseError, LeaseGrant, LeaseProvider, ListRequest, Metadata,
};
use leasing_blob::{BlobLeaseProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use std::time::Duration;

fn req(name: &str) -> AcquireRequest {
    AcquireRequest::new(name, Duration::from_secs(15), Metadata::new())
}

fn assert_refused(e: &LeaseError, secrets: &[&str]) {
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    let text = format!("{e} {e:?}");
    for s in secrets {
        assert!(!text.contains(s), "a secret appears in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_account_key_is_unauthorized_for_every_operation() {
    let Some(url) = azurite() else { return };
    let key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=";
    let p = BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .endpoint(&url)
            .account_key(DEV_ACCOUNT, key)
            .container(container("wrongkey"))
            .into_config()
            .expect("config"),
    )
    .expect("build");
    let name = unique("wrongkey");
    let secrets = [key];
    assert_refused(
        &p.try_acquire(&req(&name)).await.expect_err("acquire"),
        &secrets,
    );
    assert_refused(&p.inspect(&name).await.expect_err("inspect"), &secrets);
    assert_refused(&p.break_lease(&name).await.expect_err("break"), &secrets);
    assert_refused(
        &p.list(&ListRequest::new("")).await.expect_err("list"),
        &secrets,
    );
    let fake = LeaseGrant::new(
        &req(&name),
        uuid::Uuid::new_v4().to_string(),
        1,
        std::time::SystemTime::now(),
        tokio::time::Instant::now(),
    );
    assert_refused(&p.renew(&fake).await.expect_err("renew"), &secrets);
    assert_refused(&p.release(&fake).await.expect_err("release"), &secrets);
    assert!(!format!("{p:?}").contains(key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sas_can_inspect_but_not_acquire() {
    let Some(url) = azurite() else { return };
    let c = container("readonly");
    let name = unique("readonly");
    // Create the container and the lease's blob with full rights first.
    let full = common::key_provider(&url, &c);
    let g = full
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    full.release(&g).await.expect("release");
    let sas = common::account_sas_with("rl", "sco");
    let sig = sas.split("sig=").nth(1).expect("sig").to_owned();
    let p = BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .sas_url(format!("{url}?{sas}"))
            .container(&c)
            .into_config()
            .expect("config"),
    )
    .expect("build");
    assert!(p.inspect(&name).await.expect("inspect").is_none());
    assert!(p
        .list(&ListRequest::new(""))
        .await
        .expect("list")
        .leases
        .is_empty());
    let e = p.try_acquire(&req(&name)).await.expect_err("acquire");
    assert_refused(&e, &[&sas, &sig]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sas_without_container_rights_cannot_create_the_container() {
    let Some(url) = azurite() else { return };
    let sas = common::account_sas_with("rwdlacu", "o");
    let sig = sas.split("sig=").nth(1).expect("sig").to_owned();
    let p = BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .container_sas_url(format!("{url}/{}?{sas}", container("nocreate")))
            .into_config()
            .expect("config"),
    )
    .expect("build");
    let e = p
        .try_acquire(&req(&unique("nocreate")))
        .await
        .expect_err("acquire");
    assert_refused(&e, &[&sas, &sig]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_unauthorized_and_a_token_needs_https() {
    let Some((url, ca)) = common::azurite_https() else {
        return;
    };
    let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    // {"aud":"https://storage.azure.com","iss":"https://sts.windows.net/x/","iat":1,"nbf":1,"exp":2}
    let payload = "eyJhdWQiOiJodHRwczovL3N0b3JhZ2UuYXp1cmUuY29tIiwiaXNzIjoiaHR0cHM6Ly9zdHMud2luZG93cy5uZXQveC8iLCJpYXQiOjEsIm5iZiI6MSwiZXhwIjoyfQ";
    let token = format!("{header}.{payload}.");
    let p = common::token_provider(&url, &ca, &container("expired"), &token);
    let e = p
        .try_acquire(&req(&unique("expired")))
        .await
        .expect_err("acquire");
    assert_refused(&e, &[&token, payload]);
    let e = BlobLeaseProvider::builder()
        .endpoint(url.replace("https://", "http://"))
        .credential(std::sync::Arc::new(common::StaticToken(token.clone())))
        .into_config()
        .expect_err("a token over http");
    assert_eq!(e.kind(), ErrorKind::Configuration);
    assert_eq!(e.field(), Some("endpoint"));
}

/// `build` fails at once, naming the endpoint, when nothing answers there, when the key is
/// wrong, or when the account does not exist — instead of at the first acquisition after
/// the whole acquire timeout (it used to build without a request).
#[tokio::test]
async fn build_fails_fast_on_a_dead_endpoint_a_wrong_key_or_account() {
    let Some(url) = azurite() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dead = format!("http://127.0.0.1:{port}/devstoreaccount1");
    let started = std::time::Instant::now();
    let e = BlobLeaseProvider::builder()
        .endpoint(&dead)
        .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
        .build()
        .await
        .expect_err("nothing listens there");
    println!("dead endpoint: failed in {:?}: {e}", started.elapsed());
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.to_string().contains(&dead), "names the endpoint: {e}");
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=";
    let e = BlobLeaseProvider::builder()
        .endpoint(&url)
        .account_key(DEV_ACCOUNT, wrong_key)
        .build()
        .await
        .expect_err("wrong key");
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(!format!("{e} {e:?}").contains(wrong_key));
    let other = url.replace("devstoreaccount1", "nosuchaccount");
    let e = BlobLeaseProvider::builder()
        .endpoint(&other)
        .account_key("nosuchaccount", DEV_ACCOUNT_KEY)
        .build()
        .await
        .expect_err("no such account");
    println!("wrong account: {e}");
    assert!(
        matches!(e.kind(), ErrorKind::Configuration | ErrorKind::Unauthorized),
        "{e}"
    );
    assert!(e.to_string().contains("nosuchaccount"), "{e}");
    // A malformed setting is reported by build, naming the field, before any request.
    let e = BlobLeaseProvider::builder()
        .connection_string("garbage")
        .build()
        .await
        .expect_err("garbage");
    assert_eq!(e.field(), Some("connection_string"), "{e}");
    // And the good configuration builds.
    BlobLeaseProvider::builder()
        .endpoint(&url)
        .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
        .container(container("buildcheck"))
        .build()
        .await
        .expect("Azurite answers");
}
