//! The shared services' settings: read from the environment that `scripts/*-up.sh` write
//! (`target/services/*.env`), with a loud SKIPPED line when they are not there, and a
//! failure instead under `LEASING_REQUIRE_SERVICES=1` (as `build_test.sh` and CI run).

use super::ServiceError;

/// Whether a missing service fails the test instead of skipping it:
/// `LEASING_REQUIRE_SERVICES=1`.
#[must_use]
pub fn required() -> bool {
    std::env::var("LEASING_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The value of `var`, or `None` after a loud `SKIPPED:` line on stderr that says how to
/// start the service it belongs to.
///
/// # Panics
///
/// When `var` is unset or empty under `LEASING_REQUIRE_SERVICES=1`.
#[must_use]
pub fn service_env(var: &str) -> Option<String> {
    lookup(var, std::env::var(var).ok(), required())
}

pub(super) fn lookup(var: &str, value: Option<String>, required: bool) -> Option<String> {
    match value {
        Some(v) if !v.is_empty() => Some(v),
        _ => {
            skip(&format!("{var} is not set"), how_to_start(var), required);
            None
        }
    }
}

/// The started server, or `None` after a loud `SKIPPED:` line when what it needs is not
/// installed ([`ServiceError::is_missing`]).
///
/// # Panics
///
/// When the server was there and failed to start, and, under
/// `LEASING_REQUIRE_SERVICES=1`, when it is not installed: either way with the error.
pub fn skip_if_missing<T>(started: Result<T, ServiceError>) -> Option<T> {
    skip_if_missing_with(started, required())
}

pub(super) fn skip_if_missing_with<T>(
    started: Result<T, ServiceError>,
    required: bool,
) -> Option<T> {
    match started {
        Ok(t) => Some(t),
        Err(e) if e.is_missing() => {
            skip(&e.to_string(), "", required);
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Whether `program` runs (`program --version` succeeds); otherwise `false` after a loud
/// `SKIPPED:` line that says `how` to install it.
///
/// # Panics
///
/// When it does not run under `LEASING_REQUIRE_SERVICES=1`.
#[must_use]
pub fn have_program(program: &str, how: &str) -> bool {
    have_program_with(program, how, required())
}

pub(super) fn have_program_with(program: &str, how: &str, required: bool) -> bool {
    let runs = std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        skip(&format!("{program} is not installed"), how, required);
    }
    runs
}

fn skip(what: &str, how: &str, required: bool) {
    let how = if how.is_empty() {
        String::new()
    } else {
        format!("; {how}")
    };
    assert!(
        !required,
        "{what} but LEASING_REQUIRE_SERVICES=1 (a missing service is a failure){how}"
    );
    eprintln!("SKIPPED: {what}{how}");
}

/// How to start the service that sets `var`.
pub(super) fn how_to_start(var: &str) -> &'static str {
    if var.starts_with("LEASING_REDIS") || var.starts_with("LEASING_REDLOCK") {
        "start the servers with scripts/redis-up.sh and source target/services/redis.env"
    } else if var.contains("AZURITE") || var.starts_with("AZURE_STORAGE") {
        "start Azurite with scripts/azurite-up.sh and source target/services/azurite.env"
    } else if var.starts_with("LEASING_COSMOS") || var == "LEASING_FAKETIME" {
        "start the emulator with scripts/cosmos-up.sh and source target/services/cosmos.env"
    } else {
        "start the services with scripts/*-up.sh and source target/services/*.env"
    }
}
