//! `leasing-chaos`: N clients compete for a few lease names on one backend while a
//! schedule injects faults (server restarts with and without persistence, network cuts and
//! latency through a proxy, SIGSTOP/SIGCONT and SIGKILL of the current holder, clients
//! whose wall clock is ±30 s off); every client records its operations on the system-wide
//! monotonic clock; at the end the history is checked by `leasing_testkit::checker` and a
//! summary printed. Exits 1 on any violation (unless `--warn-only`), 2 on a usage or setup
//! error.
//!
//! ```text
//! leasing-chaos run --backend memory,redis,redlock --duration 60s
//! leasing-chaos run --backend redis --duration 10m --clients 8 --names 3 --lease 2s
//! leasing-chaos check target/chaos/redis/history.jsonl
//! ```
//!
//! The runner starts its own private redis-server processes on free ports (it kills and
//! restarts them); clients are this binary re-executed in `client` mode (threads in one
//! process for the in-memory backend). See `docs/safety.md`.

mod backend;
mod client;
mod faults;
mod fleet;
mod handoff;
mod opts;
mod run;
mod servers;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => opts::RunOpts::parse(&args[1..]).and_then(run::main),
        Some("client") => opts::ClientOpts::parse(&args[1..]).and_then(client::process_main),
        Some("check") if args.len() > 1 => run::check_files(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{}", opts::USAGE);
            Ok(0)
        }
        _ => Err(format!("expected a command\n\n{}", opts::USAGE)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("leasing-chaos: {e}");
            ExitCode::from(2)
        }
    }
}
