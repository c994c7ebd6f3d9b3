#!/usr/bin/env bash
# Compares two `mmcheck suite --json` outputs minus what a run measures rather than decides
# (elapsed_ms, memory_bytes_peak): a reshaping of the model must leave every verdict, state
# count, trace and replay token as it was (issue #14's acceptance).
#   bash bench/suite-diff.sh BEFORE.json AFTER.json     (exit 0: the same; 1: the differences)
# A change of a frame's layout moves the bounded passes' sample points (Model::sample_key hashes
# the top frame), and with them the counts of runs without choices; compare two
# `mmcheck suite --json --store-every-state` outputs then, whose counts depend on the states alone.
set -euo pipefail
strip='map(del(.elapsed_ms, .memory_bytes_peak))'
if diff <(jq -S "$strip" "$1") <(jq -S "$strip" "$2") > /tmp/suite-diff.$$; then
    echo "suite: the same $(jq length "$1") rows (verdicts, states, transitions, traces, replay tokens)"
    rm -f /tmp/suite-diff.$$
else
    echo "suite: the rows differ:"
    head -200 /tmp/suite-diff.$$
    rm -f /tmp/suite-diff.$$
    exit 1
fi
