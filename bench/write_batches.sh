#!/usr/bin/env bash
# Where a write's time goes inside the writer, batch by batch, for this build
# beside a baseline build (issue 11: the p99 at half rate).
#
#   BASE=path/to/other/consentgate [BACKEND=postgres] [BUSINESSES=16] \
#     bash bench/write_batches.sh [rate] [pairs] [slices]
#
# For each of PAIRS pairs (default 2), runs BASE and then this build (BIN, default
# the release build of this checkout), each on a fresh database: one
# business (or BUSINESSES businesses, the requests spread over them in turn),
# 240,000 opt-ins at up to 12,000/s (so the indexes have a realistic
# depth), then SLICES slices (default 2) of 10 s at RATE opt-ins a second (default
# 3,800), open loop (examples/write_load.rs, 64 connections). The service runs
# with the writer's debug log (one line per committed batch: its writes, how long
# its oldest write waited, its time in the lock and BEGIN, applying, the commit,
# the install). Prints per run and slice: the client's p50 and p99, the p99 of
# the server's own time per request (its request log lines), the p50 / p99 / max
# of the batch commit (the WAL's fsync) and the p50 / p99 of the oldest write's
# wait; and per run the CPU (cores) of the writer thread(s) and the WAL
# checkpoint thread. Logs go to /dev/shm, so that writing them does not share
# the disk with the database.
# Without BASE, only this build runs.
#
# BACKEND=postgres runs the same on a fresh PostgreSQL database per run
# ($BENCH_POSTGRES_URL's server; created and dropped), and adds per slice what
# PostgreSQL saw meanwhile, cluster-wide: its WAL fsyncs (pg_stat_wal: how many,
# and their mean time when track_wal_io_timing is on) and the checkpoints it
# started (pg_stat_bgwriter). The writer threads are then the shards' threads.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-3800}"
PAIRS="${2:-2}"
SLICES="${3:-2}"
BUSINESSES="${BUSINESSES:-1}"
[ "$BUSINESSES" -ge 1 ] || { echo "BUSINESSES: 1 or more" >&2; exit 2; }

BACKEND="${BACKEND:-sqlite}"
case "$BACKEND" in sqlite | postgres) ;; *) echo "BACKEND: sqlite or postgres" >&2; exit 2 ;; esac
PGBASE="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
for tool in curl python3 $([ "$BACKEND" = postgres ] && echo psql); do
  command -v "$tool" > /dev/null || { echo "missing: $tool" >&2; exit 1; }
done
cargo build --release --quiet --bin consentgate --example bench_seed --example write_load
BIN="${BIN:-target/release/consentgate}"
BASE="${BASE:-}"
WORK=$(mktemp -d)
LOGS=$(mktemp -d /dev/shm/write_batches.XXXXXX)
SERVER=""
DB=""
# Drops the run's PostgreSQL database, if it made one.
drop_database() {
  [ -z "$DB" ] || psql "$PGBASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" > /dev/null 2>&1 || true
  DB=""
}
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null || true
  drop_database
  rm -rf "$WORK" "$LOGS"
}
trap cleanup EXIT

# CPU ticks of each thread of PID, by thread name, and the time.
cpu_ticks() {
  python3 - "$1" << 'EOF'
import os, sys, time
pid = sys.argv[1]
print("T", time.time())
for t in os.listdir(f"/proc/{pid}/task"):
    try:
        st = open(f"/proc/{pid}/task/{t}/stat").read()
    except OSError:
        continue
    name = st[st.index("(") + 1:st.rindex(")")].replace(" ", "_")
    f = st[st.rindex(")") + 2:].split()
    print(name, int(f[11]) + int(f[12]))
EOF
}

# PostgreSQL, cluster-wide so far: "WAL_FSYNCS WAL_FSYNC_MS CHECKPOINTS" (the
# fsync time is 0 unless track_wal_io_timing is on).
pg_counters() {
  psql "$PGBASE" -Atc "SELECT w.wal_sync, w.wal_sync_time, b.checkpoints_timed + b.checkpoints_req
    FROM pg_stat_wal w, pg_stat_bgwriter b" | tr '|' ' '
}

run_one() { # LABEL BINARY
  local label=$1 bin=$2 port url key one s dir
  local -a database=()
  dir="$WORK/$label"
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ "$BACKEND" = postgres ]; then
    DB="consentgate_batches_$$_${label//-/_}"
    psql "$PGBASE" -qc "CREATE DATABASE $DB"
    database=(DATABASE_URL="${PGBASE%/*}/$DB" CONSENTGATE_MASTER_KEY="$("$bin" master-key generate)"
      CONSENTGATE_SIGNING_KEY="$("$bin" signing-key generate)")
  fi
  env -u DATABASE_URL -u CONSENTGATE_MASTER_KEY -u CONSENTGATE_SIGNING_KEY "${database[@]}" \
    CONSENTGATE_DATA_DIR="$dir/data" CONSENTGATE_BIND="127.0.0.1:$port" \
    CONSENTGATE_LOG="info,consentgate::writer=debug" CONSENTGATE_LOG_FORMAT=json \
    CONSENTGATE_RATE_LIMIT_KEY_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_KEY_BURST=10000000 \
    CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_ADDRESS_BURST=10000000 \
    CONSENTGATE_OPERATOR_TOKEN="$OPERATOR" \
    "$bin" serve > "$LOGS/$label.log" 2>&1 &
  SERVER=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$url/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
  key=""
  for _ in $(seq "$BUSINESSES"); do
    read -r _ one < <(target/release/examples/bench_seed "$url" "$OPERATOR" 0)
    key="${key:+$key,}$one"
  done
  target/release/examples/write_load "$url" "$key" 12000 20 64 9 > /dev/null
  cpu_ticks "$SERVER" > "$dir/cpu0"
  : > "$dir/slices"
  for s in $(seq "$SLICES"); do
    local from to out pg_from="- - -" pg_to="- - -"
    if [ "$BACKEND" = postgres ]; then pg_from=$(pg_counters); fi
    from=$(python3 -c 'import time; print(time.time())')
    out=$(target/release/examples/write_load "$url" "$key" "$RATE" 10 64 "$s" | grep RESULT)
    to=$(python3 -c 'import time; print(time.time())')
    if [ "$BACKEND" = postgres ]; then pg_to=$(pg_counters); fi
    echo "$from $to $pg_from $pg_to $out" >> "$dir/slices"
    sleep 1
  done
  cpu_ticks "$SERVER" > "$dir/cpu1"
  sleep 0.3 # the log's writer thread catches up
  kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null || true
  SERVER=""
  drop_database
  python3 - "$label" "$dir" "$LOGS/$label.log" << 'EOF'
import datetime, json, re, sys
label, d, log = sys.argv[1:]
slices = []
pg = []
for line in open(f"{d}/slices"):
    a, b, s0, t0, c0, s1, t1, c1, rest = line.split(" ", 8)
    m = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    slices.append((float(a), float(b), m))
    pg.append(None if s0 == "-" else (int(s1) - int(s0), float(t1) - float(t0), int(c1) - int(c0)))
batches = [[] for _ in slices]
own = [[] for _ in slices]
for line in open(log):
    if not line.startswith("{"):
        continue
    j = json.loads(line)
    f = j.get("fields", {})
    t = datetime.datetime.fromisoformat(j["timestamp"].replace("Z", "+00:00")).timestamp()
    for k, (a, b, _) in enumerate(slices):
        if a <= t <= b:
            if f.get("message") == "a write batch committed":
                batches[k].append(f)
            elif f.get("message") == "request answered" and f.get("route") == "/v1/opt-ins":
                own[k].append(int(f["latency_us"]) / 1000)
def pct(values, p):
    values = sorted(values)
    return values[int((len(values) - 1) * p)] if values else float("nan")
for k, (_, _, m) in enumerate(slices):
    commit = [int(f["commit_us"]) / 1000 for f in batches[k]]
    waited = [int(f["waited_us"]) / 1000 for f in batches[k]]
    writes = [int(f["writes"]) for f in batches[k]]
    print(f"  {label} slice {k + 1}: {float(m['rate']):,.0f}/s, client p50 {float(m['p50_ms']):.1f} / p99 {float(m['p99_ms']):.1f} ms, "
          f"server's own p99 {pct(own[k], .99):.1f} ms; {len(commit)} batches of {pct(writes, .5)} writes (p50), "
          f"commit p50 {pct(commit, .5):.2f} / p99 {pct(commit, .99):.2f} / max {pct(commit, 1):.1f} ms, oldest write's wait p50 {pct(waited, .5):.2f} / p99 {pct(waited, .99):.2f} ms")
    if pg[k]:
        syncs, sync_ms, checkpoints = pg[k]
        mean = f", mean {sync_ms / syncs:.2f} ms" if syncs and sync_ms else ""
        print(f"    PostgreSQL meanwhile (cluster-wide): {syncs} WAL fsyncs{mean}; {checkpoints} checkpoints started")
def ticks(path):
    out, t = {}, 0.0
    for line in open(path):
        name, value = line.split()
        if name == "T":
            t = float(value)
        else:
            out[name] = out.get(name, 0) + int(value)
    return t, out
t0, a = ticks(f"{d}/cpu0")
t1, b = ticks(f"{d}/cpu1")
cores = {n: (v - a.get(n, 0)) / 100 / (t1 - t0) for n, v in b.items()}
writer = sum(v for n, v in cores.items() if n.startswith("consentgate-wri"))
wal = sum(v for n, v in cores.items() if n.startswith("consentgate-wal"))
print(f"  {label}: CPU over the slices, writer thread(s) {writer:.3f} cores, WAL checkpoint thread {wal:.3f} cores")
EOF
}

OPERATOR="bench-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
for p in $(seq "$PAIRS"); do
  [ -n "$BASE" ] && run_one "base-$p" "$BASE"
  run_one "this-$p" "$BIN"
done
