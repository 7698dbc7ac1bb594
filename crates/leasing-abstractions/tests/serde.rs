//! Options, lease info and pages (de)serialize with human durations; unknown fields are
//! rejected with an error that names them (issue 7.15).
#![allow(clippy::unwrap_used, missing_docs)]
#![cfg(feature = "serde")]

use leasing_abstractions::*;
use std::time::{Duration, SystemTime};

#[test]
fn options_from_a_config_file() {
    let o: LeaseOptions = serde_json::from_str(
        r#"{
            "default_lease_duration": "15s",
            "acquire_timeout": "1m 30s",
            "acquire_retry_interval": "250ms",
            "auto_renew_max_retries": 5,
            "metadata": { "region": "westeurope" }
        }"#,
    )
    .unwrap();
    assert_eq!(
        o.default_lease_duration,
        LeaseDuration::Finite(Duration::from_secs(15))
    );
    assert_eq!(o.acquire_timeout, Some(Duration::from_secs(90)));
    assert_eq!(o.acquire_retry_interval, Duration::from_millis(250));
    assert_eq!(o.auto_renew_max_retries, Some(5));
    assert_eq!(
        o.auto_renew_interval, None,
        "missing fields take their defaults"
    );
    assert!(o.auto_renew);
    o.validate().unwrap();
    // And back: the same value, durations in human form.
    let text = serde_json::to_string(&o).unwrap();
    assert!(text.contains(r#""default_lease_duration":"15s""#), "{text}");
    assert!(text.contains(r#""acquire_timeout":"1m 30s""#), "{text}");
    assert_eq!(serde_json::from_str::<LeaseOptions>(&text).unwrap(), o);
    let infinite: LeaseOptions =
        serde_json::from_str(r#"{"default_lease_duration":"infinite","acquire_timeout":null}"#)
            .unwrap();
    assert_eq!(infinite.default_lease_duration, LeaseDuration::Infinite);
    assert_eq!(infinite.acquire_timeout, None);
    // "No limit" is spelled like an infinite lease, and written that way.
    let no_limit: LeaseOptions = serde_json::from_str(r#"{"acquire_timeout":"infinite"}"#).unwrap();
    assert_eq!(no_limit.acquire_timeout, None);
    let text = serde_json::to_string(&no_limit).unwrap();
    assert!(text.contains(r#""acquire_timeout":"infinite""#), "{text}");
    assert_eq!(
        serde_json::from_str::<LeaseOptions>(&text).unwrap(),
        no_limit
    );
    assert_eq!(
        serde_json::from_str::<LeaseOptions>("{}").unwrap(),
        LeaseOptions::default()
    );
}

#[test]
fn bad_option_files_are_clear_errors() {
    let e = serde_json::from_str::<LeaseOptions>(r#"{"lease_duration":"15s"}"#).unwrap_err();
    assert!(
        e.to_string().contains("unknown field `lease_duration`"),
        "{e}"
    );
    let e = serde_json::from_str::<LeaseOptions>(r#"{"default_lease_duration":"15 parsecs"}"#)
        .unwrap_err();
    assert!(e.to_string().contains("invalid lease duration"), "{e}");
    let e = serde_json::from_str::<LeaseOptions>(r#"{"acquire_timeout":"soon"}"#).unwrap_err();
    assert!(
        e.to_string().contains(r#"invalid lease duration "soon""#),
        "{e}"
    );
}

#[test]
fn lease_info_and_pages_round_trip() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut md = Metadata::new();
    md.insert("owner".into(), "Zoë 🚀".into());
    for expiry in [
        LeaseExpiry::At(at + Duration::from_secs(30)),
        LeaseExpiry::Never,
        LeaseExpiry::Unknown,
    ] {
        let info = LeaseInfo::new("jobs/42", Some("id".into()), 7, at, expiry, md.clone());
        let page = LeasePage::new(vec![info.clone()], Some("next".into()));
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(
            serde_json::from_str::<LeasePage>(&text).unwrap(),
            page,
            "{text}"
        );
        if expiry == LeaseExpiry::Unknown {
            assert!(text.contains(r#""expires_at":"unknown""#), "{text}");
        }
        assert!(text.contains("2023-11-14T22:13:20Z"), "{text}");
    }
    // Times RFC 3339 cannot write are errors, not panics.
    let far = LeaseExpiry::At(SystemTime::UNIX_EPOCH + Duration::from_secs(300_000_000_000));
    assert!(serde_json::to_string(&far).is_err());
    let before = LeaseInfo::new(
        "n",
        None,
        1,
        SystemTime::UNIX_EPOCH - Duration::from_secs(1),
        LeaseExpiry::Never,
        Metadata::new(),
    );
    let e = serde_json::to_string(&before).unwrap_err();
    assert!(e.to_string().contains("RFC 3339"), "{e}");
    let e = serde_json::from_str::<LeaseExpiry>(r#""tomorrow""#).unwrap_err();
    assert!(e.to_string().contains("invalid expiry"), "{e}");
    assert_eq!(
        serde_json::to_string(&LeaseState::AtRisk).unwrap(),
        r#""at_risk""#
    );
    assert_eq!(
        serde_json::to_string(&ErrorKind::ProviderUnavailable).unwrap(),
        r#""provider_unavailable""#
    );
    assert_eq!(
        serde_json::to_string(&Operation::Break).unwrap(),
        r#""break""#
    );
}
