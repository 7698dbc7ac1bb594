//! The parts that read the environment, tested without touching it.

use super::env::{have_program_with, how_to_start, lookup, skip_if_missing_with};
use super::process::{log_tail, parse_start_timeout};
use super::ServiceError;
use std::time::Duration;

#[test]
fn a_set_variable_is_returned_and_an_unset_one_skips() {
    assert_eq!(lookup("X", Some("v".into()), false).as_deref(), Some("v"));
    assert_eq!(lookup("X", Some(String::new()), false), None);
    assert_eq!(lookup("X", None, false), None);
}

#[test]
#[should_panic(expected = "LEASING_REDIS_URL is not set but LEASING_REQUIRE_SERVICES=1")]
fn an_unset_variable_fails_when_services_are_required() {
    let _ = lookup("LEASING_REDIS_URL", None, true);
}

#[test]
fn each_service_says_how_to_start_it() {
    for (var, script) in [
        ("LEASING_REDIS_URL", "redis-up.sh"),
        ("LEASING_REDLOCK_URLS", "redis-up.sh"),
        ("LEASING_AZURITE_BLOB_URL", "azurite-up.sh"),
        ("AZURE_STORAGE_CONNECTION_STRING", "azurite-up.sh"),
        ("LEASING_COSMOS_CONNECTION_STRING", "cosmos-up.sh"),
        ("LEASING_FAKETIME", "cosmos-up.sh"),
        ("ANYTHING_ELSE", "*-up.sh"),
    ] {
        assert!(how_to_start(var).contains(script), "{var}");
    }
}

#[test]
fn a_missing_program_skips_unless_required() {
    assert_eq!(
        skip_if_missing_with(Ok::<_, ServiceError>(1), true),
        Some(1)
    );
    let missing = ServiceError::missing("redis-server is not installed");
    assert!(missing.is_missing());
    assert_eq!(skip_if_missing_with::<()>(Err(missing), false), None);
}

#[test]
#[should_panic(expected = "redis-server is not installed but LEASING_REQUIRE_SERVICES=1")]
fn a_missing_program_fails_when_services_are_required() {
    let _ = skip_if_missing_with::<()>(
        Err(ServiceError::missing("redis-server is not installed")),
        true,
    );
}

#[test]
#[should_panic(expected = "it exited")]
fn a_server_that_failed_always_fails() {
    let _ = skip_if_missing_with::<()>(Err(ServiceError::failed("it exited")), false);
}

#[test]
fn the_start_bound_is_180_s_unless_set() {
    assert_eq!(parse_start_timeout(None), Ok(Duration::from_secs(180)));
    assert_eq!(parse_start_timeout(Some(" ")), Ok(Duration::from_secs(180)));
    assert_eq!(parse_start_timeout(Some("7")), Ok(Duration::from_secs(7)));
    for bad in ["0", "-1", "1.5", "ten"] {
        let e = parse_start_timeout(Some(bad)).expect_err(bad);
        assert!(
            e.to_string().contains("LEASING_SERVICE_START_TIMEOUT_SECS"),
            "{e}"
        );
        assert!(!e.is_missing());
    }
}

#[test]
fn a_log_tail_says_where_it_comes_from() {
    let dir = std::env::temp_dir().join(format!("leasing-log-tail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let absent = dir.join("absent.log");
    assert!(log_tail(&absent, 3).contains("no log at"));
    let empty = dir.join("empty.log");
    std::fs::write(&empty, "").expect("write");
    assert!(log_tail(&empty, 3).contains("is empty"));
    let log = dir.join("some.log");
    std::fs::write(&log, "one\ntwo\nthree\nfour\n").expect("write");
    let tail = log_tail(&log, 3);
    assert!(tail.contains("the last 3 lines"), "{tail}");
    assert!(tail.contains("two\n    three\n    four"), "{tail}");
    assert!(!tail.contains("one"), "{tail}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_error_prints_its_message_alone() {
    let e = ServiceError::failed("line one\nline two");
    assert_eq!(format!("{e:?}"), "line one\nline two");
    assert_eq!(e.to_string(), "line one\nline two");
    assert_eq!(String::from(e), "line one\nline two");
}

#[test]
fn a_program_that_does_not_run_skips_unless_required() {
    assert!(have_program_with(env!("CARGO"), "", true));
    assert!(!have_program_with(
        "/nonexistent/leasing-no-such-program",
        "install it",
        false
    ));
}

#[test]
#[should_panic(
    expected = "leasing-no-such-program is not installed but LEASING_REQUIRE_SERVICES=1"
)]
fn a_program_that_does_not_run_fails_when_services_are_required() {
    let _ = have_program_with("/nonexistent/leasing-no-such-program", "install it", true);
}
