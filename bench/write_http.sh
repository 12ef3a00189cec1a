#!/usr/bin/env bash
# Durable writes over HTTP (issue 11, SPEC 9), side by side with pgbench.
#
#   bash bench/write_http.sh [sqlite|postgres|both] [rounds] [seconds] [businesses]
#
# Starts the release service (auth, metrics and logging as shipped; rate limits
# raised out of the way) on a fresh database and, interleaving rounds (default 3
# rounds of 10 s each):
#   1. wrk, 64 connections, `POST /v1/opt-ins` (web evidence), a fresh number per
#      request, one business: opt-ins per second, p50 / p99;
#   2. the same spread over BUSINESSES businesses (default 16), a key each;
#   3. PostgreSQL only: pgbench, 64 clients, on the same PostgreSQL database, one
#      transaction per opt-in of the same shape (a fact row and an audit event
#      row, prepared statements, synchronous_commit as the server has it);
# then a fixed rate of half the median maximum of 1 (and of 2), open loop
# (examples/write_load.rs, wrk2-style: latency counted from when a request was
# due), 64 connections, in SLICES slices (default 3) of the same length, each
# followed by a witness slice at the same rate, to tell the service's tail from
# the disk's at that moment: pgbench throttled to the rate (PostgreSQL),
# bench/sqlite_witness.py (SQLite). Alternating them puts both through the same
# moments of the disk (a checkpoint that the saturating rounds set off, say),
# which one witness run after the service's did not. Reported: the p99 of all
# the service's slices' requests together and of all the witness's, the bytes
# written per opt-in meanwhile (SQLite: by the server process, WAL and database;
# PostgreSQL: WAL generated, cluster-wide). The ratio column is the service's
# p99 over the witness's. Each slice also gives the p99 of the server's own time
# per request (the `latency_us` of its request log lines: from its headers read
# to its answer ready). A stall inside the server holds only the 64 requests in
# flight, while every request due meanwhile waits for a connection: a client p99
# far above the server's own points at rare long stalls, not at the network.
# And how many times, during the slice, the service's projection read the
# database to catch up (every request of a business waits for such a read).
# Prints medians and ratios. PostgreSQL uses $BENCH_POSTGRES_URL (a database is
# created and dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-both}"
ROUNDS="${2:-3}"
SECONDS_PER_RUN="${3:-10}"
BUSINESSES="${4:-16}"
SLICES="${SLICES:-3}"
[ "$SLICES" -ge 1 ] && [ "$SLICES" -le 9 ] || { echo "SLICES: 1 to 9" >&2; exit 2; }

for tool in wrk curl python3 psql; do
  command -v "$tool" > /dev/null || { echo "missing: $tool (Debian: apt-get install -y $tool)" >&2; exit 1; }
done
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2> /dev/null | tail -1)
[ -x "$PGBENCH" ] || { echo "missing: pgbench (Debian: postgresql-client)" >&2; exit 1; }

cargo build --release --quiet --bin consentgate --example bench_seed --example write_load
BIN="${BIN:-target/release/consentgate}"
WORK=$(mktemp -d)
SERVER=""
DB=""
PGBASE="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null || true
  [ -n "$DB" ] && psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# A fresh number per request: +31 6 PREFIX, the thread, a counter.
cat > "$WORK/opt_in.lua" << 'EOF'
local keys = {}
for k in string.gmatch(os.getenv("KEYS") or "", "[^,]+") do table.insert(keys, k) end
local prefix = os.getenv("PREFIX") or "20"
local collected_at = os.date("!%Y-%m-%dT%H:%M:%SZ")
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
local n = 0
bad = 0
request = function()
  n = n + 1
  local key = keys[(n % #keys) + 1]
  local body = string.format(
    '{"phone":"+316%s%d%05d","categories":["utility"],"channel":"web",' ..
    '"evidence":{"collected_at":"%s","consent_text_version":"bench-v1",' ..
    '"source_url":"https://bench.example/signup"}}', prefix, tid, n, collected_at)
  return wrk.format("POST", "/v1/opt-ins",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end
function response(status) if status ~= 201 then bad = bad + 1 end end
function done(summary, latency)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non201=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, b))
end
EOF

# The same row shape, written the way pgbench writes: a fact and an audit event.
cat > "$WORK/pgbench_setup.sql" << 'EOF'
DROP TABLE IF EXISTS pgbench_facts, pgbench_events;
CREATE TABLE pgbench_facts (
  id TEXT PRIMARY KEY, business_id TEXT NOT NULL, subject_id TEXT NOT NULL,
  kind TEXT NOT NULL, categories TEXT, channel TEXT, evidence BYTEA,
  effective_at TIMESTAMP NOT NULL, recorded_at TIMESTAMP NOT NULL);
CREATE INDEX ON pgbench_facts (subject_id, recorded_at);
CREATE TABLE pgbench_events (
  business_id TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, at TIMESTAMP NOT NULL,
  type TEXT NOT NULL, actor TEXT NOT NULL, subject_id TEXT, data TEXT NOT NULL,
  prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (business_id, seq));
CREATE SEQUENCE IF NOT EXISTS pgbench_event_seq;
EOF
cat > "$WORK/pgbench_opt_in.sql" << 'EOF'
BEGIN;
INSERT INTO pgbench_facts VALUES (CAST(gen_random_uuid() AS text), 'bench', CAST(gen_random_uuid() AS text),
  'opt_in', '["utility"]', 'web', decode(repeat(md5(CAST(random() AS text)), 8), 'hex'), now(), now());
INSERT INTO pgbench_events VALUES ('bench', nextval('pgbench_event_seq'), CAST(gen_random_uuid() AS text),
  now(), 'opt_in.recorded', 'key:' || 'bench', CAST(gen_random_uuid() AS text), repeat('x', 400),
  decode(md5(CAST(random() AS text)) || md5(CAST(random() AS text)), 'hex'),
  decode(md5(CAST(random() AS text)) || md5(CAST(random() AS text)), 'hex'));
END;
EOF

run_wrk() { # KEYS PREFIX -> "rps p50 p99"
  local out bad
  out=$(KEYS=$1 PREFIX=$2 wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/opt_in.lua" "$URL" | grep RESULT)
  bad=$(echo "$out" | sed 's/.*non201=\([0-9]*\).*/\1/')
  [ "$bad" = 0 ] || { echo "non-201 answers: $out" >&2; tail -5 "$DATA/server.log" >&2; exit 1; }
  echo "$out" | sed 's/.*rps=\([0-9.]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*/\1 \2 \3/'
}

run_pgbench() { # -> tps
  "$PGBENCH" -n -M prepared -c 64 -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/pgbench_opt_in.sql" "$DATABASE_URL" 2> /dev/null \
    | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

# Bytes this backend wrote while a fixed-rate run ran: SQLite, what the server
# process wrote to disk (WAL and database, /proc/PID/io write_bytes); PostgreSQL,
# the WAL it generated (pg_current_wal_lsn).
written_bytes() {
  if [ "$BACKEND" = postgres ]; then
    psql "$DATABASE_URL" -Atc "SELECT pg_current_wal_lsn() - '0/0'"
  else
    sed -n 's/^write_bytes: //p' "/proc/$SERVER/io"
  fi
}

# The p99 (ms) of the latencies (ms, one a line) in these files together; n/a
# when they hold none.
pooled_p99() {
  cat "$@" | python3 -c '
import sys
l = sorted(float(x) for x in sys.stdin)
print(f"{l[int((len(l) - 1) * 0.99)]:.2f}" if l else "n/a")'
}

# How many times the service's projection has read the database to catch up so
# far (its /metrics; n/a from a build that does not count them).
catch_ups() {
  curl -fs "$URL/metrics" | sed -n 's/^consentgate_projection_catch_ups_total \([0-9]*\)$/\1/p' | grep . || echo n/a
}

# One slice of the service at RATE; its latencies (ms) to DUMP, and the server's
# own time for each of them (ms, the `latency_us` of its request log lines, from
# its headers read to its answer ready) to DUMP.server.
# -> "sent achieved non201 bytes_written catch_ups"
run_fixed() { # KEYS RATE PREFIX DUMP
  local out before after log_from caught_before caught
  before=$(written_bytes)
  caught_before=$(catch_ups)
  log_from=$(stat -c %s "$DATA/server.log")
  out=$(WRITE_LOAD_DUMP="$4.raw" target/release/examples/write_load "$URL" "$1" "$2" "$SECONDS_PER_RUN" 64 "$3" | grep RESULT)
  after=$(written_bytes)
  caught=$(catch_ups)
  [ "$caught" = n/a ] || caught=$((caught - caught_before))
  awk '{print $2}' "$4.raw" > "$4"
  sleep 0.2 # the log's writer thread catches up
  tail -c +"$((log_from + 1))" "$DATA/server.log" \
    | sed -n 's|.*request answered route="/v1/opt-ins" .*latency_us=\([0-9]*\).*|\1|p' \
    | awk '{print $1 / 1000}' > "$4.server"
  echo "$out" | sed 's/.*sent=\([0-9]*\) non201=\([0-9]*\) rate=\([0-9.]*\).*/\1 \3 \2/' \
    | { read -r sent rate bad; echo "$sent $rate $bad $((after - before)) $caught"; }
}

# One slice of what the disk permitted at the same moment, at the same rate
# (RATE), its latencies (ms) to DUMP: on PostgreSQL pgbench, 64 clients, the
# pgbench transaction above, throttled to RATE (its latency counted from each
# transaction's scheduled start, so its schedule lag is in it); on SQLite
# bench/sqlite_witness.py (the same row shape, group commit, open loop,
# synchronous=FULL) in a database of its own beside the service's.
run_witness() { # RATE DUMP
  if [ "$BACKEND" = postgres ]; then
    rm -f "$WORK"/pgbench_log*
    "$PGBENCH" -n -M prepared -R "$1" -c 64 -j 2 -T "$SECONDS_PER_RUN" -l --log-prefix="$WORK/pgbench_log" \
      -f "$WORK/pgbench_opt_in.sql" "$DATABASE_URL" > /dev/null 2>&1
    # Each line: client, transaction, latency (us, from the scheduled start), ...
    cat "$WORK"/pgbench_log* | awk '{print $3 / 1000}' > "$2"
  else
    python3 bench/sqlite_witness.py "$DATA" "$1" "$SECONDS_PER_RUN" "$2" > /dev/null
  fi
}

# SLICES slices of the service at RATE, each followed by one of the witness.
# -> "p99 achieved non201 bytes_per_opt_in witness_p99"
run_cell() { # KEYS RATE
  local s sent rate bad bytes caught total_sent=0 total_bad=0 total_bytes=0 rates=""
  rm -f "$WORK"/service_* "$WORK"/witness_*
  for s in $(seq "$SLICES"); do
    read -r sent rate bad bytes caught < <(run_fixed "$1" "$2" "$s" "$WORK/service_$s")
    total_sent=$((total_sent + sent)); total_bad=$((total_bad + bad)); total_bytes=$((total_bytes + bytes))
    rates="$rates $rate"
    run_witness "$2" "$WORK/witness_$s"
    echo "    slice $s: service p99 $(pooled_p99 "$WORK/service_$s") ms (the server's own time $(pooled_p99 "$WORK/service_$s.server") ms; $caught catch-ups read the database), witness p99 $(pooled_p99 "$WORK/witness_$s") ms" >&2
  done
  local service_p99
  service_p99=$(pooled_p99 "$WORK"/service_?)
  echo "    all slices: service p99 $service_p99 ms (the server's own time $(pooled_p99 "$WORK"/service_?.server) ms)" >&2
  # shellcheck disable=SC2086
  echo "$service_p99 $(median $rates) $total_bad $((total_bytes / total_sent)) $(pooled_p99 "$WORK"/witness_?)"
}

bench_backend() {
  local backend=$1
  BACKEND=$backend
  local port
  port=$(free_port)
  DATA="$WORK/$backend"
  mkdir -p "$DATA"
  export CONSENTGATE_DATA_DIR="$DATA/data" CONSENTGATE_BIND="127.0.0.1:$port" CONSENTGATE_LOG=info CONSENTGATE_LOG_FORMAT=pretty
  export CONSENTGATE_RATE_LIMIT_KEY_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_KEY_BURST=10000000
  export CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_ADDRESS_BURST=10000000
  export CONSENTGATE_OPERATOR_TOKEN="bench-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  unset DATABASE_URL CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
  if [ "$backend" = postgres ]; then
    DB="consentgate_writes_$$"
    psql "$PGBASE" -qc "CREATE DATABASE $DB"
    export DATABASE_URL="${PGBASE%/*}/$DB"
    CONSENTGATE_MASTER_KEY=$($BIN master-key generate)
    CONSENTGATE_SIGNING_KEY=$($BIN signing-key generate)
    export CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
    psql "$DATABASE_URL" -q -f "$WORK/pgbench_setup.sql" > /dev/null
    echo "  PostgreSQL: synchronous_commit=$(psql "$DATABASE_URL" -Atc 'SHOW synchronous_commit'), fsync=$(psql "$DATABASE_URL" -Atc 'SHOW fsync')" >&2
  fi
  "$BIN" serve > "$DATA/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
  URL="http://127.0.0.1:$port"
  local one many="" key
  read -r _ one < <(target/release/examples/bench_seed "$URL" "$CONSENTGATE_OPERATOR_TOKEN" 0)
  for _ in $(seq "$BUSINESSES"); do
    read -r _ key < <(target/release/examples/bench_seed "$URL" "$CONSENTGATE_OPERATOR_TOKEN" 0)
    many="${many:+$many,}$key"
  done
  # Warm up (numbers of their own).
  SECONDS_PER_RUN=3 run_wrk "$one" 29 > /dev/null

  local -a s1 s1p50 s1p99 sm smp99 pg
  for r in $(seq "$ROUNDS"); do
    read -r rps p50 p99 < <(run_wrk "$one" "2$r"); s1+=("$rps"); s1p50+=("$p50"); s1p99+=("$p99")
    if [ "$backend" = postgres ]; then pg+=("$(run_pgbench)"); fi
    read -r rps _ p99 < <(run_wrk "$many" "3$r"); sm+=("$rps"); smp99+=("$p99")
    echo "  $backend round $r: one business ${s1[-1]}/s (p99 ${s1p99[-1]} ms), $BUSINESSES businesses ${sm[-1]}/s${pg:+, pgbench ${pg[-1]} tps}" >&2
  done
  local half1 halfm
  half1=$(python3 -c "print(int($(median "${s1[@]}") / 2))")
  halfm=$(python3 -c "print(int($(median "${sm[@]}") / 2))")
  local c1 cm f1 fm w1 wm
  echo "  $backend fixed rate, one business, $half1/s, $SLICES slices of ${SECONDS_PER_RUN}s each way:" >&2
  c1=$(run_cell "$one" "$half1")
  echo "  $backend fixed rate, $BUSINESSES businesses, $halfm/s:" >&2
  cm=$(run_cell "$many" "$halfm")
  f1=${c1% *} w1=${c1##* } fm=${cm% *} wm=${cm##* }
  echo "  $backend fixed rate: one business $half1/s -> p99/achieved/non201/bytes per opt-in $f1 (witness p99 $w1 ms); $BUSINESSES businesses $halfm/s -> $fm (witness p99 $wm ms)" >&2
  python3 - "$backend" "$BUSINESSES" "$(median "${s1[@]}")" "$(median "${s1p50[@]}")" "$(median "${s1p99[@]}")" \
    "$(median "${sm[@]}")" "$(median "${smp99[@]}")" "${pg:+$(median "${pg[@]}")}" "$half1" "$f1" "$halfm" "$fm" "$w1" "$wm" << 'EOF'
import sys
b, n, s1, s1p50, s1p99, sm, smp99, pg, half1, f1, halfm, fm, w1, wm = sys.argv[1:]
s1, sm = float(s1), float(sm)
f1p99, f1rate, f1bad, f1bytes = f1.split()
fmp99, fmrate, fmbad, fmbytes = fm.split()
witness = ("pgbench -R" if pg else "sqlite_witness.py") + ", alternating,"
written = "WAL" if pg else "written"
if pg:
    pg = float(pg)
    print(f"| {b}, one business, c=64 | {s1:,.0f}/s | pgbench {pg:,.0f} tps | {s1 / pg:.2f}x | p50 {float(s1p50):.1f} / p99 {float(s1p99):.1f} ms |")
    print(f"| {b}, {n} businesses, c=64 | {sm:,.0f}/s | pgbench {pg:,.0f} tps | {sm / pg:.2f}x | p99 {float(smp99):.1f} ms |")
else:
    print(f"| {b}, one business, c=64 | {s1:,.0f}/s | target 5,000/s | {s1 / 5000:.2f}x | p50 {float(s1p50):.1f} / p99 {float(s1p99):.1f} ms |")
    print(f"| {b}, {n} businesses, c=64 | {sm:,.0f}/s | target 5,000/s | {sm / 5000:.2f}x | p99 {float(smp99):.1f} ms |")
print(f"| {b}, one business, fixed {int(half1):,}/s (half max) | achieved {float(f1rate):,.0f}/s, non-201 {f1bad}, {written} {int(f1bytes) / 1000:.1f} KB/opt-in | {witness} same rate: p99 {float(w1):.1f} ms | {float(f1p99) / float(w1):.2f}x | p99 {float(f1p99):.1f} ms |")
print(f"| {b}, {n} businesses, fixed {int(halfm):,}/s (half max) | achieved {float(fmrate):,.0f}/s, non-201 {fmbad}, {written} {int(fmbytes) / 1000:.1f} KB/opt-in | {witness} same rate: p99 {float(wm):.1f} ms | {float(fmp99) / float(wm):.2f}x | p99 {float(fmp99):.1f} ms |")
EOF
  kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null || true
  SERVER=""
  if [ -n "$DB" ]; then
    psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
    DB=""
  fi
}

echo "| backend, load | consentgate | baseline | ratio | latency |"
echo "|---|---|---|---|---|"
case "$WHICH" in
  sqlite | postgres) bench_backend "$WHICH" ;;
  both) bench_backend sqlite; bench_backend postgres ;;
  *) echo "sqlite, postgres or both" >&2; exit 2 ;;
esac
