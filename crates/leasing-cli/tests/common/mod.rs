#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]
//! Running the built `leasing` binary against the servers `scripts/*-up.sh` start.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One test per backend for each scenario, so that nextest runs them in parallel.
macro_rules! per_backend {
    ($scenario:ident: $($label:ident),+) => {
        mod $scenario {
            $(
                #[test]
                fn $label() {
                    if let Some(b) = super::common::backend(stringify!($label)) {
                        super::$scenario(&b);
                    }
                }
            )+
        }
    };
}

pub const BIN: &str = env!("CARGO_BIN_EXE_leasing");

/// A backend the tests run on: its `--backend` value and a lease duration it accepts.
#[derive(Debug, Clone)]
pub struct Backend {
    pub label: &'static str,
    pub spec: String,
    /// A short lease the backend accepts (Blob: 15 s, its minimum).
    pub duration: &'static str,
}

/// The backend `label`, from the service environment; `None` after a SKIPPED line when it
/// is not set up (a failure under `LEASING_REQUIRE_SERVICES=1`).
pub fn backend(label: &'static str) -> Option<Backend> {
    let (var, duration) = match label {
        "redis" => ("LEASING_REDIS_URL", "3s"),
        "redlock" => ("LEASING_REDLOCK_URLS", "3s"),
        "blob" => ("LEASING_AZURITE_CONNECTION_STRING", "15s"),
        "cosmos" => ("LEASING_COSMOS_CONNECTION_STRING", "3s"),
        other => panic!("unknown backend {other}"),
    };
    let value = leasing_testkit::services::service_env(var)?;
    let spec = if label == "blob" {
        format!("blob:{value}")
    } else {
        value
    };
    Some(Backend {
        label,
        spec,
        duration,
    })
}

/// A unique lease name.
pub fn name(prefix: &str) -> String {
    format!(
        "cli-{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000_000
    )
}

/// `leasing` with `--backend` set and no provider variables (so nothing else leaks in).
pub fn leasing(b: &Backend) -> Command {
    let mut c = bare();
    c.env("LEASING_BACKEND", &b.spec);
    c
}

/// `leasing` with none of the backend variables set.
pub fn bare() -> Command {
    let mut c = Command::new(BIN);
    for k in [
        "LEASING_BACKEND",
        "LEASING_REDIS_URL",
        "LEASING_REDLOCK_URLS",
        "LEASING_REDIS_CLUSTER_URLS",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_BLOB_ENDPOINT",
        "LEASING_COSMOS_CONNECTION_STRING",
        "LEASING_COSMOS_ENDPOINT",
    ] {
        c.env_remove(k);
    }
    c.env("LEASING_BIN", BIN);
    c
}

pub fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh temporary file path.
pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leasing-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}", self::name("f")))
}

/// A shell loop that appends `alive <ns>` to `log` every 20 ms and ignores SIGTERM.
pub fn stubborn_writer(log: &std::path::Path, tag: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "trap '' TERM; echo \"start {tag} $(date +%s%N) $LEASING_FENCING_TOKEN\" >> {l}; while true; do echo \"alive {tag} $(date +%s%N)\" >> {l}; sleep 0.02; done",
            l = log.display()
        ),
    ]
}

/// Waits until `log` has a line starting with `prefix` (the command started).
pub fn wait_for_line(log: &std::path::Path, prefix: &str, child: &mut Child) {
    let started = Instant::now();
    loop {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(prefix))
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("leasing exited ({status}) before {prefix:?} appeared in its log");
        }
        // A generous bound: a loaded machine is slow, a wedged test must still end.
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{prefix:?} never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a child with a generous bound, killing it if it never ends.
pub fn wait(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("a leasing process did not end within 300 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(kind, tag, ns)` of each line of a writer log.
pub fn lines(log: &std::path::Path) -> Vec<(String, String, u128)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((
                p.next()?.to_owned(),
                p.next()?.to_owned(),
                p.next()?.parse().ok()?,
            ))
        })
        .collect()
}

pub fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Whether any process still runs `needle` in its command line (a stopped command's
/// shell must be gone).
pub fn running(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .any(|c| c.contains(needle) && c.starts_with("sh -c"))
}

/// The time of the last "alive" line in `l`.
pub fn last_alive(l: &[(String, String, u128)]) -> u128 {
    l.iter()
        .filter(|x| x.0 == "alive")
        .map(|x| x.2)
        .max()
        .unwrap()
}

/// The times of the holder's last "alive" line and of the next holder's "next" line in
/// `log`; asserts that the first comes before the second (`msg` if not).
pub fn alive_before_next(log: &std::path::Path, msg: &str) -> (u128, u128) {
    let l = lines(log);
    let last_alive = last_alive(&l);
    let next = l.iter().find(|x| x.0 == "next").unwrap().2;
    assert!(last_alive < next, "{msg}");
    (last_alive, next)
}

/// Asserts that the command writing `log` is no longer running (`msg` if it is).
pub fn assert_command_dead(log: &std::path::Path, msg: &str) {
    assert!(!running(&log.display().to_string()), "{msg}");
}
