#!/usr/bin/env bash
# Stops the Azurite instances started by scripts/azurite-up.sh, by pid.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/target/services/azurite"
shopt -s nullglob
for pidfile in "$DIR"/*.pid; do
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
done
echo "azurite-down: stopped" >&2
