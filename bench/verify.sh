#!/usr/bin/env bash
# Audit verification benchmark: seed N events (default 1,000,000) in one chain,
# then time `consentgate audit verify` on it and report events/s and peak memory.
#   bash bench/verify.sh [N] [sqlite|postgres]
# PostgreSQL uses $BENCH_POSTGRES_URL (a database that is created and dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
BACKEND="${2:-sqlite}"
cargo build --release --quiet --bin consentgate --example seed_audit
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
export CONSENTGATE_DATA_DIR="$DIR" CONSENTGATE_LOG=warn CONSENTGATE_CHECKPOINT_EVERY_EVENTS=1000
if [ "$BACKEND" = postgres ]; then
  BASE="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  DB="consentgate_bench_$$"
  psql "$BASE" -qc "CREATE DATABASE $DB"
  trap 'psql "$BASE" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; rm -rf "$DIR"' EXIT
  export DATABASE_URL="${BASE%/*}/$DB"
  export CONSENTGATE_MASTER_KEY=$(target/release/consentgate master-key generate)
  export CONSENTGATE_SIGNING_KEY=$(target/release/consentgate signing-key generate)
fi
BUSINESS=$(target/release/examples/seed_audit "$N")
/usr/bin/time -f "%e s elapsed, %M KiB peak RSS" target/release/consentgate audit verify --business "$BUSINESS" 2> "$DIR/time.txt" > "$DIR/report.json"
cat "$DIR/report.json"
ELAPSED=$(cut -d' ' -f1 < "$DIR/time.txt")
echo "verify: $(cat "$DIR/time.txt"); $(python3 -c "print(f'{$N/$ELAPSED:,.0f}')") events/s ($BACKEND, $N events)"
