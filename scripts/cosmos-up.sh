#!/usr/bin/env bash
# Installs @vercel/cosmosdb-server 1.0.1 from npm into target/cosmos-emulator when missing
# and starts it, patched by scripts/cosmos-emulator/launch.js (what each patch fixes is
# written there), on loopback: plain HTTP on 127.0.0.1:8081 (override with
# LEASING_COSMOS_PORT). In memory: a restart forgets every database. Idempotent: a running
# instance is kept. Also installs faketime (apt) for the clock-skew tests. Writes
# target/services/cosmos.env; stop it with scripts/cosmos-down.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="1.0.1"
PREFIX="$ROOT/target/cosmos-emulator"
DIR="$ROOT/target/services/cosmos"
ENV_FILE="$ROOT/target/services/cosmos.env"
PORT="${LEASING_COSMOS_PORT:-8081}"
PKG="$PREFIX/node_modules/@vercel/cosmosdb-server/package.json"
mkdir -p "$DIR"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "cosmos-up: node and npm are required (apt-get install nodejs npm)" >&2
  exit 1
fi
if ! grep -q "\"version\": \"$VERSION\"" "$PKG" 2>/dev/null; then
  echo "cosmos-up: installing @vercel/cosmosdb-server@$VERSION into $PREFIX" >&2
  mkdir -p "$PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
    "@vercel/cosmosdb-server@$VERSION" >/dev/null
fi

# faketime (Debian) for the clock-skew tests: a process whose wall clock is off.
if ! command -v faketime >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  echo "cosmos-up: installing faketime with apt-get" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq faketime >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PIDFILE="$DIR/cosmos.pid"
if ! { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }; then
  if port_open "$PORT"; then
    echo "cosmos-up: port $PORT is taken by another process" >&2
    exit 1
  fi
  nohup node "$ROOT/scripts/cosmos-emulator/launch.js" "$PREFIX/node_modules" \
    --port "$PORT" --host 127.0.0.1 --no-ssl >"$DIR/cosmos.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    port_open "$PORT" && break
    sleep 0.1
  done
  if ! port_open "$PORT"; then
    echo "cosmos-up: the emulator did not start; log:" >&2
    cat "$DIR/cosmos.log" >&2
    exit 1
  fi
fi

# The emulator accepts any key; this is the well-known public key of Microsoft's
# emulator, so the same settings also work against it.
KEY="C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
ENDPOINT="http://127.0.0.1:$PORT/"
cat >"$ENV_FILE" <<ENV
export LEASING_COSMOS_ENDPOINT="$ENDPOINT"
export LEASING_COSMOS_KEY="$KEY"
export LEASING_COSMOS_CONNECTION_STRING="AccountEndpoint=$ENDPOINT;AccountKey=$KEY;"
export LEASING_COSMOS_EMULATOR_PID_FILE="$PIDFILE"
export LEASING_COSMOS_EMULATOR_LAUNCHER="$ROOT/scripts/cosmos-emulator/launch.js"
export LEASING_COSMOS_EMULATOR_MODULES="$PREFIX/node_modules"
export LEASING_FAKETIME="$(command -v faketime)"
ENV
echo "cosmos-up: emulator on $ENDPOINT (pid $(cat "$PIDFILE")); settings in $ENV_FILE" >&2
