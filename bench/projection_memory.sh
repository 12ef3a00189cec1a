#!/usr/bin/env bash
# Memory of the hot path's projection with many subjects (issue 10: <= 64 bytes per
# subject). Imports N opted-in numbers (default 1,000,000) into a fresh embedded
# SQLite database with `consentgate import`, starts the release service on it and,
# side by side, the same binary on an empty database; once the service's
# projection holds every subject, prints:
#   - the projection's own heap bytes per subject (`consentgate_projection_bytes`
#     / `consentgate_projection_subjects` from /metrics: the index's allocations);
#   - resident memory of both processes and the difference per subject.
#
#   bash bench/projection_memory.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
cargo build --release --quiet --bin consentgate
BIN="$PWD/target/release/consentgate"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && echo "work dir: $WORK" >&2
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
export CONSENTGATE_LOG=warn

export CONSENTGATE_DATA_DIR="$WORK/full"
BUSINESS=$("$BIN" business create --name "Memory bench" --policy whatsapp-global |
  sed -n 's/^ *"id": "\([^"]*\)".*/\1/p' | head -1)
awk -v n="$N" 'BEGIN {
  print "phone,categories,channel,collected_at,consent_text_version,source_system,form_id,source_url";
  for (i = 0; i < n; i++)
    printf "+3161%07d,marketing;utility,web,2026-01-%02dT10:00:00Z,signup-v1,legacy-crm,f-1,https://shop.example/signup\n", i, (i % 28) + 1;
}' > "$WORK/legacy.csv"
echo "importing $N opt-ins" >&2
"$BIN" import --business "$BUSINESS" "$WORK/legacy.csv" < /dev/null > /dev/null 2>&1
rm "$WORK/legacy.csv"

PORT=$(free_port)
EMPTY_PORT=$(free_port)
while [ "$EMPTY_PORT" = "$PORT" ]; do EMPTY_PORT=$(free_port); done
CONSENTGATE_BIND="127.0.0.1:$PORT" "$BIN" serve > "$WORK/full.log" 2>&1 &
FULL=$!
PIDS+=("$FULL")
CONSENTGATE_DATA_DIR="$WORK/empty" CONSENTGATE_BIND="127.0.0.1:$EMPTY_PORT" "$BIN" serve > "$WORK/empty.log" 2>&1 &
EMPTY=$!
PIDS+=("$EMPTY")
gauge() { curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v g="$1" '$1 == g {print $2}'; }
for _ in $(seq 600); do
  [ "$(gauge consentgate_projection_subjects 2> /dev/null || echo 0)" = "$N" ] && break
  sleep 0.5
done
curl -fs "http://127.0.0.1:$EMPTY_PORT/readyz" > /dev/null
sleep 1
SUBJECTS=$(gauge consentgate_projection_subjects)
BYTES=$(gauge consentgate_projection_bytes)
FULL_RSS=$(rss_kib "$FULL")
EMPTY_RSS=$(rss_kib "$EMPTY")
python3 - "$N" "$SUBJECTS" "$BYTES" "$FULL_RSS" "$EMPTY_RSS" << 'EOF'
import sys
n, subjects, heap, full, empty = map(int, sys.argv[1:])
assert subjects == n, f"the projection holds {subjects} of {n} subjects"
print(f"subjects: {subjects:,}")
print(f"projection heap: {heap:,} bytes = {heap / subjects:.1f} bytes per subject")
print(f"RSS with {subjects:,} subjects: {full / 1024:.1f} MiB; empty database: {empty / 1024:.1f} MiB;"
      f" difference {(full - empty) * 1024 / subjects:.1f} bytes per subject")
EOF
