#!/usr/bin/env bash
# The check hot path over HTTP (issue 10), side by side with a baseline.
#
#   bash bench/check_http.sh [sqlite|postgres|both] [rounds] [seconds]
#
# Starts the release service (auth, metrics and logging as shipped; rate limits
# raised out of the way) with 5,000 opted-in numbers, and beside it
# examples/http_baseline.rs: a plain actix-web handler that parses the same JSON body
# and answers a JSON of the same shape from a HashMap, built in the same profile.
# Then, interleaving A/B rounds (default 3 rounds of 10 s each):
#   1. wrk, 64 connections: requests per second and p50/p99 of each;
#   2. wrk, 1 connection: the same;
#   3. oha at a fixed rate of half the baseline's median c=64 rate, 64 connections:
#      p99 of each at that rate (wrk drives a closed loop, so a fixed rate needs oha;
#      the script installs it into bench/.tools with cargo when missing).
# Prints the medians and the ratios consentgate / baseline. Every request checks a
# random one of the 5,000 numbers for `utility` (all allowed).
# PostgreSQL uses $BENCH_POSTGRES_URL (a database is created and dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-both}"
ROUNDS="${2:-3}"
SECONDS_PER_RUN="${3:-10}"
NUMBERS=5000

for tool in wrk curl python3; do
  command -v "$tool" > /dev/null || { echo "missing: $tool (Debian: apt-get install -y $tool)" >&2; exit 1; }
done
OHA=bench/.tools/bin/oha
if [ ! -x "$OHA" ]; then
  echo "installing oha into bench/.tools (once)" >&2
  cargo install oha --locked --quiet --root bench/.tools
fi

cargo build --release --quiet --bin consentgate --example http_baseline --example bench_seed
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
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

cat > "$WORK/check.lua" << EOF
local n = $NUMBERS
wrk.method = "POST"
wrk.path = "/v1/checks"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "none")
request = function()
  return wrk.format(nil, nil, nil,
    string.format('{"phone":"+3161%07d","category":"utility"}', math.random(0, n - 1)))
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
bad = 0
function response(status) if status ~= 200 then bad = bad + 1 end end
function done(summary, latency)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non200=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, b))
end
EOF

# wrk against URL with C connections: "rps p50 p99".
run_wrk() {
  local url=$1 c=$2 threads=2
  [ "$c" = 1 ] && threads=1
  local out
  out=$(wrk -t"$threads" -c"$c" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/check.lua" "$url" | grep RESULT)
  local bad
  bad=$(echo "$out" | sed 's/.*non200=\([0-9]*\).*/\1/')
  [ "$bad" = 0 ] || { echo "non-200 answers from $url: $out" >&2; exit 1; }
  echo "$out" | sed 's/.*rps=\([0-9.]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*/\1 \2 \3/'
}

# oha at RATE requests/s with 64 connections: "p99_ms".
run_oha() {
  local url=$1 rate=$2
  local body
  body=$(printf '{"phone":"+3161%07d","category":"utility"}' $((RANDOM % NUMBERS)))
  "$OHA" -z "${SECONDS_PER_RUN}s" -q "$rate" -c 64 --no-tui --output-format json -m POST \
    -H 'content-type: application/json' -H "authorization: Bearer ${KEY:-none}" -d "$body" \
    "$url/v1/checks" > "$WORK/oha.json"
  python3 - "$WORK/oha.json" << 'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
assert set(codes) <= {"200"}, codes
print("%.3f" % (r["latencyPercentiles"]["p99"] * 1000))
EOF
}

bench_backend() {
  local backend=$1
  local port bport data
  port=$(free_port)
  bport=$(free_port)
  data="$WORK/$backend"
  mkdir -p "$data"
  export CONSENTGATE_DATA_DIR="$data/data" CONSENTGATE_BIND="127.0.0.1:$port" CONSENTGATE_LOG=info
  export CONSENTGATE_RATE_LIMIT_KEY_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_KEY_BURST=10000000
  export CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_ADDRESS_BURST=10000000
  export CONSENTGATE_OPERATOR_TOKEN="bench-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  unset DATABASE_URL CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
  if [ "$backend" = postgres ]; then
    PGBASE="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    DB="consentgate_checks_$$"
    psql "$PGBASE" -qc "CREATE DATABASE $DB"
    export DATABASE_URL="${PGBASE%/*}/$DB"
    CONSENTGATE_MASTER_KEY=$($BIN master-key generate)
    CONSENTGATE_SIGNING_KEY=$($BIN signing-key generate)
    export CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
  fi
  "$BIN" serve > "$data/server.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
  read -r _ KEY < <(target/release/examples/bench_seed "http://127.0.0.1:$port" "$CONSENTGATE_OPERATOR_TOKEN" "$NUMBERS")
  export KEY
  target/release/examples/http_baseline "127.0.0.1:$bport" "$NUMBERS" > /dev/null 2>&1 &
  PIDS+=($!)
  sleep 0.5
  local svc="http://127.0.0.1:$port" base="http://127.0.0.1:$bport"
  # Warm both.
  SECONDS_PER_RUN=3 run_wrk "$svc" 64 > /dev/null
  SECONDS_PER_RUN=3 run_wrk "$base" 64 > /dev/null

  local -a b64 s64 b64p50 s64p50 b64p99 s64p99 b1 s1 b1p99 s1p99 brp99 srp99
  for r in $(seq "$ROUNDS"); do
    read -r rps p50 p99 < <(run_wrk "$base" 64); b64+=("$rps"); b64p50+=("$p50"); b64p99+=("$p99")
    read -r rps p50 p99 < <(run_wrk "$svc" 64); s64+=("$rps"); s64p50+=("$p50"); s64p99+=("$p99")
    read -r rps _ p99 < <(run_wrk "$base" 1); b1+=("$rps"); b1p99+=("$p99")
    read -r rps _ p99 < <(run_wrk "$svc" 1); s1+=("$rps"); s1p99+=("$p99")
    echo "  $backend round $r: c=64 baseline ${b64[-1]} req/s, consentgate ${s64[-1]} req/s; c=1 ${b1[-1]} vs ${s1[-1]}" >&2
  done
  local half
  half=$(python3 -c "print(int($(median "${b64[@]}") / 2))")
  for r in $(seq "$ROUNDS"); do
    brp99+=("$(run_oha "$base" "$half")")
    srp99+=("$(KEY=$KEY run_oha "$svc" "$half")")
  done
  python3 - "$backend" "$half" \
    "$(median "${b64[@]}")" "$(median "${s64[@]}")" "$(median "${b64p50[@]}")" "$(median "${s64p50[@]}")" \
    "$(median "${b64p99[@]}")" "$(median "${s64p99[@]}")" \
    "$(median "${b1[@]}")" "$(median "${s1[@]}")" "$(median "${b1p99[@]}")" "$(median "${s1p99[@]}")" \
    "$(median "${brp99[@]}")" "$(median "${srp99[@]}")" << 'EOF'
import sys
b, half, b64, s64, b50, s50, b99, s99, b1, s1, b1p99, s1p99, br99, sr99 = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {b}, c=64 | {b64:,.0f} | {s64:,.0f} | {s64 / b64:.2f}x | {s50:.2f} / {s99:.2f} ms (baseline {b50:.2f} / {b99:.2f}) |")
print(f"| {b}, c=1 | {b1:,.0f} | {s1:,.0f} | {s1 / b1:.2f}x | p99 {s1p99:.2f} ms (baseline {b1p99:.2f}) |")
print(f"| {b}, {half:,.0f} req/s fixed (half the baseline's max), c=64 | p99 {br99:.2f} ms | p99 {sr99:.2f} ms | {sr99 / br99:.2f}x p99 | |")
EOF
  for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true; done
  PIDS=()
  [ -n "${DB:-}" ] && psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
  DB=""
}

echo "| backend, load | baseline | consentgate | ratio | consentgate p50 / p99 |"
echo "|---|---|---|---|---|"
case "$WHICH" in
  sqlite | postgres) bench_backend "$WHICH" ;;
  both) bench_backend sqlite; bench_backend postgres ;;
  *) echo "sqlite, postgres or both" >&2; exit 2 ;;
esac
