#!/usr/bin/env bash
# Stops the emulator started by scripts/cosmos-up.sh, by pid.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDFILE="$ROOT/target/services/cosmos/cosmos.pid"
pid="$(cat "$PIDFILE" 2>/dev/null || true)"
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
fi
rm -f "$PIDFILE"
echo "cosmos-down: stopped" >&2
