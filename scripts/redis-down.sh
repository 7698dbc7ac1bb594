#!/usr/bin/env bash
# Stops the instances started by scripts/redis-up.sh, by pid, and deletes the cluster
# nodes' config files so the next redis-up.sh forms a fresh cluster.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/target/services/redis"
shopt -s nullglob
for pidfile in "$DIR"/*.pid; do
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
done
rm -f "$DIR"/cluster-*-nodes.conf "$DIR"/cluster-create.log
echo "redis-down: stopped" >&2
