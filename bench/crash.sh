#!/usr/bin/env bash
# kill -9 under load (issue 11, SPEC 9): no acknowledged write lost, no phantom,
# no duplicate after retries, the chain verifies, checks equal a replay.
#
#   bash bench/crash.sh [sqlite|postgres|both] [rounds] [seconds] [writers] [--debug]
#
# Per round, on a fresh database: start the release service, create a business,
# run examples/crash_client.rs (WRITERS concurrent writers recording opt-ins,
# revocations and blocks with Idempotency-Keys for SECONDS, every
# acknowledgement logged), SIGKILL the service at a random moment 30-70% into
# the load, restart it on the same data at once (the client retries what got no
# answer with the same key), then: the client matches the chain against its
# acknowledgements and checks every number against a replay of them, and
# `consentgate audit verify` verifies every chain. Prints one line per round and
# exits 1 on any loss, phantom, duplicate, mismatch, rejection or broken chain.
# Defaults: both backends, 5 rounds, 8 s, 32 writers. `--debug` uses the dev
# build (CI: no release build). PostgreSQL uses $BENCH_POSTGRES_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-both}"
ROUNDS="${2:-5}"
LOAD_SECONDS="${3:-8}"
WRITERS="${4:-32}"
PROFILE=release
[ "${5:-}" = "--debug" ] && PROFILE=debug

for tool in curl python3; do
  command -v "$tool" > /dev/null || { echo "missing: $tool" >&2; exit 1; }
done
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet --bin consentgate --example crash_client --example bench_seed
  DIR=target/release
else
  cargo build --quiet --bin consentgate --example crash_client --example bench_seed
  DIR=target/debug
fi
BIN=$DIR/consentgate
WORK=$(mktemp -d)
SERVER=""
DB=""
PGBASE="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cleanup() {
  [ -n "$SERVER" ] && kill -9 "$SERVER" 2> /dev/null || true
  [ -n "$DB" ] && psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() {
  "$BIN" serve >> "$DATA/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$PORT/readyz" > /dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "the service did not start; log:" >&2
  tail -20 "$DATA/server.log" >&2
  exit 1
}

FAILED=0
round() {
  local backend=$1 r=$2
  PORT=$(free_port)
  DATA="$WORK/$backend-$r"
  mkdir -p "$DATA"
  export CONSENTGATE_DATA_DIR="$DATA/data" CONSENTGATE_BIND="127.0.0.1:$PORT" CONSENTGATE_LOG=warn
  export CONSENTGATE_RATE_LIMIT_KEY_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_KEY_BURST=10000000
  export CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_ADDRESS_BURST=10000000
  export CONSENTGATE_OPERATOR_TOKEN="crash-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  unset DATABASE_URL CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
  if [ "$backend" = postgres ]; then
    DB="consentgate_crash_$$_$r"
    psql "$PGBASE" -qc "CREATE DATABASE $DB"
    export DATABASE_URL="${PGBASE%/*}/$DB"
    CONSENTGATE_MASTER_KEY=$($BIN master-key generate)
    CONSENTGATE_SIGNING_KEY=$($BIN signing-key generate)
    export CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
  fi
  start_server
  local key
  read -r _ key < <($DIR/examples/bench_seed "http://127.0.0.1:$PORT" "$CONSENTGATE_OPERATOR_TOKEN" 0)
  $DIR/examples/crash_client "http://127.0.0.1:$PORT" "$key" "$DATA/acks.jsonl" "$WRITERS" "$LOAD_SECONDS" "$r" \
    > "$DATA/client.out" 2> "$DATA/client.err" &
  local client=$!
  # SIGKILL somewhere between 30% and 70% of the load.
  local at
  at=$(python3 -c "import random; print(round($LOAD_SECONDS * random.uniform(0.3, 0.7), 2))")
  sleep "$at"
  local before
  before=$(wc -l < "$DATA/acks.jsonl" 2> /dev/null || echo 0)
  kill -9 "$SERVER"
  wait "$SERVER" 2> /dev/null || true
  start_server
  local status=0
  wait "$client" || status=$?
  kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null || true
  SERVER=""
  local verify=ok
  "$BIN" audit verify > "$DATA/verify.out" 2>&1 || verify=FAILED
  local result
  result=$(grep '^RESULT' "$DATA/client.out" || echo "RESULT missing")
  echo "$backend round $r: killed at ${at}s after $before acks; ${result#RESULT }; audit verify: $verify"
  if [ "$status" != 0 ] || [ "$verify" != ok ]; then
    FAILED=1
    echo "--- client stderr" >&2; tail -20 "$DATA/client.err" >&2
    echo "--- audit verify" >&2; tail -20 "$DATA/verify.out" >&2
    echo "--- server log" >&2; tail -20 "$DATA/server.log" >&2
  fi
  if [ -n "$DB" ]; then
    psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
    DB=""
  fi
}

backend_rounds() {
  for r in $(seq "$ROUNDS"); do round "$1" "$r"; done
}

case "$WHICH" in
  sqlite | postgres) backend_rounds "$WHICH" ;;
  both) backend_rounds sqlite; backend_rounds postgres ;;
  *) echo "sqlite, postgres or both" >&2; exit 2 ;;
esac
exit "$FAILED"
