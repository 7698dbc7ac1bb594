#!/usr/bin/env bash
# Installs Azurite 3.37.0 from npm into target/azurite when missing and starts the two
# blob endpoints the tests use, on loopback, in memory (nothing persists):
#   plain HTTP            127.0.0.1:10000  (account key / SAS)
#   HTTPS + OAuth basic   127.0.0.1:10010  (token credentials; a test CA signs the leaf)
# Idempotent: running instances are kept. Writes target/services/azurite.env; stop them
# with scripts/azurite-down.sh (by pid).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="3.37.0"
PREFIX="$ROOT/target/azurite"
DIR="$ROOT/target/services/azurite"
ENV_FILE="$ROOT/target/services/azurite.env"
BIN="$PREFIX/node_modules/.bin/azurite-blob"
mkdir -p "$DIR"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "azurite-up: node and npm are required (apt-get install nodejs npm)" >&2
  exit 1
fi
if [ ! -x "$BIN" ] || ! grep -q "\"version\": \"$VERSION\"" "$PREFIX/node_modules/azurite/package.json" 2>/dev/null; then
  echo "azurite-up: installing azurite@$VERSION into $PREFIX" >&2
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "azurite@$VERSION" >/dev/null
fi

if ! command -v openssl >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi

# TLS material for the HTTPS instance: a test CA and a leaf for 127.0.0.1 / localhost.
TLS="$DIR/tls"
if [ ! -s "$TLS/server.crt" ]; then
  mkdir -p "$TLS"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=leasing-azurite-test-ca" \
    -keyout "$TLS/ca.key" -out "$TLS/ca.crt" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$TLS/server.key" -out "$TLS/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$TLS/ext.cnf"
  openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
    -days 3650 -extfile "$TLS/ext.cnf" -out "$TLS/server.crt" >/dev/null 2>&1
  chmod 600 "$TLS"/*.key
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() { # name port [extra args…]
  local name="$1" port="$2"
  shift 2
  local pidfile="$DIR/$name.pid"
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    return 0
  fi
  # Run from its own folder: Azurite writes its debug files into the working directory.
  mkdir -p "$DIR/$name"
  (cd "$DIR/$name" && exec nohup "$BIN" --blobHost 127.0.0.1 --blobPort "$port" \
    --inMemoryPersistence --disableTelemetry --silent "$@" >"$DIR/$name.log" 2>&1) &
  echo $! >"$pidfile"
}

wait_up() { # name port
  for _ in $(seq 1 300); do
    if port_open "$2"; then return 0; fi
    if ! kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; then
      echo "azurite-up: $1 exited; its log:" >&2
      cat "$DIR/$1.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "azurite-up: $1 did not open port $2" >&2
  exit 1
}

start plain 10000
start oauth 10010 --cert "$TLS/server.crt" --key "$TLS/server.key" --oauth basic
wait_up plain 10000
wait_up oauth 10010

cat >"$ENV_FILE" <<ENV
# Written by scripts/azurite-up.sh: the Azurite endpoints the leasing-blob tests use.
export LEASING_AZURITE_BLOB_URL=http://127.0.0.1:10000/devstoreaccount1
export LEASING_AZURITE_CONNECTION_STRING='UseDevelopmentStorage=true'
# What BlobLeaseProviderBuilder::from_env() reads (README: environment variables).
export AZURE_STORAGE_CONNECTION_STRING='UseDevelopmentStorage=true'
export LEASING_AZURITE_HTTPS_URL=https://127.0.0.1:10010/devstoreaccount1
export LEASING_AZURITE_CA=$TLS/ca.crt
export LEASING_AZURITE_BIN=$BIN
ENV
echo "azurite-up: plain on 127.0.0.1:10000, HTTPS+OAuth on 127.0.0.1:10010; settings in $ENV_FILE" >&2
