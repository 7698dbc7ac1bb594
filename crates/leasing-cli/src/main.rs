//! `leasing`: run a command under a distributed lease and stop it before anyone else can
//! hold the lease; see, list and break leases from a shell. See docs/cli.md.

mod backend;
mod exec;
mod exit;
mod inspect;
mod output;
mod supervise;

use clap::{CommandFactory, Parser, Subcommand};
use distributed_leasing::{LeaseManager, LeaseOptions};
use exit::CliError;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "leasing",
    version,
    about = "Run a command under a distributed lease; see, list and break leases",
    after_help = exit::HELP
)]
struct Cli {
    /// Where leases live: redis://HOST:PORT, rediss://…, redlock://H1,H2,H3,
    /// redis+cluster://H1,H2, blob:CONNECTION-STRING|SAS-URL|ACCOUNT-URL,
    /// cosmos:CONNECTION-STRING|ENDPOINT, memory. Without it: the providers' own
    /// variables (LEASING_REDIS_URL, AZURE_STORAGE_CONNECTION_STRING,
    /// LEASING_COSMOS_CONNECTION_STRING, …).
    #[arg(long, global = true, env = "LEASING_BACKEND", hide_env_values = true)]
    backend: Option<String>,
    /// Say more on stderr (never a secret).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command while holding a lease; stop it if the lease is lost.
    Exec(exec::ExecArgs),
    /// Who holds a lease: holder, token, acquired, expires, time left.
    Status(inspect::StatusArgs),
    /// Every held lease (optionally under a prefix).
    List(inspect::ListArgs),
    /// Break a lease (operator action): the name is free at once.
    Break(inspect::BreakArgs),
    /// Probe the backend: acquire and release a probe lease.
    Health(inspect::HealthArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  leasing completions bash > /etc/bash_completion.d/leasing"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    #[command(name = "__supervise", hide = true)]
    Supervise(supervise::SuperviseArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let op = match cli.command {
        Command::Supervise(a) => return supervise::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "leasing",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Exec(a) => Op::Exec(a),
        Command::Status(a) => Op::Status(a),
        Command::List(a) => Op::List(a),
        Command::Break(a) => Op::Break(a),
        Command::Health(a) => Op::Health(a),
    };
    // Parsed before any thread starts: an Azure account URL is handed to the provider
    // through its environment variables.
    let backend = match backend::parse(
        cli.backend.as_deref(),
        &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
        &mut |k, v| {
            if v.is_empty() {
                std::env::remove_var(k);
            } else {
                std::env::set_var(k, v);
            }
        },
    ) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&CliError::new(exit::UNAVAILABLE, e.to_string())),
    };
    let result = rt.block_on(async move {
        if cli.verbose {
            eprintln!("leasing: backend {}", backend.describe());
        }
        let provider = backend.build().await?;
        let manager = || {
            LeaseManager::new(Arc::clone(&provider), LeaseOptions::default())
                .map_err(|e| CliError::backend("options", &e))
        };
        match op {
            Op::Exec(a) => exec::run(a, Arc::clone(&provider), cli.verbose).await,
            Op::Status(a) => inspect::status(&manager()?, a).await,
            Op::List(a) => inspect::list(&manager()?, a).await,
            Op::Break(a) => inspect::break_lease(&manager()?, a).await,
            Op::Health(a) => inspect::health(&manager()?, a).await,
        }
    });
    // Leave background work (release notifications, renewals of nothing) behind at once.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

/// What to do with the backend, once it is built.
enum Op {
    Exec(exec::ExecArgs),
    Status(inspect::StatusArgs),
    List(inspect::ListArgs),
    Break(inspect::BreakArgs),
    Health(inspect::HealthArgs),
}

fn fail(e: &CliError) -> ExitCode {
    eprintln!("leasing: {e}");
    ExitCode::from(e.code)
}
