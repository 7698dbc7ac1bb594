#![allow(clippy::unwrap_used)]
//! `leasing status`, `list`, `break`, `health`, `completions`, and what the command says
//! to bad input: exit codes, one-line messages, no secret anywhere.

#[macro_use]
mod common;

use common::*;
use std::process::Stdio;

fn hold(b: &Backend, n: &str) -> (std::process::Child, std::path::PathBuf) {
    let log = temp("hold");
    let mut c = leasing(b);
    c.args(["exec", "--metadata", "owner=tester", n, "--", "sh", "-c"])
        .arg(format!("echo ready >> {}; sleep 120", log.display()))
        .stdin(Stdio::null());
    let mut h = c.spawn().unwrap();
    wait_for_line(&log, "ready", &mut h);
    (h, log)
}

per_backend!(status_list_break_and_health: redis, redlock, blob, cosmos);

fn status_list_break_and_health(b: &Backend) {
    let n = name(b.label);
    let (mut h, _) = hold(b, &n);
    // status, text and JSON.
    let mut c = leasing(b);
    c.args(["status", &n]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with(&format!("{n}: held")), "{s}");
    for row in [
        "holder        tester",
        "fencing token ",
        "acquired at ",
        "time left ",
    ] {
        assert!(s.contains(row), "{row:?} in {s}");
    }
    let mut c = leasing(b);
    c.args(["status", "--json", &n]);
    let v: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(v["owner"], "tester");
    let expected_expiry = if b.label == "blob" { "unknown" } else { "at" };
    assert_eq!(v["expiry"], expected_expiry, "{v}");
    // list: a table with a header, and JSON.
    let mut c = leasing(b);
    c.args(["list", "--prefix", &n]);
    let o = run(c);
    let t = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = t.lines().collect();
    assert!(
        rows[0].starts_with("NAME") && rows[0].contains("TIME LEFT"),
        "{t}"
    );
    assert_eq!(rows.len(), 2, "{t}");
    assert!(rows[1].starts_with(&n) && rows[1].contains("tester"), "{t}");
    // break without a terminal and without --yes: refused, nothing broken.
    let mut c = leasing(b);
    c.args(["break", &n]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--yes"));
    let mut c = leasing(b);
    c.args(["break", "--yes", &n]);
    assert!(run(c).status.success());
    // Broken: the holder's command is stopped (76).
    assert_eq!(wait(&mut h).code(), Some(76));
    let mut c = leasing(b);
    c.args(["break", "--yes", &n]);
    let o = run(c);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not held"),
        "{}",
        text(&o)
    );
    let mut c = leasing(b);
    c.args(["list", "--json", "--prefix", &n]);
    let v: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
    let mut c = leasing(b);
    c.args(["list", "--prefix", &n]);
    assert!(String::from_utf8_lossy(&run(c).stdout).starts_with("no leases held"));
    let mut c = leasing(b);
    c.args(["status", "--json", &n]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["held"], false);
    // health.
    let mut c = leasing(b);
    c.args(["health", "--json"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "Healthy");
    let mut c = leasing(b);
    c.args(["health"]);
    assert!(String::from_utf8_lossy(&run(c).stdout).starts_with("Healthy: "));
}

#[test]
fn a_missing_or_malformed_backend_is_one_line_and_exit_code_two() {
    for (args, needle) in [
        (
            vec!["status", "x"],
            "no backend: set --backend or LEASING_BACKEND",
        ),
        (
            vec!["--backend", "ftp://user:hunter2@host", "list"],
            "scheme \"ftp\"",
        ),
        (vec!["--backend", "redlock://a,b", "list"], "at least 3"),
        (
            vec![
                "--backend",
                "memory",
                "exec",
                "--grace",
                "17s",
                "x",
                "--",
                "true",
            ],
            "27s − 10s = 17s",
        ),
        (
            vec![
                "--backend",
                "memory",
                "exec",
                "--wait",
                "soon",
                "x",
                "--",
                "true",
            ],
            "infinite",
        ),
        (vec!["--backend", "memory", "exec", "x"], "required"),
        // The providers' own variables, asked for and missing.
        (
            vec!["--backend", "blob:", "status", "x"],
            "Azure Blob (from the AZURE_STORAGE_* variables): configuration",
        ),
        (
            vec!["--backend", "cosmos:", "status", "x"],
            "Cosmos DB (from the LEASING_COSMOS_* variables): configuration",
        ),
        // A CA file that cannot be read: refused before anything is dialled.
        (
            vec![
                "--backend",
                "rediss://user:hunter2@127.0.0.1:1?ca_file=/nonexistent/ca.pem",
                "health",
            ],
            "ca_file: cannot read \"/nonexistent/ca.pem\"",
        ),
        (
            vec![
                "--backend",
                "blob:https://acct.blob.core.windows.net/Bad_Name?sv=1&sig=hunter2",
                "list",
            ],
            "\"Bad_Name\" is not a valid container name",
        ),
        (
            vec![
                "--backend",
                "memory",
                "exec",
                "--duration",
                "3ms",
                "x",
                "--",
                "true",
            ],
            "--duration 3ms is too short to renew",
        ),
        // The library refuses the name itself: a usage error.
        (
            vec!["--backend", "memory", "exec", "", "--", "true"],
            "invalid name: must not be empty",
        ),
    ] {
        let mut c = bare();
        c.args(&args);
        let o = run(c);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        if err.starts_with("leasing: ") {
            // Ours (clap's own errors add a usage block).
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        }
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[test]
fn an_unreachable_backend_is_exit_code_69_without_secrets() {
    // Nothing listens on port 1; the password must not be printed.
    let mut c = bare();
    c.args([
        "--verbose",
        "--backend",
        "redis://user:hunter2@127.0.0.1:1",
        "health",
    ]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let all = text(&o);
    assert!(!all.contains("hunter2"), "{all}");
    assert!(all.contains("127.0.0.1:1"), "says what it tried: {all}");
}

#[test]
fn no_secret_in_any_output_with_verbose() {
    let Some(b) = backend("cosmos") else { return };
    let key = b
        .spec
        .split(';')
        .find_map(|p| p.strip_prefix("AccountKey="))
        .unwrap()
        .to_owned();
    let n = name("secret");
    let mut c = leasing(&b);
    c.args(["--verbose", "exec", &n, "--", "true"]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(&key));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Cosmos DB (connection string)"));
    // A wrong key is a configuration error (2) whose message carries no key.
    let bad = b.spec.replace(&key, "AAAAsecretAAAA");
    let mut c = bare();
    c.args(["--verbose", "--backend", &bad, "status", &n]);
    let o = run(c);
    assert!(!text(&o).contains("AAAAsecretAAAA"), "{}", text(&o));
    // --help never shows LEASING_BACKEND's value.
    let mut c = leasing(&b);
    c.arg("--help");
    let o = run(c);
    assert!(!text(&o).contains(&key));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Exit codes:"));
}

#[test]
fn the_memory_backend_and_completions() {
    let mut c = bare();
    c.args([
        "--backend",
        "memory",
        "exec",
        "x",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(run(c).status.code(), Some(3));
    let mut c = bare();
    c.args(["--backend", "memory", "status", "x"]);
    assert_eq!(run(c).status.code(), Some(1));
    let mut c = bare();
    c.args(["completions", "bash"]);
    let o = run(c);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("leasing"));
    for sub in ["exec", "status", "list", "break", "health"] {
        let mut c = bare();
        c.args([sub, "--help"]);
        let o = run(c);
        assert!(o.status.success(), "{sub}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Example"),
            "{sub}: every subcommand shows examples"
        );
    }
}

/// The backend from the providers' own variables when no --backend is given.
#[test]
fn provider_variables_name_the_backend() {
    let Some(b) = backend("redis") else { return };
    let mut c = bare();
    c.env("LEASING_REDIS_URL", &b.spec)
        .args(["--verbose", "health"]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Redis at redis://"));
}

/// Runs `leasing ARGS` on a pseudo-terminal (util-linux `script`), feeding `input`.
fn on_a_terminal(b: &Backend, args: &str, input: &str) -> std::process::Output {
    let mut c = leasing(b);
    // `script` needs a shell command line; the arguments here are the test's own words.
    c.env_remove("LEASING_BIN");
    let mut child = std::process::Command::new("script")
        .args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
        .envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("LEASING_BACKEND", &b.spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        // Keep stdin open until the command had time to ask.
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    child.wait_with_output().unwrap()
}

/// On a terminal: a waiting `exec` shows a progress line naming the holder; `break` asks
/// first, and does nothing unless the answer is yes.
#[test]
fn terminal_progress_and_confirmation() {
    let Some(b) = backend("redis") else { return };
    let n = name("tty");
    let (mut h, _) = hold(&b, &n);
    let o = on_a_terminal(&b, &format!("exec --wait 2500ms {n} -- true"), "");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("waiting for {n} (held by tester")),
        "{}",
        text(&o)
    );
    assert!(out.contains("was not acquired within 2s"), "{}", text(&o));
    // Breaking a free name on a terminal: asked all the same, saying it is not held.
    let o = on_a_terminal(&b, &format!("break {n}-free"), "n\n");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("{n}-free is not held. Break it?")),
        "{}",
        text(&o)
    );
    assert!(out.contains("not broken"), "{}", text(&o));
    // A free name on a terminal: acquired at once, no progress line.
    let free = name("tty-free");
    let o = on_a_terminal(&b, &format!("exec --wait 1m {free} -- true"), "");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("waiting for"),
        "{}",
        text(&o)
    );
    let o = on_a_terminal(&b, &format!("break {n}"), "n\n");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("held by tester"), "{}", text(&o));
    assert!(out.contains("not broken"), "{}", text(&o));
    let mut c = leasing(&b);
    c.args(["status", &n]);
    assert_eq!(run(c).status.code(), Some(0), "still held");
    let o = on_a_terminal(&b, &format!("break {n}"), "y\n");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("broken."),
        "{}",
        text(&o)
    );
    assert_eq!(wait(&mut h).code(), Some(76));
}

/// Every way of naming a backend builds: Redis Cluster seeds, the Blob and Cosmos
/// providers' own variables; an account URL without an identity is unhealthy, not a
/// crash; a dead Blob endpoint is unhealthy (exit 1).
#[test]
fn other_backend_forms_build() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(urls) = var("LEASING_REDIS_CLUSTER_URLS") {
        let hosts: Vec<&str> = urls
            .split(',')
            .map(|u| u.trim_start_matches("redis://"))
            .collect();
        let mut c = bare();
        c.args([
            "--backend",
            &format!("redis+cluster://{}?prefix=cli:", hosts.join(",")),
            "health",
        ]);
        let o = run(c);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let mut c = bare();
        c.env("LEASING_REDIS_CLUSTER_URLS", &urls).args(["list"]);
        assert!(run(c).status.success());
    }
    // TLS with a private CA, given as `ca_file=`; without it the server is not trusted.
    if let (Some(url), Some(ca)) = (var("LEASING_REDIS_TLS_URL"), var("LEASING_REDIS_TLS_CA")) {
        let mut c = bare();
        c.args([
            "--backend",
            &format!("{url}?ca_file={ca}&prefix=cli-tls:"),
            "health",
        ]);
        let o = run(c);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let mut c = bare();
        c.args(["--backend", &url, "health", "--timeout", "5s"]);
        let o = run(c);
        assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    }
    if let Some(cs) = var("LEASING_AZURITE_CONNECTION_STRING") {
        let mut c = bare();
        c.env("AZURE_STORAGE_CONNECTION_STRING", &cs)
            .args(["-v", "health"]);
        let o = run(c);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("AZURE_STORAGE_* variables"));
        const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        let mut c = bare();
        c.args([
            "--backend",
            &format!("blob:AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1"),
            "health",
            "--timeout",
            "2s",
        ]);
        let o = run(c);
        // Unreachable at build, as on Redis and Cosmos: exit 69, naming the endpoint.
        assert_eq!(o.status.code(), Some(69), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("http://127.0.0.1:1/devstoreaccount1"),
            "{}",
            text(&o)
        );
        assert!(!text(&o).contains(KEY));
    }
    if let Some(cs) = var("LEASING_COSMOS_CONNECTION_STRING") {
        let mut c = bare();
        c.env("LEASING_COSMOS_CONNECTION_STRING", &cs)
            .args(["-v", "list"]);
        let o = run(c);
        assert!(o.status.success(), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("LEASING_COSMOS_* variables"));
    }
    // An account URL: the Azure identity chosen from the environment (none here).
    let mut c = bare();
    c.env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .env_remove("IDENTITY_ENDPOINT")
        .env_remove("MSI_ENDPOINT")
        .args([
            "--backend",
            "https://nosuchaccount.blob.core.windows.net/leases",
            "health",
            "--timeout",
            "2s",
        ]);
    let o = run(c);
    assert!(matches!(o.status.code(), Some(1 | 2 | 69)), "{}", text(&o));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
}

/// A Blob endpoint that does not answer (building a Blob provider dials nothing): every
/// command that needs the backend says what it tried, exit code 69, no key printed; on a
/// terminal, `break` asks all the same and says the holder is unknown.
#[test]
fn a_dead_blob_endpoint_is_69_for_every_command() {
    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let dead = Backend {
        label: "blob",
        spec: format!(
            "blob:AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1"
        ),
        duration: "15s",
    };
    // The Blob provider checks the endpoint when it is built, as Redis and Cosmos do: a
    // dead one fails every command there, naming the endpoint tried.
    for args in [
        vec!["status", "x"],
        vec!["list", "--prefix", "p/"],
        vec!["break", "--yes", "x"],
        vec!["exec", "x", "--", "true"],
    ] {
        let mut c = leasing(&dead);
        c.args(&args);
        let o = run(c);
        assert_eq!(o.status.code(), Some(69), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("leasing: connecting to Azure Blob (connection string): "),
            "{args:?}: {err}"
        );
        assert!(err.contains("http://127.0.0.1:1/devstoreaccount1"), "{err}");
        assert!(!text(&o).contains(KEY), "{args:?}");
    }
    let o = on_a_terminal(&dead, "break x", "n\n");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("connecting to Azure Blob"),
        "{}",
        text(&o)
    );
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
}
