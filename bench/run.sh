#!/usr/bin/env bash
# Benchmark mmcheck on the madv-free-dio-anchor scenario (the anchor's shape: reclaim starts once
# the buffer is lazyfree, as the anchor's pages start out lazyfree, and the buffer is read back
# once the read and reclaim are both done, as the anchor's user_reads_after_io waits for both)
# against the SPIN anchor model (shared/anchors/madv_free_dio.pml) and write docs/PERFORMANCE.md.
# The harder variants of the same race (madv-free-dio-window: the read-back and the exit race
# reclaim too; madv-free-dio: reclaim also races the setup) are measured at a few sizes.
#
# Usage: bash bench/run.sh            full run (about 20 minutes on 2 cores)
#        BENCH_QUICK=1 bash bench/run.sh   smoke test: pages 1 2 4 only
#
# Environment (all optional):
#   BENCH_SECONDS    per-run time limit for mmcheck (--max-seconds), default 120
#   BENCH_MEMORY_MB  per-run memory limit for mmcheck (--max-memory-mb), default 8192
#   BENCH_STATES     per-run state limit for mmcheck (--max-states), default 1000000000
#   SPIN_SECONDS     per-run time limit for pan (SIGINT, then SIGKILL 30 s later), default 600
#   SPIN_MEMLIM_MB   pan's -DMEMLIM in MiB, default 18432, lowered to MemAvailable - 4 GiB
#   SPIN_DEPTH       pan's -m (DFS stack depth), default 10000 (pan's own default; the
#                    search is about 320 deep)
#   BENCH_SCENARIO   the mmcheck scenario, default madv-free-dio-anchor
#   VARIANT_SCENARIOS, VARIANT_PAGES   the harder variants measured exhaustively on 6.18,
#                    default "madv-free-dio-window madv-free-dio" at "4 8"
#   SPIN_HASH        pan's -w (log2 hash table slots), default 27
#   SPIN_MODEL       the anchor model, default ../shared/anchors/madv_free_dio.pml
#   BENCH_OUT        directory for raw logs, default a fresh mktemp -d
#   BENCH_REPORT     report path, default docs/PERFORMANCE.md
#   BENCH_PAGES, BENCH_BOUNDED_PAGES   override the page lists (for experiments)
#
# A failed, killed or timed-out run becomes a row saying so; the script never aborts on one.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

BENCH_SECONDS="${BENCH_SECONDS:-120}"
BENCH_MEMORY_MB="${BENCH_MEMORY_MB:-8192}"
# high enough that time and memory, not the default 50 M states, end the large runs
BENCH_STATES="${BENCH_STATES:-1000000000}"
SPIN_SECONDS="${SPIN_SECONDS:-600}"
SPIN_MEMLIM_MB="${SPIN_MEMLIM_MB:-18432}"
SPIN_DEPTH="${SPIN_DEPTH:-10000}"
BENCH_SCENARIO="${BENCH_SCENARIO:-madv-free-dio-anchor}"
export BENCH_SCENARIO
VARIANT_SCENARIOS="${VARIANT_SCENARIOS:-madv-free-dio-window madv-free-dio}"
VARIANT_PAGES="${VARIANT_PAGES:-4 8}"
SPIN_HASH="${SPIN_HASH:-27}"
SPIN_MODEL="${SPIN_MODEL:-$ROOT/../shared/anchors/madv_free_dio.pml}"
BENCH_QUICK="${BENCH_QUICK:-0}"
BENCH_REPORT="${BENCH_REPORT:-$ROOT/docs/PERFORMANCE.md}"
export BENCH_REPORT
OUT="${BENCH_OUT:-$(mktemp -d /tmp/mmcheck-bench.XXXXXX)}"
mkdir -p "$OUT/runs" || exit 2
RUNS="$OUT/runs.tsv"
: > "$RUNS"
META="$OUT/meta.env"
: > "$META"

if [ "$BENCH_QUICK" = "1" ]; then
    PAGES="1 2 4"
    BOUNDED_PAGES="1 2 4"
else
    PAGES="1 2 4 8 16"
    BOUNDED_PAGES="8 16 32 64"
fi
# for experiments: override the page lists (SPIN still only runs up to 8 pages)
PAGES="${BENCH_PAGES:-$PAGES}"
BOUNDED_PAGES="${BENCH_BOUNDED_PAGES:-$BOUNDED_PAGES}"
SPIN_MAX_PAGES=8

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
meta() { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | tr '\n\t' '  ')" >> "$META"; }
now() { date +%s.%N; }

log "raw results in $OUT"
meta OUT "$OUT"
meta QUICK "$BENCH_QUICK"
meta BENCH_SECONDS "$BENCH_SECONDS"
meta BENCH_MEMORY_MB "$BENCH_MEMORY_MB"
meta BENCH_STATES "$BENCH_STATES"
meta SPIN_SECONDS "$SPIN_SECONDS"
meta SPIN_DEPTH "$SPIN_DEPTH"
meta SPIN_HASH "$SPIN_HASH"
meta DATE "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
meta KERNEL "$(uname -r)"
meta CPU "$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*:[[:space:]]*//')"
meta NPROC "$(nproc)"
meta MEMTOTAL_KB "$(awk '/^MemTotal/ {print $2}' /proc/meminfo)"
meta LOAD_START "$(cut -d' ' -f1-3 /proc/loadavg)"
meta GIT_COMMIT "$(git rev-parse HEAD 2>/dev/null || echo unknown)"
meta GIT_DIRTY "$(git status --porcelain 2>/dev/null | grep -c . )"
meta RUSTC "$(rustc --version 2>/dev/null || echo unknown)"

# ---------------------------------------------------------------- tools
if [ ! -x /usr/bin/time ]; then
    log "installing GNU time"
    { apt-get update -qq && apt-get install -y -qq time; } > "$OUT/apt-time.log" 2>&1
fi
if [ -x /usr/bin/time ]; then TIMEV=(/usr/bin/time -v -o); else TIMEV=(); fi

if ! command -v spin > /dev/null 2>&1; then
    log "installing spin"
    { apt-get update -qq && apt-get install -y -qq spin; } > "$OUT/apt-spin.log" 2>&1
fi
SPIN_OK=1
SPIN_PROBLEM=""
if ! command -v spin > /dev/null 2>&1; then
    SPIN_OK=0; SPIN_PROBLEM="spin is not installed (apt-get install spin failed, see $OUT/apt-spin.log)"
elif ! command -v gcc > /dev/null 2>&1; then
    SPIN_OK=0; SPIN_PROBLEM="gcc is not installed"
elif [ ! -r "$SPIN_MODEL" ]; then
    SPIN_OK=0; SPIN_PROBLEM="anchor model not found at $SPIN_MODEL"
fi
meta SPIN_OK "$SPIN_OK"
meta SPIN_PROBLEM "$SPIN_PROBLEM"
meta SPIN_VERSION "$(spin -V 2>/dev/null | head -1)"
meta GCC_VERSION "$(gcc --version 2>/dev/null | head -1)"
meta SPIN_MODEL "$SPIN_MODEL"

# pan's memory bound: the configured value, but never more than what is available less 4 GiB
avail_mb=$(( $(awk '/^MemAvailable/ {print $2}' /proc/meminfo) / 1024 ))
if [ $(( avail_mb - 4096 )) -lt "$SPIN_MEMLIM_MB" ]; then
    SPIN_MEMLIM_MB=$(( avail_mb - 4096 ))
    [ "$SPIN_MEMLIM_MB" -lt 1024 ] && SPIN_MEMLIM_MB=1024
fi
meta SPIN_MEMLIM_MB "$SPIN_MEMLIM_MB"

# ---------------------------------------------------------------- build
log "cargo build --release"
t0=$(now)
cargo build --release > "$OUT/build.log" 2>&1
build_rc=$?
t1=$(now)
meta BUILD_RC "$build_rc"
meta BUILD_SECONDS "$(python3 -c "print(round($t1 - $t0, 2))")"
MMCHECK="$OUT/mmcheck"
MM_OK=1
if [ -x "$ROOT/target/release/mmcheck" ]; then
    # Run a private copy: another engineer may rebuild target/release while we measure.
    cp "$ROOT/target/release/mmcheck" "$MMCHECK"
    meta MMCHECK_SHA256 "$(sha256sum "$MMCHECK" | cut -d' ' -f1)"
    meta MMCHECK_MTIME "$(date -u -r "$ROOT/target/release/mmcheck" '+%Y-%m-%d %H:%M:%S UTC')"
else
    MM_OK=0
fi
if [ "$build_rc" -ne 0 ]; then
    log "cargo build failed (rc $build_rc), see $OUT/build.log"
fi
meta MM_OK "$MM_OK"

# ---------------------------------------------------------------- runners
# run_mm ID PAGES KERNEL [extra mmcheck args...]
run_mm() {
    local id="$1" pages="$2" kernel="$3"
    shift 3
    local dir="$OUT/runs/$id"
    mkdir -p "$dir"
    printf '%s\tmmcheck\t%s\t%s\t%s\n' "$id" "$pages" "$kernel" "$*" >> "$RUNS"
    if [ "$MM_OK" -ne 1 ]; then
        echo "no mmcheck binary (cargo build --release failed)" > "$dir/error"
        log "$id: skipped, no binary"
        return 0
    fi
    local cmd=("$MMCHECK" check "${RUN_SCENARIO:-$BENCH_SCENARIO}" --kernel "$kernel" --set "pages=$pages" --json
               --max-seconds "$BENCH_SECONDS" --max-memory-mb "$BENCH_MEMORY_MB"
               --max-states "$BENCH_STATES" "$@")
    printf '%q ' "${cmd[@]}" > "$dir/cmd"
    local t0 t1 rc
    t0=$(now)
    # the outer timeout only catches a run that ignores its own --max-seconds
    "${TIMEV[@]}" ${TIMEV:+"$dir/time.txt"} \
        timeout -k 10 $(( ${BENCH_SECONDS%.*} + 60 )) "${cmd[@]}" \
        > "$dir/stdout.json" 2> "$dir/stderr.txt" < /dev/null
    rc=$?
    t1=$(now)
    echo "$rc" > "$dir/rc"
    echo "$t0 $t1" > "$dir/wall"
    log "$id: rc $rc, $(python3 - "$dir/stdout.json" <<'EOF' 2>/dev/null || echo "no JSON"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d.get('verdict')} states {d.get('states')} elapsed {d.get('elapsed_ms')} ms")
EOF
)"
    return 0
}

# run_spin ID PAGES FIXED
run_spin() {
    local id="$1" n="$2" fixed="$3"
    local dir="$OUT/runs/$id"
    mkdir -p "$dir"
    printf '%s\tspin\t%s\tFIXED=%s\t\n' "$id" "$n" "$fixed" >> "$RUNS"
    if [ "$SPIN_OK" -ne 1 ]; then
        echo "$SPIN_PROBLEM" > "$dir/error"
        log "$id: skipped, $SPIN_PROBLEM"
        return 0
    fi
    local work
    work=$(mktemp -d /tmp/mmcheck-bench-spin.XXXXXX)
    cp "$SPIN_MODEL" "$work/madv_free_dio.pml"
    local t0 t1 t2 rc
    t0=$(now)
    ( cd "$work" && spin "-DN=$n" "-DFIXED=$fixed" -a madv_free_dio.pml ) > "$dir/spin.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        ( cd "$work" && gcc -O2 -DSAFETY "-DMEMLIM=$SPIN_MEMLIM_MB" -o pan pan.c ) > "$dir/gcc.log" 2>&1
        rc=$?
        [ "$rc" -ne 0 ] && echo "gcc failed (rc $rc)" > "$dir/error"
    else
        echo "spin -a failed (rc $rc)" > "$dir/error"
    fi
    t1=$(now)
    echo "$t0 $t1" > "$dir/build_wall"
    if [ "$rc" -eq 0 ]; then
        echo "spin -DN=$n -DFIXED=$fixed -a madv_free_dio.pml && gcc -O2 -DSAFETY -DMEMLIM=$SPIN_MEMLIM_MB -o pan pan.c && ./pan -m$SPIN_DEPTH -w$SPIN_HASH" > "$dir/cmd"
        t1=$(now)
        # SIGINT makes pan print its statistics ("Interrupted"); SIGKILL 30 s later if it hangs
        ( cd "$work" && "${TIMEV[@]}" ${TIMEV:+"$dir/time.txt"} \
            timeout -s INT -k 30 "$SPIN_SECONDS" ./pan "-m$SPIN_DEPTH" "-w$SPIN_HASH" ) \
            > "$dir/pan.full" 2> "$dir/stderr.txt" < /dev/null
        rc=$?
        t2=$(now)
        echo "$t1 $t2" > "$dir/wall"
        # keep the progress lines out of the log, except the last one
        grep '^Depth=' "$dir/pan.full" | tail -1 > "$dir/pan.progress"
        grep -v '^Depth=' "$dir/pan.full" > "$dir/pan.out"
        rm -f "$dir/pan.full"
    fi
    echo "$rc" > "$dir/rc"
    rm -rf "$work"
    log "$id: rc $rc, $(grep -E 'states, stored|elapsed time|out of memory|MEMLIM bound|assertion violated' "$dir/pan.out" 2>/dev/null | tr -s ' \t' ' ' | tr '\n' ';')"
    return 0
}

# ---------------------------------------------------------------- runs
for p in $PAGES; do
    run_mm "mm-verify-$p" "$p" 6.18
    run_mm "mm-violation-$p" "$p" 5.16
    if [ "$p" -le "$SPIN_MAX_PAGES" ]; then
        run_spin "spin-verify-$p" "$p" 1
        run_spin "spin-violation-$p" "$p" 0
    fi
done
for p in $BOUNDED_PAGES; do
    run_mm "mm-bounded-$p" "$p" 6.18 --preemption-bound 2
done
for p in $BOUNDED_PAGES; do
    run_mm "mm-violation-pb1-$p" "$p" 5.16 --preemption-bound 1
done

for scenario in $VARIANT_SCENARIOS; do
    for p in $VARIANT_PAGES; do
        RUN_SCENARIO="$scenario" run_mm "mm-variant-$scenario-$p" "$p" 6.18
    done
done

meta LOAD_END "$(cut -d' ' -f1-3 /proc/loadavg)"
meta VARIANT_SCENARIOS "$VARIANT_SCENARIOS"
meta VARIANT_PAGES "$VARIANT_PAGES"
meta PAGES "$PAGES"
meta BOUNDED_PAGES "$BOUNDED_PAGES"

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$BENCH_REPORT")"
if python3 "$ROOT/bench/report.py" "$OUT" > "$OUT/PERFORMANCE.md" 2> "$OUT/report.err"; then
    cp "$OUT/PERFORMANCE.md" "$BENCH_REPORT"
    log "wrote $BENCH_REPORT"
else
    log "report.py failed, see $OUT/report.err"
    cat "$OUT/report.err" >&2
    exit 1
fi
exit 0
