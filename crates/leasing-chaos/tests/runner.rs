//! The runner end to end on the in-memory backend: a short run of a correct provider is
//! clean, and the self-test's unsafe provider is caught (exit code 1, violations named).

use std::process::Command;

fn run(backend: &str, dir: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leasing-chaos"))
        .args([
            "run",
            "--backend",
            backend,
            "--duration",
            "6s",
            "--lease",
            "1s",
        ])
        .args([
            "--fault-every",
            "1s",
            "--seed",
            "11",
            "--clients",
            "4",
            "--names",
            "2",
        ])
        .args(["--out", dir])
        .output()
        .expect("run leasing-chaos");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn out_dir(test: &str) -> String {
    std::env::temp_dir()
        .join(format!("leasing-chaos-{test}-{}", std::process::id()))
        .display()
        .to_string()
}

#[test]
fn an_unsafe_provider_is_caught() {
    let dir = out_dir("unsafe");
    let (code, text) = run("memory-unsafe", &dir);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("overlap on"), "{text}");
    assert!(text.contains("| memory-unsafe |"), "{text}");
    let history = std::path::Path::new(&dir).join("memory-unsafe/history.jsonl");
    assert!(history.exists());
    // `check` finds the same on the recorded history.
    let out = Command::new(env!("CARGO_BIN_EXE_leasing-chaos"))
        .arg("check")
        .arg(&history)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_short_in_memory_run_is_clean() {
    let dir = out_dir("memory");
    let (code, text) = run("memory", &dir);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("violations 0"), "{text}");
    assert!(text.contains("pause_holder"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_usage_is_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_leasing-chaos"))
        .args(["run", "--backend", "nope"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown backend"));
    let out = Command::new(env!("CARGO_BIN_EXE_leasing-chaos"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
