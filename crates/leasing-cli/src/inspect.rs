//! `leasing status`, `list`, `break` and `health`: what an operator asks of the backend.

use crate::exit::{self, CliError};
use crate::output::{self, LeaseJson};
use distributed_leasing::{probe_provider, HealthStatus, LeaseManager};
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime};

/// `leasing status` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit code 0 when the name is held, 1 when it is free.

Examples:
  leasing status nightly-report
  leasing status --json nightly-report | jq .fencing_token")]
pub(crate) struct StatusArgs {
    /// The lease name.
    name: String,
    /// Print JSON (fields: docs/cli.md).
    #[arg(long)]
    json: bool,
}

/// `leasing list` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  leasing list
  leasing list --prefix billing/ --json")]
pub(crate) struct ListArgs {
    /// Only names starting with this.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Print a JSON array (fields: docs/cli.md).
    #[arg(long)]
    json: bool,
}

/// `leasing break` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The name is free at once. The broken holder learns it at its next \
renewal and until then still believes it holds the lease (under `leasing exec` its command \
is then stopped); its fencing token is older than the next holder's, so a resource that \
checks tokens refuses its late writes. Break only a holder known to be gone or stuck.

Examples:
  leasing break stuck-job
  leasing break --yes stuck-job"
)]
pub(crate) struct BreakArgs {
    /// The lease name.
    name: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    yes: bool,
}

/// `leasing health` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Acquires and releases a probe lease. Exit code 0 when healthy, 1 \
otherwise.

Example:
  leasing health --timeout 5s"
)]
pub(crate) struct HealthArgs {
    /// How long the probe may take.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print JSON: status, description, data.
    #[arg(long)]
    json: bool,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub(crate) async fn status(m: &LeaseManager, a: StatusArgs) -> Result<u8, CliError> {
    let info = m
        .inspect(&a.name)
        .await
        .map_err(|e| CliError::backend(&format!("inspecting {}", a.name), &e))?;
    let now = SystemTime::now();
    let held = info.is_some();
    match (info, a.json) {
        (Some(i), true) => println!("{}", json(&LeaseJson::new(&i, now))),
        (Some(i), false) => print!("{}", output::status_text(&i, now)),
        (None, true) => println!(
            "{}",
            json(&serde_json::json!({ "name": a.name, "held": false }))
        ),
        (None, false) => println!("{}: free", a.name),
    }
    Ok(if held { 0 } else { exit::NEGATIVE })
}

pub(crate) async fn list(m: &LeaseManager, a: ListArgs) -> Result<u8, CliError> {
    let mut leases = m.list_all(&a.prefix).await.map_err(|e| {
        CliError::backend(&format!("listing leases starting with {:?}", a.prefix), &e)
    })?;
    leases.sort_by(|x, y| x.name.cmp(&y.name));
    let now = SystemTime::now();
    if a.json {
        let all: Vec<LeaseJson> = leases.iter().map(|i| LeaseJson::new(i, now)).collect();
        println!("{}", json(&all));
    } else if leases.is_empty() {
        println!(
            "no leases held{}",
            if a.prefix.is_empty() {
                String::new()
            } else {
                format!(" starting with {:?}", a.prefix)
            }
        );
    } else {
        print!("{}", output::table(&leases, now));
    }
    Ok(0)
}

pub(crate) async fn break_lease(m: &LeaseManager, a: BreakArgs) -> Result<u8, CliError> {
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(format!(
                "break {} needs confirmation: run it on a terminal, or add --yes",
                a.name
            )));
        }
        let holder = match m.inspect(&a.name).await {
            Ok(Some(i)) => format!(
                "held by {} (token {})",
                i.metadata
                    .get("owner")
                    .map_or("an unnamed holder", String::as_str),
                i.fencing_token
            ),
            Ok(None) => "not held".into(),
            Err(e) => format!("unknown ({e})"),
        };
        eprint!("{} is {holder}. Break it? [y/N] ", a.name);
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("not broken");
            return Ok(exit::NEGATIVE);
        }
    }
    let broken = m
        .break_lease(&a.name)
        .await
        .map_err(|e| CliError::backend(&format!("breaking {}", a.name), &e))?;
    if broken {
        println!(
            "{}: broken. The name is free now; the old holder learns it at its next renewal \
             (until then it still believes it holds it); its fencing token is older than the \
             next holder's.",
            a.name
        );
    } else {
        println!("{}: not held, nothing to break", a.name);
    }
    Ok(0)
}

pub(crate) async fn health(m: &LeaseManager, a: HealthArgs) -> Result<u8, CliError> {
    let report = probe_provider(m.provider().as_ref(), a.timeout).await;
    if a.json {
        println!(
            "{}",
            json(&serde_json::json!({
                "status": report.status.to_string(),
                "description": report.description,
                "data": report.data,
            }))
        );
    } else {
        println!("{}: {}", report.status, report.description);
        for (k, v) in &report.data {
            println!("  {k:<12}{v}");
        }
    }
    Ok(if report.status == HealthStatus::Healthy {
        0
    } else {
        exit::NEGATIVE
    })
}
