#!/usr/bin/env bash
# Zero stale allows across nodes (issue 10, SPEC 8): two consentgate nodes on one
# PostgreSQL database, the second node's clock 5 seconds ahead (libfaketime), and
# RACES revoke-then-check races between them (examples/race.rs): each race opts a
# fresh number in through one node, measures how long until the other node answers
# yes (the opt-in lag), withdraws it through one node (a revocation, a block or an
# inbound STOP, in turn) and checks it through the other node the moment the
# withdrawal is acknowledged. Any `allowed: true` there is a stale allow.
#
#   bash bench/race.sh [RACES] [CONCURRENCY] [CLOCK_OFFSET_SECONDS]
#
# Default 100000 races at concurrency 32, node B 5 s ahead. Uses
# $BENCH_POSTGRES_URL (a database is created and dropped). Needs faketime
# (Debian: apt-get install -y faketime; installed when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
RACES="${1:-100000}"
CONCURRENCY="${2:-32}"
OFFSET="${3:-5}"

for tool in curl python3 psql; do
  command -v "$tool" > /dev/null || { echo "missing: $tool" >&2; exit 1; }
done
if ! command -v faketime > /dev/null; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q faketime > /dev/null 2>&1) || (apt-get update -q > /dev/null && apt-get install -y -q faketime > /dev/null)
  else
    echo "missing: faketime (Debian: apt-get install -y faketime)" >&2
    exit 1
  fi
fi

cargo build --release --quiet --bin consentgate --example race --example bench_seed
BIN=target/release/consentgate
WORK=$(mktemp -d)
PIDS=()
PGBASE="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="consentgate_race_$$"
cleanup() {
  # faketime runs the node as its child: stop the children too (a node left
  # running would keep this script's lock files and ports).
  for pid in "${PIDS[@]}"; do
    pkill -P "$pid" 2> /dev/null || true
    kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true
  done
  psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql "$PGBASE" -qc "CREATE DATABASE $DB"
export DATABASE_URL="${PGBASE%/*}/$DB" CONSENTGATE_LOG=warn
CONSENTGATE_MASTER_KEY=$($BIN master-key generate)
CONSENTGATE_SIGNING_KEY=$($BIN signing-key generate)
CONSENTGATE_OPERATOR_TOKEN="race-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY CONSENTGATE_OPERATOR_TOKEN
export CONSENTGATE_RATE_LIMIT_KEY_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_KEY_BURST=10000000
export CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_ADDRESS_BURST=10000000

PA=$(free_port)
PB=$(free_port)
CONSENTGATE_DATA_DIR="$WORK/a" CONSENTGATE_BIND="127.0.0.1:$PA" "$BIN" serve > "$WORK/a.log" 2>&1 &
PIDS+=($!)
# Node B's clock runs OFFSET seconds ahead (monotonic time untouched).
CONSENTGATE_DATA_DIR="$WORK/b" CONSENTGATE_BIND="127.0.0.1:$PB" FAKETIME_DONT_FAKE_MONOTONIC=1 \
  faketime -f "+${OFFSET}s" "$BIN" serve > "$WORK/b.log" 2>&1 &
PIDS+=($!)
for port in "$PA" "$PB"; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$port/readyz" > /dev/null || { cat "$WORK"/*.log >&2; exit 1; }
done
read -r _ KEY < <(target/release/examples/bench_seed "http://127.0.0.1:$PA" "$CONSENTGATE_OPERATOR_TOKEN" 1)
# The two nodes' clocks, as their answers say.
for port in "$PA" "$PB"; do
  curl -fs "http://127.0.0.1:$port/v1/checks" -H "authorization: Bearer $KEY" \
    -H 'content-type: application/json' -d '{"phone":"+31610000000","category":"utility"}' |
    python3 -c "import json,sys; print('node on port $port evaluates at', json.load(sys.stdin)['evaluated_at'])"
done
echo "running $RACES races, concurrency $CONCURRENCY, node B ${OFFSET}s ahead" >&2
target/release/examples/race "http://127.0.0.1:$PA" "http://127.0.0.1:$PB" "$KEY" "$RACES" "$CONCURRENCY" | tee "$WORK/result"
grep -q 'stale_allows=0 ' "$WORK/result" || { echo "STALE ALLOWS FOUND" >&2; exit 1; }
