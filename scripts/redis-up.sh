#!/usr/bin/env bash
# Installs redis-server (apt) when missing and starts the instances the tests use, on
# loopback: plain 6390, TLS 6391, Redlock 6401-6405, and a Redis Cluster of three masters
# (no replicas) on 6411-6413. Idempotent: running instances are kept and the cluster is
# only created when it is not already formed. Writes target/services/redis.env. Stop them
# with scripts/redis-down.sh (which also forgets the cluster).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/target/services/redis"
ENV_FILE="$ROOT/target/services/redis.env"
mkdir -p "$DIR"

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "redis-up: installing ${missing[*]} with apt-get" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts a system instance on 6379 after install; we leave it alone.

# TLS material: a CA and a leaf for localhost/127.0.0.1 (absolute paths).
TLS="$DIR/tls"
if [ ! -s "$TLS/server.crt" ]; then
  mkdir -p "$TLS"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=leasing-test-ca" \
    -keyout "$TLS/ca.key" -out "$TLS/ca.crt" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$TLS/server.key" -out "$TLS/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$TLS/ext.cnf"
  openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
    -days 3650 -extfile "$TLS/ext.cnf" -out "$TLS/server.crt" >/dev/null 2>&1
  chmod 600 "$TLS"/*.key
fi

ping_port() { # port [tls]
  if [ "${2:-}" = "tls" ]; then
    redis-cli --tls --cacert "$TLS/ca.crt" -h localhost -p "$1" ping 2>/dev/null
  else
    redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null
  fi
}

start() { # name port [tls|cluster]
  local name="$1" port="$2" mode="${3:-}"
  local pidfile="$DIR/$name.pid"
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    return 0
  fi
  local args=(--bind 127.0.0.1 --save '' --appendonly no --daemonize yes
    --pidfile "$pidfile" --logfile "$DIR/$name.log" --dir "$DIR" --dbfilename "$name.rdb")
  if [ "$mode" = "tls" ]; then
    args+=(--port 0 --tls-port "$port" --tls-cert-file "$TLS/server.crt" --tls-key-file "$TLS/server.key"
      --tls-ca-cert-file "$TLS/ca.crt" --tls-auth-clients no)
  else
    args+=(--port "$port")
  fi
  if [ "$mode" = "cluster" ]; then
    args+=(--cluster-enabled yes --cluster-config-file "$DIR/$name-nodes.conf"
      --cluster-node-timeout 5000)
  fi
  redis-server "${args[@]}"
}

wait_up() { # port [tls]
  for _ in $(seq 1 100); do
    if [ "$(ping_port "$@")" = "PONG" ]; then return 0; fi
    sleep 0.1
  done
  echo "redis-up: instance on port $1 did not answer PING" >&2
  exit 1
}

start plain 6390
start tls 6391 tls
for p in 6401 6402 6403 6404 6405; do start "redlock-$p" "$p"; done
wait_up 6390
wait_up 6391 tls
for p in 6401 6402 6403 6404 6405; do wait_up "$p"; done

# Redis Cluster: three masters, no replicas.
CLUSTER_PORTS=(6411 6412 6413)
for p in "${CLUSTER_PORTS[@]}"; do start "cluster-$p" "$p" cluster; done
for p in "${CLUSTER_PORTS[@]}"; do wait_up "$p"; done
cluster_field() { # port field
  redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}
cluster_ok() { # every node sees state ok with all slots assigned
  local p
  for p in "${CLUSTER_PORTS[@]}"; do
    [ "$(cluster_field "$p" cluster_state)" = "ok" ] || return 1
    [ "$(cluster_field "$p" cluster_slots_assigned)" = "16384" ] || return 1
  done
}
wait_cluster() { # seconds
  for _ in $(seq 1 "$(($1 * 10))"); do
    if cluster_ok; then return 0; fi
    sleep 0.1
  done
  return 1
}
cluster_formed() { # every node knows all three and sees every slot assigned
  local p
  for p in "${CLUSTER_PORTS[@]}"; do
    [ "$(cluster_field "$p" cluster_known_nodes)" = "${#CLUSTER_PORTS[@]}" ] || return 1
    [ "$(cluster_field "$p" cluster_slots_assigned)" = "16384" ] || return 1
  done
}
if ! cluster_ok; then
  # Formed but still converging: give it a moment before starting over.
  if cluster_formed && wait_cluster 10; then
    :
  else
    # Not formed, or left half-formed (a node restarted without its config): reset every
    # node to an empty, unassigned state and create the cluster afresh.
    for p in "${CLUSTER_PORTS[@]}"; do
      redis-cli -h 127.0.0.1 -p "$p" flushall >/dev/null 2>&1 || true
      redis-cli -h 127.0.0.1 -p "$p" cluster reset hard >/dev/null
    done
    redis-cli --cluster create 127.0.0.1:6411 127.0.0.1:6412 127.0.0.1:6413 \
      --cluster-replicas 0 --cluster-yes >"$DIR/cluster-create.log" 2>&1 || {
      cat "$DIR/cluster-create.log" >&2
      echo "redis-up: redis-cli --cluster create failed" >&2
      exit 1
    }
  fi
fi
if ! wait_cluster 30; then
  echo "redis-up: the cluster on 6411-6413 did not reach cluster_state:ok" >&2
  exit 1
fi

cat >"$ENV_FILE" <<ENV
export LEASING_REDIS_URL=redis://127.0.0.1:6390
export LEASING_REDIS_TLS_URL=rediss://localhost:6391
export LEASING_REDIS_TLS_CA=$TLS/ca.crt
export LEASING_REDLOCK_URLS=redis://127.0.0.1:6401,redis://127.0.0.1:6402,redis://127.0.0.1:6403,redis://127.0.0.1:6404,redis://127.0.0.1:6405
export LEASING_REDIS_CLUSTER_URLS=redis://127.0.0.1:6411,redis://127.0.0.1:6412,redis://127.0.0.1:6413
ENV
echo "redis-up: plain 6390, TLS 6391, Redlock 6401-6405, cluster 6411-6413 up; source $ENV_FILE" >&2
