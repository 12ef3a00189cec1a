#!/usr/bin/env bash
# Instructions per check, consentgate against the baseline (issue 10), counted by
# valgrind's callgrind: a count, not a time, so it repeats on a busy machine where
# requests per second do not (the same binary gives the same figure within a
# fraction of a percent whatever else runs).
#
#   bash bench/check_instructions.sh [requests]
#
# Starts each server under callgrind (one worker thread; consentgate on SQLite with
# 500 opted-in numbers, logging as shipped), warms it with 500 checks, zeroes the
# counters, sends REQUESTS (default 2,000) `POST /v1/checks` at concurrency 4 with
# oha, dumps the counters and prints the instructions per request of each (every
# thread of the process counted: request handling, logging, metrics) and the
# ratio. Only user space is counted (the kernel's TCP work is the same for both).
# valgrind runs the CPU without SHA extensions, so SHA-256 (the API key's HMAC,
# the pseudonym) counts several times what it costs on the real CPU.
# BIN=path compares another consentgate binary. KEEP=dir keeps both callgrind
# dumps there (for `callgrind_annotate --inclusive=yes dir/service.cg.*`).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS="${1:-2000}"

for tool in valgrind callgrind_control curl python3; do
  command -v "$tool" > /dev/null || { echo "missing: $tool (Debian: apt-get install -y valgrind curl)" >&2; exit 1; }
done
OHA=bench/.tools/bin/oha
if [ ! -x "$OHA" ]; then
  echo "installing oha into bench/.tools (once)" >&2
  cargo install oha --locked --quiet --root bench/.tools
fi
cargo build --release --quiet --bin consentgate --example http_baseline --example bench_seed
BIN="${BIN:-target/release/consentgate}"
WORK=$(mktemp -d)
VPID=""
cleanup() {
  [ -n "$VPID" ] && kill "$VPID" 2> /dev/null && wait "$VPID" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# count NAME PORT KEY: warm, zero, load, dump; prints instructions per request.
count() {
  local name=$1 port=$2 key=$3
  local body='{"phone":"+31610000007","category":"utility"}'
  local args=(--no-tui -c 4 -m POST -H 'content-type: application/json' -H "authorization: Bearer $key" -d "$body")
  "$OHA" -n 500 "${args[@]}" "http://127.0.0.1:$port/v1/checks" > /dev/null
  callgrind_control -z "$VPID" > /dev/null 2>&1
  "$OHA" -n "$REQUESTS" "${args[@]}" --output-format json "http://127.0.0.1:$port/v1/checks" > "$WORK/$name.oha.json"
  callgrind_control -d "$VPID" > /dev/null 2>&1
  sleep 1
  kill "$VPID"
  wait "$VPID" 2> /dev/null || true
  VPID=""
  python3 - "$WORK/$name.oha.json" << 'EOF'
import json, sys
codes = json.load(open(sys.argv[1])).get("statusCodeDistribution", {})
assert set(codes) == {"200"}, codes
EOF
  local dump
  dump=$(ls -t "$WORK/$name".cg.*.* | head -1)
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.cg.out"; fi
  python3 - "$dump" "$REQUESTS" << 'EOF'
import sys
for line in open(sys.argv[1]):
    if line.startswith(("summary:", "totals:")):
        print(int(line.split()[1]) // int(sys.argv[2]))
        break
EOF
}

# consentgate, as shipped, on SQLite.
port=$(free_port)
mkdir -p "$WORK/data"
export CONSENTGATE_DATA_DIR="$WORK/data" CONSENTGATE_BIND="127.0.0.1:$port" CONSENTGATE_WORKERS=1
export CONSENTGATE_RATE_LIMIT_KEY_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_KEY_BURST=10000000
export CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_ADDRESS_BURST=10000000
export CONSENTGATE_OPERATOR_TOKEN="bench-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
unset DATABASE_URL CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY CONSENTGATE_LOG
valgrind --tool=callgrind --callgrind-out-file="$WORK/service.cg.%p" "$BIN" serve > "$WORK/service.log" 2>&1 &
VPID=$!
for _ in $(seq 600); do curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break; sleep 0.2; done
read -r _ KEY < <(target/release/examples/bench_seed "http://127.0.0.1:$port" "$CONSENTGATE_OPERATOR_TOKEN" 500)
service=$(count service "$port" "$KEY")

# The baseline.
bport=$(free_port)
valgrind --tool=callgrind --callgrind-out-file="$WORK/baseline.cg.%p" \
  target/release/examples/http_baseline "127.0.0.1:$bport" 500 > /dev/null 2>&1 &
VPID=$!
for _ in $(seq 600); do
  curl -fs -o /dev/null -X POST -H 'content-type: application/json' \
    -d '{"phone":"+31610000007","category":"utility"}' "http://127.0.0.1:$bport/v1/checks" && break
  sleep 0.2
done
baseline=$(count baseline "$bport" none)

python3 - "$service" "$baseline" "$REQUESTS" << 'EOF'
import sys
s, b, n = map(int, sys.argv[1:])
print(f"instructions per check ({n:,} checks, callgrind): consentgate {s:,}, baseline {b:,}, ratio {s / b:.2f}x")
EOF
