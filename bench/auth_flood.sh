#!/usr/bin/env bash
# Token-flood benchmark (issue 9): what a flood of wrong or random API tokens does
# to the release binary's memory and to legitimate checks, side by side in one run.
#
#   bash bench/auth_flood.sh [sqlite|postgres] [distributed|single]
#
# Measures, against one server:
#   1. idle RSS (after a warm-up of legitimate checks);
#   2. RSS after 10,000 bad tokens (concurrency 32): half a real key id with a
#      wrong secret, half random key ids;
#   3. p99 of legitimate checks (POST /v1/checks, 4 connections, 10 s) alone, then
#      with a concurrent flood of bad tokens (32 connections) for the same 10 s;
#   4. RSS after all of it.
# Flood addresses: `distributed` (default) gives every bad request a random client
# address (X-Forwarded-For from a trusted proxy, 198.18.0.0/15) so that each one
# is authenticated (a key lookup and an HMAC) and rate limits per address do not
# help; `single` sends them all from one address, which the failed-auth quota
# throttles to 429 before authentication. Legitimate checks come from their own
# address. All traffic stays on 127.0.0.1.
# PostgreSQL uses $BENCH_POSTGRES_URL (a database that is created and dropped).
# Needs wrk, curl and python3; installs nothing itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-sqlite}"
MODE="${2:-distributed}"
FLOOD_N=10000

missing=()
for tool in wrk curl python3; do
  command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]} (Debian: apt-get install -y ${missing[*]/python3/python3})" >&2
  exit 1
fi
case "$MODE" in distributed | single) ;; *) echo "mode: distributed or single" >&2; exit 2 ;; esac

cargo build --release --quiet --bin consentgate
BIN=target/release/consentgate
DIR=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2> /dev/null && wait "$PID" 2> /dev/null || true
  [ -n "${DB:-}" ] && psql "$BASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
export CONSENTGATE_DATA_DIR="$DIR/data" CONSENTGATE_BIND="127.0.0.1:$PORT" CONSENTGATE_LOG=warn
export CONSENTGATE_TRUSTED_PROXIES=127.0.0.1
export CONSENTGATE_OPERATOR_TOKEN="bench-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
if [ "$BACKEND" = postgres ]; then
  command -v psql > /dev/null || { echo "missing: psql (Debian: postgresql-client)" >&2; exit 1; }
  BASE="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  DB="consentgate_flood_$$"
  psql "$BASE" -qc "CREATE DATABASE $DB"
  export DATABASE_URL="${BASE%/*}/$DB"
  CONSENTGATE_MASTER_KEY=$($BIN master-key generate)
  CONSENTGATE_SIGNING_KEY=$($BIN signing-key generate)
  export CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
fi

"$BIN" serve > "$DIR/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
  curl -fs "$URL/readyz" > /dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$URL/readyz" > /dev/null || { cat "$DIR/server.log" >&2; exit 1; }

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
BIZ=$(curl -fs "$URL/v1/businesses" -H "authorization: Bearer $CONSENTGATE_OPERATOR_TOKEN" \
  -H 'content-type: application/json' -d '{"name":"Flood bench","policy":"whatsapp-eu"}')
ADMIN=$(echo "$BIZ" | json '["key"]["secret"]')
KEY=$(curl -fs "$URL/v1/keys" -H "authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' -d '{"name":"sender","scopes":["checks:read"]}')
export LEGIT_TOKEN REAL_KEY_ID
LEGIT_TOKEN=$(echo "$KEY" | json '["secret"]')
REAL_KEY_ID=$(echo "$KEY" | json '["id"]' | tr -d -)
CHECK=$(curl -s -o "$DIR/check.json" -w '%{http_code}' "$URL/v1/checks" -H "authorization: Bearer $LEGIT_TOKEN" \
  -H 'content-type: application/json' -d '{"phone":"+31612345678","category":"utility"}')
[ "$CHECK" = 200 ] || { echo "a legitimate check answered $CHECK: $(cat "$DIR/check.json")" >&2; exit 1; }

cat > "$DIR/legit.lua" << 'EOF'
wrk.method = "POST"
wrk.path = "/v1/checks"
wrk.body = '{"phone":"+31612345678","category":"utility"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("LEGIT_TOKEN")
wrk.headers["X-Forwarded-For"] = "192.0.2.10"
local threads = {}
function setup(thread) table.insert(threads, thread) end
ok, other = 0, 0
function response(status)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency)
  local o, n = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); n = n + t:get("other") end
  io.write(string.format("LEGIT requests=%d ok=%d other=%d p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, o, n, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
EOF

cat > "$DIR/flood.lua" << 'EOF'
local real_id = os.getenv("REAL_KEY_ID")
local limit = tonumber(os.getenv("FLOOD_LIMIT") or "0")
local distributed = os.getenv("FLOOD_MODE") == "distributed"
local hex = "0123456789abcdef"
local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local body = '{"phone":"+31612345678","category":"utility"}'
local function pick(alphabet, n)
  local out = {}
  for i = 1, n do
    local k = math.random(1, #alphabet)
    out[i] = alphabet:sub(k, k)
  end
  return table.concat(out)
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end
function request()
  local id = (math.random() < 0.5) and real_id or pick(hex, 32)
  local addr = "203.0.113.66"
  if distributed then
    addr = string.format("198.%d.%d.%d", 18 + math.random(0, 1), math.random(0, 255), math.random(1, 254))
  end
  return wrk.format("POST", "/v1/checks", {
    ["Authorization"] = "Bearer cg_" .. id .. "_" .. pick(b64, 43),
    ["Content-Type"] = "application/json",
    ["X-Forwarded-For"] = addr,
  }, body)
end
n, s401, s429, sother = 0, 0, 0, 0
function response(status)
  n = n + 1
  if status == 401 then s401 = s401 + 1 elseif status == 429 then s429 = s429 + 1 else sother = sother + 1 end
  if limit > 0 and n >= limit then wrk.thread:stop() end
end
function done(summary)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("s401"); b = b + t:get("s429"); c = c + t:get("sother") end
  io.write(string.format("FLOOD requests=%d 401=%d 429=%d other=%d\n", summary.requests, a, b, c))
end
EOF

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$PID/status"; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
export FLOOD_MODE="$MODE"

wrk -t1 -c4 -d5s -s "$DIR/legit.lua" "$URL" > /dev/null # warm-up
sleep 1
IDLE=$(rss_mib)

FLOOD_LIMIT=$FLOOD_N wrk -t1 -c32 -d120s -s "$DIR/flood.lua" "$URL" > "$DIR/flood1.txt" 2>&1 ||
  { echo "the flood failed:" >&2; cat "$DIR/flood1.txt" >&2; exit 1; }
sleep 1
AFTER_FLOOD=$(rss_mib)

wrk -t1 -c4 -d10s -s "$DIR/legit.lua" "$URL" > "$DIR/alone.txt"
FLOOD_LIMIT=0 wrk -t1 -c32 -d10s -s "$DIR/flood.lua" "$URL" > "$DIR/flood2.txt" &
FLOODER=$!
wrk -t1 -c4 -d10s -s "$DIR/legit.lua" "$URL" > "$DIR/flooded.txt"
wait "$FLOODER"
sleep 1
AFTER_ALL=$(rss_mib)

P99_ALONE=$(grep LEGIT "$DIR/alone.txt" | field p99_ms)
P99_FLOODED=$(grep LEGIT "$DIR/flooded.txt" | field p99_ms)
echo "auth flood benchmark: backend=$BACKEND flood=$MODE, $(nproc) cores, release build"
echo "  idle RSS:                              $IDLE MiB"
echo "  RSS after $FLOOD_N bad tokens:            $AFTER_FLOOD MiB  (+$(python3 -c "print(f'{$AFTER_FLOOD-$IDLE:.1f}')") MiB)   $(grep FLOOD "$DIR/flood1.txt" | cut -d' ' -f2-)"
echo "  legit checks alone:                    $(grep LEGIT "$DIR/alone.txt" | cut -d' ' -f2-)"
echo "  legit checks during a flood:           $(grep LEGIT "$DIR/flooded.txt" | cut -d' ' -f2-)"
echo "  concurrent flood:                      $(grep FLOOD "$DIR/flood2.txt" | cut -d' ' -f2-)"
echo "  RSS after everything:                  $AFTER_ALL MiB  (+$(python3 -c "print(f'{$AFTER_ALL-$IDLE:.1f}')") MiB)"
echo "  p99 ratio flooded/alone:               $(python3 -c "print(f'{$P99_FLOODED/$P99_ALONE:.2f}x')")"
