#!/usr/bin/env bash
# Mutation testing, the way docs/safety.md's figures were measured: cargo-mutants with
# nextest, every feature on, one job at a time, each crate's files in one run, the
# servers a backend's tests need started first (and stopped after), and the tests told to
# fail rather than skip when a server is missing.
#
#   scripts/mutants.sh                         # the core's timing files and the checker
#   scripts/mutants.sh leasing-testkit         # every file of a crate
#   scripts/mutants.sh crates/leasing-redis/src/node/mod.rs crates/leasing-redis/src/redlock/acquire.rs
#   MUTANTS_ARGS="--re attempt_deadline" scripts/mutants.sh crates/leasing-abstractions/src/renewal.rs
#
# Environment: MUTANTS_JOBS (default 1: the timing tests run on a paused clock, but the
# backend tests talk to real servers and a loaded machine makes them slow),
# MUTANTS_TIMEOUT (seconds per mutant's tests, default 180), MUTANTS_ARGS (passed on,
# e.g. --re REGEX, --shard 1/4, --in-place). Results per crate under
# target/mutants/<crate>/mutants.out (caught.txt, missed.txt, timeout.txt, unviable.txt).
# Exits 1 when a mutant was missed. Not part of ./build_test.sh: a full run of the core's
# timing files takes hours on a 2-core machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "mutants: installing cargo-mutants" >&2
  cargo install --locked cargo-mutants
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "mutants: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(
    crates/leasing-abstractions/src/lease/mod.rs crates/leasing-abstractions/src/lease/shared.rs
    crates/leasing-abstractions/src/renewal.rs
    crates/leasing-abstractions/src/manager/mod.rs crates/leasing-abstractions/src/manager/acquire.rs
    crates/leasing-abstractions/src/options.rs
    crates/leasing-abstractions/src/backoff.rs
    crates/leasing-abstractions/src/contract/deadline.rs
    crates/leasing-testkit/src/checker/mod.rs crates/leasing-testkit/src/checker/rules.rs
  )
fi

# Group the targets by crate: crate -> its files ("" for the whole crate).
declare -A files=()
order=()
for t in "${targets[@]}"; do
  if [ -f "$t" ]; then
    case "$t" in
      crates/*/src/*) crate="${t#crates/}"; crate="${crate%%/*}" ;;
      *) echo "mutants: $t is not a source file under crates/<crate>/src/" >&2; exit 2 ;;
    esac
    [ -n "${files[$crate]+x}" ] || order+=("$crate")
    files[$crate]="${files[$crate]:-} $t"
  elif [ -d "crates/$t" ]; then
    [ -n "${files[$t]+x}" ] || order+=("$t")
    files[$t]="${files[$t]:-}"
  else
    echo "mutants: '$t' is neither a crate under crates/ nor a source file" >&2
    exit 2
  fi
done

# Servers, for the crates whose tests need them.
need_redis=0 need_azurite=0 need_cosmos=0
for crate in "${order[@]}"; do
  case "$crate" in
    leasing-redis) need_redis=1 ;;
    leasing-blob) need_azurite=1 ;;
    leasing-cosmos) need_cosmos=1 ;;
    leasing-chaos) need_redis=1 need_azurite=1 need_cosmos=1 ;;
  esac
done
cleanup=()
trap 'for c in "${cleanup[@]}"; do $c || true; done' EXIT
if [ "$need_redis" = 1 ]; then
  scripts/redis-up.sh
  # shellcheck disable=SC1091
  source target/services/redis.env
  cleanup+=(scripts/redis-down.sh)
fi
if [ "$need_azurite" = 1 ]; then
  scripts/azurite-up.sh
  # shellcheck disable=SC1091
  source target/services/azurite.env
  cleanup+=(scripts/azurite-down.sh)
fi
if [ "$need_cosmos" = 1 ]; then
  scripts/cosmos-up.sh
  # shellcheck disable=SC1091
  source target/services/cosmos.env
  cleanup+=(scripts/cosmos-down.sh)
fi
export LEASING_REQUIRE_SERVICES=1

status=0
for crate in "${order[@]}"; do
  out="target/mutants/$crate"
  mkdir -p "$out"
  args=(-p "$crate" --test-tool nextest --all-features
    -j "${MUTANTS_JOBS:-1}" --timeout "${MUTANTS_TIMEOUT:-180}" --output "$out")
  for f in ${files[$crate]}; do args+=(--file "$f"); done
  # shellcheck disable=SC2206
  extra=(${MUTANTS_ARGS:-})
  echo "==> cargo mutants ${args[*]} ${extra[*]}"
  rc=0
  cargo mutants "${args[@]}" "${extra[@]}" || rc=$?
  # 0: all caught; 2: some missed; 3: some timed out (counted as caught); 4: baseline failed.
  case "$rc" in
    0 | 2 | 3) ;;
    *) echo "mutants: cargo mutants failed for $crate (exit $rc)" >&2; status=2; continue ;;
  esac
  res="$out/mutants.out"
  count() { [ -s "$res/$1.txt" ] && wc -l <"$res/$1.txt" || echo 0; }
  caught=$(count caught) missed=$(count missed) timeout=$(count timeout) unviable=$(count unviable)
  viable=$((caught + missed + timeout))
  pct="n/a"
  [ "$viable" -gt 0 ] && pct=$(python3 -c "print(f'{100*($caught+$timeout)/$viable:.1f} %')")
  echo "$crate: caught $caught, timeout $timeout, missed $missed, unviable $unviable: $pct of viable mutants caught (timeouts count as caught)"
  if [ "$missed" -gt 0 ]; then
    echo "missed:"
    sed 's/^/  /' "$res/missed.txt"
    [ "$status" = 0 ] && status=1
  fi
done
exit "$status"
