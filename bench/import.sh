#!/usr/bin/env bash
# Bulk import benchmark (issue 12): generate a CSV of N legacy opt-ins (default
# 1,000,000, every row valid, distinct numbers) and time
# `consentgate import` of it into a fresh embedded SQLite database, release build.
#
#   bash bench/import.sh [rows] [batch_size]
#
# Prints the import's own summary (JSON) and the wall-clock seconds; the target
# (SPEC 8, issue 12) is <= 60 s for 1,000,000 rows. Needs awk; installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
BATCH="${2:-2000}"

[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
BIN="${BIN:-$PWD/target/release/consentgate}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export CONSENTGATE_DATA_DIR="$WORK/data"
export CONSENTGATE_LOG=warn

BUSINESS=$("$BIN" business create --name "Import bench" --policy whatsapp-global \
  | sed -n 's/^ *"id": "\([^"]*\)".*/\1/p' | head -1)

CSV="$WORK/legacy.csv"
awk -v n="$ROWS" 'BEGIN {
  print "phone,categories,channel,collected_at,consent_text_version,source_system,form_id,source_url";
  for (i = 0; i < n; i++) {
    printf "+3161%07d,marketing;utility,web,2026-01-%02dT10:00:00Z,signup-v%d,legacy-crm,f-%d,https://shop.example/signup\n",
      i, (i % 28) + 1, i % 3, i % 50;
  }
}' > "$CSV"
echo "generated $ROWS rows ($(du -h "$CSV" | cut -f1)) in $CSV" >&2

START=$(date +%s.%N)
"$BIN" import --business "$BUSINESS" --batch-size "$BATCH" "$CSV" < /dev/null 2> "$WORK/progress.log"
END=$(date +%s.%N)
tail -n 3 "$WORK/progress.log" >&2
echo "database: $(du -h "$CONSENTGATE_DATA_DIR" | tail -1 | cut -f1)" >&2
awk -v s="$START" -v e="$END" -v n="$ROWS" \
  'BEGIN { printf "imported %d rows in %.1f s (%.0f rows/s)\n", n, e - s, n / (e - s) }'
