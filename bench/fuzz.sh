#!/usr/bin/env bash
# Property-based fuzzing of every parser a client or a file can reach (issue 9):
# runs each target of tests/fuzz.rs in release with PROPTEST_CASES cases
# (default 1,000,000) and prints the case count and the time per target.
#
#   bash bench/fuzz.sh [cases] [target...]
#
# Targets (test names in tests/fuzz.rs): fuzz_phone_parse fuzz_phone_recognise
# fuzz_evidence_parse fuzz_withdrawal_body fuzz_policy_file fuzz_keyword_forms
# fuzz_keyword_opt_out_disguised fuzz_audit_chain_verify fuzz_json_body_bytes
# fuzz_json_body_structured. A panic or a broken invariant fails the target
# (proptest shrinks it, prints the minimal input and keeps it in
# proptest's regressions file); the script exits non-zero if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${1:-1000000}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  # Cheapest first, so that a run cut short has the most targets done.
  TARGETS=(fuzz_phone_recognise fuzz_phone_parse fuzz_keyword_forms
    fuzz_keyword_opt_out_disguised fuzz_audit_chain_verify fuzz_json_body_bytes
    fuzz_json_body_structured fuzz_evidence_parse fuzz_withdrawal_body fuzz_policy_file)
fi

cargo test --release --quiet --test fuzz --no-run
printf '%-34s %12s %10s %s\n' target cases seconds result
failed=0
for target in "${TARGETS[@]}"; do
  log=$(mktemp)
  start=$(date +%s.%N)
  if PROPTEST_CASES="$CASES" cargo test --release --quiet --test fuzz -- --exact "$target" > "$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed=1
  fi
  end=$(date +%s.%N)
  printf '%-34s %12s %10.1f %s\n' "$target" "$CASES" "$(echo "$end - $start" | bc)" "$result"
  if [ "$result" = FAILED ]; then
    sed -n '1,60p' "$log" >&2
  fi
  grep -q "running 1 test" "$log" || { echo "  (no such target: $target)" >&2; failed=1; }
  rm -f "$log"
done
exit "$failed"
