#!/usr/bin/env bash
# The mutation fuzzer (crates/cli/tests/fuzz.rs) at a larger size than .ci/run's 10,000 inputs:
# mutated built-in scenarios and options for `check`, mutated replay tokens for `replay`. Fails
# on any panic, signal, exit code outside 0-2 or run past its --max-seconds; each failing input
# is saved under target/fuzz-findings/ with the command that reruns it.
#
# Usage: bash bench/fuzz.sh                 100,000 inputs from seed 1 (about 20 minutes on 2 cores)
#        FUZZ_INPUTS=N FUZZ_SEED=S bash bench/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MMCHECK_FUZZ_INPUTS="${FUZZ_INPUTS:-100000}" MMCHECK_FUZZ_SEED="${FUZZ_SEED:-1}" \
    cargo test --profile fuzz -p mmcheck --test fuzz -- --ignored --nocapture fuzz_inputs
