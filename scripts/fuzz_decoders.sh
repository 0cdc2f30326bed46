#!/usr/bin/env bash
# Runs the decoder property tests (wire frames, commitment strings, datasets, the chain's
# commitment `Data`) for a long time, by hand: rounds of PROPTEST_CASES cases per property, each
# round with fresh random inputs, until MINUTES have passed. Stops at the first failure; proptest
# then prints the minimal failing input and saves it under */proptest-regressions/.
#
#   scripts/fuzz_decoders.sh                 # 10 minutes, 20,000 cases per property per round
#   MINUTES=60 PROPTEST_CASES=100000 PROFILE=release scripts/fuzz_decoders.sh
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${MINUTES:-10}
export PROPTEST_CASES=${PROPTEST_CASES:-20000}
tests=(--profile "${PROFILE:-dev}" -p murmuration-protocol -p murmuration-subtensor
    --test decoders --test commitment_data_decoders)
cargo test "${tests[@]}" --no-run
start=$(date +%s)
end=$((start + minutes * 60))
round=0
while [ "$(date +%s)" -lt "$end" ]; do
    round=$((round + 1))
    if ! cargo test -q "${tests[@]}" >"${TMPDIR:-/tmp}/fuzz_decoders.log" 2>&1; then
        cat "${TMPDIR:-/tmp}/fuzz_decoders.log"
        echo "round $round FAILED after $(( $(date +%s) - start )) s"
        exit 1
    fi
    echo "round $round passed ($PROPTEST_CASES cases per property), $(( $(date +%s) - start )) s"
done
echo "$round rounds of $PROPTEST_CASES cases per property, 15 properties, 0 failures in $(( $(date +%s) - start )) s"
