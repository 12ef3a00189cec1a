#!/usr/bin/env bash
# A 1,000,000-number campaign over HTTP (issue 10, SPEC 9): a fifth of the numbers
# known (opted in), the rest valid numbers nobody opted in, checked for `utility`.
#
#   bash bench/campaign.sh [sqlite|postgres|both] [TOTAL] [KNOWN] [ROUNDS]
#
# Starts the release service (auth, metrics and logging as shipped; rate limits
# raised out of the way), seeds KNOWN opted-in numbers over HTTP (default 20,000:
# seeding is bounded by the write path; every fifth campaign number is one of
# them, in turn), then for each round times examples/campaign.rs:
#   stream: one POST /v1/checks/stream, NDJSON in and out (time to the first
#           answer too);
#   batch:  POST /v1/checks/batch, 10,000 numbers per request, 2 in flight.
# Both check every answer: exactly the known numbers allowed, the rest no_consent.
# PostgreSQL uses $BENCH_POSTGRES_URL (a database is created and dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-both}"
TOTAL="${2:-1000000}"
KNOWN="${3:-20000}"
ROUNDS="${4:-3}"

for tool in curl python3; do
  command -v "$tool" > /dev/null || { echo "missing: $tool" >&2; exit 1; }
done
cargo build --release --quiet --bin consentgate --example bench_seed --example campaign
BIN="${BIN:-target/release/consentgate}"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true; done
  [ -n "${DB:-}" ] && psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_backend() {
  local backend=$1 port data
  port=$(free_port)
  data="$WORK/$backend"
  mkdir -p "$data"
  export CONSENTGATE_DATA_DIR="$data/data" CONSENTGATE_BIND="127.0.0.1:$port" CONSENTGATE_LOG=info
  export CONSENTGATE_RATE_LIMIT_KEY_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_KEY_BURST=10000000
  export CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_ADDRESS_BURST=10000000
  export CONSENTGATE_OPERATOR_TOKEN="bench-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  unset DATABASE_URL CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
  if [ "$backend" = postgres ]; then
    PGBASE="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    DB="consentgate_campaign_$$"
    psql "$PGBASE" -qc "CREATE DATABASE $DB"
    export DATABASE_URL="${PGBASE%/*}/$DB"
    CONSENTGATE_MASTER_KEY=$($BIN master-key generate)
    CONSENTGATE_SIGNING_KEY=$($BIN signing-key generate)
    export CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
  fi
  "$BIN" serve > "$data/server.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
  local t0 t1
  t0=$(date +%s.%N)
  read -r _ KEY < <(target/release/examples/bench_seed "http://127.0.0.1:$port" "$CONSENTGATE_OPERATOR_TOKEN" "$KNOWN")
  t1=$(date +%s.%N)
  echo "  $backend: seeded $KNOWN opt-ins in $(python3 -c "print(round($t1 - $t0, 1))") s" >&2
  # Warm: one small round of each shape.
  target/release/examples/campaign "http://127.0.0.1:$port" "$KEY" "$KNOWN" 50000 stream > /dev/null
  target/release/examples/campaign "http://127.0.0.1:$port" "$KEY" "$KNOWN" 50000 batch > /dev/null
  for r in $(seq "$ROUNDS"); do
    for shape in stream batch; do
      echo "$backend round $r $(target/release/examples/campaign "http://127.0.0.1:$port" "$KEY" "$KNOWN" "$TOTAL" "$shape")"
    done
  done
  echo "  $backend: server RSS after the campaigns: $(($(awk '/VmRSS/ {print $2}' "/proc/$pid/status") / 1024)) MiB" >&2
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null && wait "$p" 2> /dev/null || true; done
  PIDS=()
  [ -n "${DB:-}" ] && psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
  DB=""
}

case "$WHICH" in
  sqlite | postgres) run_backend "$WHICH" ;;
  both) run_backend sqlite; run_backend postgres ;;
  *) echo "sqlite, postgres or both" >&2; exit 2 ;;
esac
