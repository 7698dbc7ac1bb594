#!/usr/bin/env bash
# The one test command: formatting, lints, every test (with the servers they need),
# docs, the quickstart example, and a line + branch coverage report per crate.
# Needs only the Rust toolchain, Node and Python on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never
step() { printf '\n==> %s\n' "$*"; }

# A clean run needs about 4 GB under target/ (debug info is trimmed in Cargo.toml's
# profiles); a full disk shows up as a linker "Bus error", so say it up front.
free_kb="$(df -Pk . | awk 'NR==2 {print $4}')"
echo "free disk space: $((free_kb / 1024 / 1024)) GB"
if [ "$free_kb" -lt $((5 * 1024 * 1024)) ]; then
  echo "warning: less than 5 GB free; the build may fail with 'No space left on device'" >&2
fi

step "format"
cargo fmt --all -- --check

step "clippy (all targets, all features, warnings denied)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "docs (warnings denied)"
# Right after clippy: rustdoc reuses the dependencies' check metadata clippy just built.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

step "tooling"
if ! cargo llvm-cov --version >/dev/null 2>&1; then
  rustup component add llvm-tools-preview
  cargo install --locked cargo-llvm-cov
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

step "services"
if [ -x scripts/redis-up.sh ]; then
  scripts/redis-up.sh
  # shellcheck disable=SC1091
  source target/services/redis.env
  trap 'scripts/redis-down.sh || true' EXIT
fi
if [ -x scripts/azurite-up.sh ]; then
  scripts/azurite-up.sh
  # shellcheck disable=SC1091
  source target/services/azurite.env
  # Stop Azurite too, keeping whatever the EXIT trap already does.
  prev_exit_trap="$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")"
  trap "scripts/azurite-down.sh || true; ${prev_exit_trap}" EXIT
fi
if [ -x scripts/cosmos-up.sh ]; then
  scripts/cosmos-up.sh
  # shellcheck disable=SC1091
  source target/services/cosmos.env
  # Stop the Cosmos emulator too, keeping whatever the EXIT trap already does.
  prev_exit_trap="$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")"
  trap "scripts/cosmos-down.sh || true; ${prev_exit_trap}" EXIT
fi
# Under this script a test that cannot reach its server fails instead of skipping.
export LEASING_REQUIRE_SERVICES=1

step "tests with coverage (line and branch)"
export RUSTC_BOOTSTRAP=1
# One instrumented build (workspace crates instrumented, dependencies plain) serves the
# tests, the chaos runs, the doc tests and the example below: every dependency (the Azure
# SDK crates take minutes) is built once for all of them instead of twice.
eval "$(cargo llvm-cov show-env --sh --branch 2>/dev/null)"
cargo llvm-cov clean --workspace
cargo nextest run --workspace --all-features --no-fail-fast

step "chaos: short run per backend, zero safety violations (docs/safety.md)"
# Private servers on free ports (the runner kills and restarts them); exits 1 on any violation.
# A fault about every second, so that every kind in the backend's schedule comes up.
cargo run --quiet -p leasing-chaos -- run --backend memory,redis,redlock --duration 40s \
  --fault-every 1s --out target/chaos
# Blob: 15 s leases, so a longer run; no Azurite restarts (the emulator loses its leases on a
# restart, which the real service does not: see docs/safety.md).
cargo run --quiet -p leasing-chaos -- run --backend blob --duration 75s \
  --faults pause_holder,kill_holder,network_cut,latency --out target/chaos
# Cosmos: a private patched emulator (installed by scripts/cosmos-up.sh); no emulator
# restarts (it keeps documents in memory only, the real service does not lose them).
cargo run --quiet -p leasing-chaos -- run --backend cosmos --duration 45s \
  --fault-every 1s --out target/chaos
# Redis Cluster: three private masters; pause/kill holder, node restart with data, node down
# (no network faults: a cluster's redirects name the nodes' own ports, not a proxy's).
cargo run --quiet -p leasing-chaos -- run --backend redis-cluster --duration 45s \
  --fault-every 1s --out target/chaos
# The recipes: clients hold the leadership of an election, or permits of a semaphore of 2,
# per name; the checker judges each election name and each permit slot as a lease.
# (Redlock, Cluster and Blob run the recipes in the recipe suite of the tests above.)
cargo run --quiet -p leasing-chaos -- run --backend memory,redis,cosmos \
  --recipe election --duration 20s --fault-every 1s --out target/chaos-election
cargo run --quiet -p leasing-chaos -- run --backend memory,redis,cosmos \
  --recipe semaphore --permits 2 --duration 20s --fault-every 1s --out target/chaos-semaphore

step "doc tests"
cargo test --workspace --all-features --doc

step "observability: alert rules (promtool) and dashboard queries"
scripts/check-observability.sh

step "quickstart example"
cargo run --quiet --example quickstart

step "coverage per crate (tests, chaos runs, doc tests and the example together)"
cargo llvm-cov report --json --summary-only --output-path target/coverage.json
cargo llvm-cov report --summary-only | tail -n 1
python3 scripts/coverage_table.py target/coverage.json
