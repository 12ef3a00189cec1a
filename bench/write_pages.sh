#!/usr/bin/env bash
# What a SQLite commit of opt-ins writes, b-tree by b-tree (issue 11: the write
# volume behind the p99 at half rate).
#
#   bash bench/write_pages.sh [rate] [seconds] [businesses]
#
# Starts the release service on a fresh SQLite database, records opt-ins at a fixed
# rate (examples/write_load.rs, open loop, 64 connections; default 5,000/s for 8 s,
# one business), and meanwhile copies the WAL a few times. Each copy holds the
# commits since the WAL last restarted; bench/wal_pages.py reads their frames (one
# page image each) and names each page's b-tree from the `dbstat` table. Prints, per
# copy, the pages and bytes per commit by b-tree, and the bytes the server process
# wrote to disk per opt-in (`/proc/PID/io`, WAL and database).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-5000}"
SECONDS_PER_RUN="${2:-8}"
BUSINESSES="${3:-1}"

cargo build --release --quiet --bin consentgate --example bench_seed --example write_load
BIN="${BIN:-target/release/consentgate}"
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export CONSENTGATE_DATA_DIR="$WORK/data" CONSENTGATE_BIND="127.0.0.1:$port" CONSENTGATE_LOG=warn
export CONSENTGATE_RATE_LIMIT_KEY_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_KEY_BURST=10000000
export CONSENTGATE_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CONSENTGATE_RATE_LIMIT_ADDRESS_BURST=10000000
export CONSENTGATE_OPERATOR_TOKEN="bench-operator-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
unset DATABASE_URL CONSENTGATE_MASTER_KEY CONSENTGATE_SIGNING_KEY
"$BIN" serve > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
URL="http://127.0.0.1:$port"
keys=""
for _ in $(seq "$BUSINESSES"); do
  read -r _ key < <(target/release/examples/bench_seed "$URL" "$CONSENTGATE_OPERATOR_TOKEN" 0)
  keys="${keys:+$keys,}$key"
done
DB=$(ls "$WORK"/data/*.db)
# Warm up: the trees get a few levels before the copies are taken.
target/release/examples/write_load "$URL" "$keys" "$RATE" 3 64 7 > /dev/null
before=$(sed -n 's/^write_bytes: //p' "/proc/$SERVER/io")
target/release/examples/write_load "$URL" "$keys" "$RATE" "$SECONDS_PER_RUN" 64 8 > "$WORK/load.txt" &
LOAD=$!
for i in 1 2 3; do
  sleep "$(python3 -c "print($SECONDS_PER_RUN / 4)")"
  cp "$DB-wal" "$WORK/copy$i.wal"
done
wait "$LOAD"
after=$(sed -n 's/^write_bytes: //p' "/proc/$SERVER/io")
sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$WORK/load.txt")
echo "load: $(grep RESULT "$WORK/load.txt")"
echo "server wrote $(( (after - before) / sent )) bytes per opt-in ($(( (after - before) / 1000000 )) MB for $sent opt-ins)"
kill "$SERVER" && wait "$SERVER" 2> /dev/null || true
SERVER=""
for i in 1 2 3; do
  echo "WAL copy $i:"
  python3 bench/wal_pages.py "$DB" "$WORK/copy$i.wal"
done
