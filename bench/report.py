#!/usr/bin/env python3
"""Turn the raw results of bench/run.sh into docs/PERFORMANCE.md (printed on stdout).

Usage: python3 bench/report.py OUT_DIR > docs/PERFORMANCE.md

OUT_DIR holds meta.env (KEY<TAB>VALUE lines), runs.tsv (one line per run: id, tool, pages,
kernel or FIXED=x, extra arguments) and runs/<id>/ with each run's raw files. Every field may
be missing: a run that failed or was killed becomes a row that says so. Standard library only.
"""

import json
import os
import re
import sys

GIB = 1024**3
MIB = 1024**2

# The project's performance targets.
T_VERIFY8_SECONDS = 10.0
T_VERIFY8_GOAL_SECONDS = 1.0
T_VERIFY8_BYTES = GIB
T_VIOLATION_SECONDS = 1.0
T_VIOLATION_SIZES = [1, 2, 4, 8, 16, 32, 64]
T_BOUNDED_PAGES = 64
T_BOUNDED_SECONDS = 60.0


def read(path, default=None):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def load_meta(out):
    meta = {}
    for line in (read(os.path.join(out, "meta.env"), "") or "").splitlines():
        key, _, value = line.partition("\t")
        meta[key] = value
    return meta


def wall_seconds(path):
    text = read(path)
    if not text:
        return None
    try:
        t0, t1 = (float(x) for x in text.split())
        return t1 - t0
    except ValueError:
        return None


def max_rss_bytes(run_dir):
    text = read(os.path.join(run_dir, "time.txt"), "") or ""
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(m.group(1)) * 1024 if m else None


def exit_code(run_dir):
    text = read(os.path.join(run_dir, "rc"))
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def signal_text(rc):
    if rc is None:
        return "did not run"
    if rc == 124:
        return "killed by the outer timeout"
    if rc == 137:
        return "killed (SIGKILL: timeout grace expired or the OOM killer)"
    if rc > 128:
        return f"killed by signal {rc - 128}"
    return f"exit code {rc}"


class Run:
    """One measured run, mmcheck or pan, normalised for the tables."""

    def __init__(self, rid, tool, pages, variant, extra):
        self.id = rid
        self.tool = tool
        self.pages = pages
        self.variant = variant
        self.extra = extra
        self.status = "not run"
        self.complete = False  # finished its question: verified, or found the violation
        self.verdict = None
        self.detail = ""
        self.wall = None  # seconds, the whole process (pan: run only, build separate)
        self.search = None  # seconds, the tool's own search time
        self.search_upper = False  # search time is an upper bound (pan's 10 ms clock read 0)
        self.build = None  # seconds, spin -a + gcc
        self.states = None
        self.states_stored = None  # mmcheck: states in the visited set
        self.transitions = None
        self.rss = None  # bytes
        self.mem_reported = None  # bytes: mmcheck memory_bytes_peak, pan total actual memory
        self.mem_states = None  # bytes: pan memory for states
        self.errors = None


def parse_mm(out, rid, pages, kernel, extra):
    run = Run(rid, "mmcheck", pages, kernel, extra)
    d = os.path.join(out, "runs", rid)
    err = read(os.path.join(d, "error"))
    if err:
        run.status = "not run: " + err.strip()
        return run
    run.wall = wall_seconds(os.path.join(d, "wall"))
    run.rss = max_rss_bytes(d)
    rc = exit_code(d)
    try:
        data = json.loads(read(os.path.join(d, "stdout.json"), "") or "")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        stderr = (read(os.path.join(d, "stderr.txt"), "") or "").strip().splitlines()
        last = stderr[-1][:160] if stderr else "no output"
        run.status = f"FAILED ({signal_text(rc)}): {last}"
        return run
    run.verdict = data.get("verdict")
    run.detail = data.get("verdict_detail") or ""
    run.states = data.get("states")
    run.states_stored = data.get("states_stored")
    run.transitions = data.get("transitions")
    if data.get("elapsed_ms") is not None:
        run.search = data["elapsed_ms"] / 1000.0
    run.mem_reported = data.get("memory_bytes_peak")
    run.status = run.verdict or "no verdict"
    if run.verdict == "limit-reached":
        m = re.search(r"\((\w+)\)", run.detail)
        run.status = f"limit reached ({m.group(1) if m else '?'}), incomplete"
    run.complete = run.verdict in ("verified", "verified-bounded", "violation")
    return run


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def parse_spin(out, rid, pages, fixed):
    run = Run(rid, "spin", pages, fixed, "")
    d = os.path.join(out, "runs", rid)
    err = read(os.path.join(d, "error"))
    run.build = wall_seconds(os.path.join(d, "build_wall"))
    if err:
        run.status = "not run: " + err.strip()
        return run
    run.wall = wall_seconds(os.path.join(d, "wall"))
    run.rss = max_rss_bytes(d)
    rc = exit_code(d)
    text = read(os.path.join(d, "pan.out"), "") or ""

    def grab(pattern):
        m = re.search(pattern, text, re.M)
        return number(m.group(1)) if m else None

    run.states = grab(r"^\s*([0-9.e+]+) states, stored")
    run.transitions = grab(r"^\s*([0-9.e+]+) transitions \(= stored\+matched\)")
    run.search = grab(r"pan: elapsed time ([0-9.e+]+) seconds")
    if run.search is not None and run.search == 0:
        run.search, run.search_upper = 0.01, True
    total = grab(r"^\s*([0-9.]+)\s+total actual memory usage")
    run.mem_reported = total * MIB if total is not None else None
    for_states = grab(r"^\s*([0-9.]+)\s+actual memory usage for states")
    run.mem_states = for_states * MIB if for_states is not None else None
    errors = grab(r"errors: (\d+)")
    run.errors = int(errors) if errors is not None else None
    oom = "reached -DMEMLIM bound" in text or "out of memory" in text
    interrupted = "Interrupted" in text or rc == 124
    violated = "assertion violated" in text
    if fixed == "FIXED=1":
        if violated:
            run.status, run.complete = "VIOLATION (unexpected)", True
        elif oom:
            run.status = "out of memory"
        elif interrupted:
            run.status = "timeout"
        elif run.errors == 0 and "Search not completed" not in text and run.states is not None:
            run.status, run.complete = "verified", True
        else:
            run.status = f"FAILED ({signal_text(rc)})"
    else:
        if violated:
            run.status, run.complete = "violation", True
        elif oom:
            run.status = "out of memory, no violation found"
        elif interrupted:
            run.status = "timeout, no violation found"
        elif run.errors == 0 and run.states is not None:
            run.status = "no violation (unexpected)"
        else:
            run.status = f"FAILED ({signal_text(rc)})"
    if oom or interrupted:
        run.status += f" after {fmt_count(run.states)} states" if run.states else ""
    return run


# ---------------------------------------------------------------- formatting
def fmt_time(s, upper=False):
    if s is None:
        return "–"
    prefix = "≤ " if upper else ""
    if s < 0.01:
        return f"{prefix}{s * 1000:.1f} ms"
    if s < 10:
        return f"{prefix}{s:.2f} s"
    return f"{prefix}{s:.1f} s"


def fmt_count(n):
    if n is None:
        return "–"
    return f"{int(round(n)):,}"


def fmt_bytes(b):
    if b is None:
        return "–"
    if b >= GIB:
        return f"{b / GIB:.2f} GiB"
    if b >= MIB:
        return f"{b / MIB:.1f} MiB"
    return f"{b / 1024:.0f} KiB"


def fmt_ratio(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def ratio(spin_value, spin_complete, spin_upper, mm_value, mm_complete):
    """SPIN / mmcheck, with the direction of the bound when a side did not finish.

    An incomplete run's time is a lower bound on the time it needs; a pan time that its
    10 ms clock read as 0 is an upper bound."""
    if spin_value is None or mm_value is None:
        return "n/a"
    if not spin_complete and not mm_complete:
        return "n/a (neither finished)"
    if mm_value <= 0:
        mm_value = 0.0005
    r = spin_value / mm_value
    spin_dir = ">" if not spin_complete else ("≤" if spin_upper else "=")
    mm_dir = "<" if not mm_complete else "="  # mmcheck needs more: the ratio is smaller
    if spin_dir == "=" and mm_dir == "=":
        return fmt_ratio(r)
    if spin_dir in ("=", ">") and mm_dir == "=":
        return ("> " if spin_dir == ">" else "") + fmt_ratio(r)
    if spin_dir in ("=", "≤") and mm_dir == "<":
        return "< " + fmt_ratio(r)
    if spin_dir == "≤" and mm_dir == "=":
        return "≤ " + fmt_ratio(r)
    return "n/a"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def mm_cells(run):
    if run is None:
        return ["not run", "–", "–", "–", "–", "–"]
    return [
        run.status,
        fmt_time(run.wall),
        fmt_time(run.search),
        fmt_count(run.states),
        fmt_count(run.transitions),
        fmt_bytes(run.rss),
    ]


def spin_cells(run, pages):
    if run is None:
        reason = "not run (pages > 8: out of SPIN's reach)" if pages > 8 else "not run"
        return [reason, "–", "–", "–", "–", "–", "–"]
    end_to_end = (run.build or 0) + run.wall if run.wall is not None else None
    mem = "–"
    if run.mem_reported is not None:
        mem = fmt_bytes(run.mem_reported)
        if run.mem_states is not None:
            mem += f" (states {fmt_bytes(run.mem_states)})"
    return [
        run.status,
        fmt_time(run.search, run.search_upper),
        fmt_time(end_to_end) + (f" (build {fmt_time(run.build)})" if run.build is not None and end_to_end is not None else ""),
        fmt_count(run.states),
        fmt_count(run.transitions),
        mem,
        fmt_bytes(run.rss),
    ]


def ratio_cells(spin, mm):
    if spin is None or mm is None or spin.wall is None or mm.wall is None:
        return ["n/a", "n/a", "n/a", "n/a"]
    search = ratio(spin.search, spin.complete, spin.search_upper, mm.search, mm.complete)
    wall = ratio((spin.build or 0) + spin.wall, spin.complete, False, mm.wall, mm.complete)
    # search time per stored state: defined even when neither side finished
    per_state = "n/a"
    if spin.search and spin.states and mm.search and mm.states:
        r = (spin.search / spin.states) / (mm.search / mm.states)
        per_state = ("≤ " if spin.search_upper else "") + fmt_ratio(r)
    rss = fmt_ratio(spin.rss / mm.rss) if spin.rss and mm.rss else "n/a"
    return [search, wall, per_state, rss]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py OUT_DIR")
    out = sys.argv[1]
    meta = load_meta(out)
    runs = {}
    for line in (read(os.path.join(out, "runs.tsv"), "") or "").splitlines():
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        rid, tool, pages, variant = parts[:4]
        extra = parts[4] if len(parts) > 4 else ""
        pages = int(pages)
        if tool == "mmcheck":
            runs[rid] = parse_mm(out, rid, pages, variant, extra)
        else:
            runs[rid] = parse_spin(out, rid, pages, variant)

    pages_main = [int(p) for p in meta.get("PAGES", "").split()]
    pages_bounded = [int(p) for p in meta.get("BOUNDED_PAGES", "").split()]
    quick = meta.get("QUICK") == "1"
    limit = meta.get("BENCH_SECONDS", "?")

    o = []
    o.append(f"# mmcheck performance: {os.environ.get('BENCH_SCENARIO', 'madv-free-dio-anchor')} against the SPIN anchor")
    o.append("")
    o.append(
        f"> **Generated** by `bench/run.sh` on {meta.get('DATE', '?')}; do not edit by hand, "
        "re-run the script instead."
        + (" **Smoke run (`BENCH_QUICK=1`): pages 1 2 4 only.**" if quick else "")
    )
    o.append("")
    dirty = meta.get("GIT_DIRTY", "0")
    o.append(f"- Kernel (`uname -r`): `{meta.get('KERNEL', '?')}`")
    o.append(
        f"- CPU: {meta.get('CPU', '?')} ({meta.get('NPROC', '?')} cores), "
        f"{fmt_bytes(int(meta.get('MEMTOTAL_KB', '0') or 0) * 1024)} RAM"
    )
    commit_line = f"- Git commit: `{meta.get('GIT_COMMIT', '?')}`"
    if dirty not in ("", "0"):
        commit_line += (
            f" (working tree had {dirty} uncommitted path(s) at build time: the binary measured "
            "is the working tree's)"
        )
    o.append(commit_line)
    build = f"exit code {meta.get('BUILD_RC', '?')}, {meta.get('BUILD_SECONDS', '?')} s"
    if meta.get("MM_OK") != "1":
        build += "; no binary, every mmcheck row is missing"
    elif meta.get("BUILD_RC") not in ("0", None):
        build += f"; **build failed, measured the existing binary from {meta.get('MMCHECK_MTIME', '?')}**"
    o.append(f"- `cargo build --release`: {build}; binary sha256 `{meta.get('MMCHECK_SHA256', '?')[:16]}…`, {meta.get('RUSTC', '')}")
    o.append(f"- SPIN: {meta.get('SPIN_VERSION', '?')}; {meta.get('GCC_VERSION', '?')}")
    if meta.get("SPIN_OK") != "1":
        o.append(f"- **SPIN not run: {meta.get('SPIN_PROBLEM', '?')}**")
    o.append(
        f"- Load average at start / end: {meta.get('LOAD_START', '?')} / {meta.get('LOAD_END', '?')} "
        "(the machine is shared: other work running at the same time slows every number here)"
    )
    o.append(
        f"- Limits: mmcheck `--max-seconds {limit} --max-memory-mb {meta.get('BENCH_MEMORY_MB', '?')}"
        f" --max-states {meta.get('BENCH_STATES', '50000000 (the default)')}`; "
        f"pan SIGINT after {meta.get('SPIN_SECONDS', '?')} s, `-DMEMLIM={meta.get('SPIN_MEMLIM_MB', '?')}` (MiB), "
        f"`-m{meta.get('SPIN_DEPTH', '?')} -w{meta.get('SPIN_HASH', '?')}`"
    )
    o.append("")
    o.append("Commands:")
    o.append("")
    o.append("```")
    o.append(f"mmcheck check {os.environ.get('BENCH_SCENARIO', 'madv-free-dio-anchor')} --kernel 6.18|5.16 --set pages=N --json "
             "[--preemption-bound 2|1] --max-seconds S --max-memory-mb M   # under /usr/bin/time -v")
    o.append(f"spin -DN=N -DFIXED=1|0 -a madv_free_dio.pml && gcc -O2 -DSAFETY "
             f"-DMEMLIM={meta.get('SPIN_MEMLIM_MB', '?')} -o pan pan.c && "
             f"./pan -m{meta.get('SPIN_DEPTH', '?')} -w{meta.get('SPIN_HASH', '?')}   # under /usr/bin/time -v")
    o.append("```")
    o.append("")
    o.append("How to read the columns:")
    o.append("")
    o.append("- *time*: wall clock of the whole mmcheck process. *search*: mmcheck's own `elapsed_ms`.")
    o.append("- *SPIN search*: pan's `elapsed time` (search only; pan's clock ticks every 10 ms, so "
             "a reading of 0 is shown as ≤ 10 ms). *SPIN build+run*: wall clock of `spin -a` + `gcc` "
             "+ the whole pan process, including pan allocating its hash table before the search "
             "starts.")
    o.append("- *SPIN memory*: pan's `total actual memory usage` (dominated by the hash table for "
             "small N), with the part used for stored states in brackets. *peak RSS*: "
             "GNU time's maximum resident set size.")
    o.append("- *ratio*: SPIN ÷ mmcheck, so above 1 means mmcheck is faster (or smaller). "
             "*search* compares the two search times, *wall* compares SPIN build+run with the "
             "mmcheck process, *time/state* compares search time per stored state (defined even "
             "when a run stopped at its limit), *RSS* compares peak RSS. `>` / `<` mark a bound: "
             "a side that hit its limit needs at least the time it ran.")
    o.append("- States are not comparable one to one: mmcheck steps through the modelled kernel "
             "functions (fault, GUP-fast, rmap walk, reclaim) while the anchor is a hand "
             "abstraction of the same race.")
    o.append("")

    # ---------------------------------------------------------- verification
    header = ["pages", "mmcheck (6.18)", "time", "search", "states", "transitions", "peak RSS",
              "SPIN (FIXED=1)", "SPIN search", "SPIN build+run", "SPIN states", "SPIN transitions",
              "SPIN memory", "SPIN peak RSS", "ratio search", "ratio wall", "ratio time/state",
              "ratio RSS"]
    sections = [
        ("verify", "## Verification: exhaustive, fixed kernel (6.18) vs SPIN FIXED=1", None, None),
        ("violation", "## Violation: exhaustive search, old kernel (5.16) vs SPIN FIXED=0 "
         "(time to the first violation)", "mmcheck (5.16)", "SPIN (FIXED=0)"),
    ]
    for kind, title, mm_header, spin_header in sections:
        if mm_header:
            header[1] = mm_header
            header[7] = spin_header
        o.append(title)
        o.append("")
        rows = []
        for p in pages_main:
            mm = runs.get(f"mm-{kind}-{p}")
            sp = runs.get(f"spin-{kind}-{p}")
            rows.append([p] + mm_cells(mm) + spin_cells(sp, p) + ratio_cells(sp, mm))
        o.append(table(header, rows))
        o.append("")

    o.append("## Violation with `--preemption-bound 1`, old kernel (5.16)")
    o.append("")
    o.append("The fast way to find the violation at large sizes. The ratio column compares with "
             "SPIN FIXED=0 at the same size, where SPIN was run.")
    o.append("")
    rows = []
    for p in pages_bounded:
        mm = runs.get(f"mm-violation-pb1-{p}")
        sp = runs.get(f"spin-violation-{p}")
        r = ratio_cells(sp, mm) if sp is not None else ["n/a (no SPIN run)"] * 4
        rows.append([p] + mm_cells(mm) + r)
    o.append(table(["pages", "mmcheck (5.16, bound 1)", "time", "search", "states", "transitions",
                    "peak RSS", "ratio search", "ratio wall", "ratio time/state", "ratio RSS"],
                   rows))
    o.append("")

    # ---------------------------------------------------------- bounded
    o.append("## Bounded verification: `--preemption-bound 2`, fixed kernel (6.18)")
    o.append("")
    rows = []
    for p in pages_bounded:
        mm = runs.get(f"mm-bounded-{p}")
        stored = fmt_count(mm.states_stored) if mm and mm.states_stored is not None else "–"
        rows.append([p] + mm_cells(mm) + [stored, fmt_bytes(mm.mem_reported) if mm else "–"])
    o.append("*states* counts the states explored: the bounded search stores a state of a run "
             "without choices (one thread to run) only at sample points, so a state it did not "
             "store is counted at each visit; *stored* is the visited set.")
    o.append("")
    o.append(table(["pages", "mmcheck (6.18, bound 2)", "time", "search", "states", "transitions",
                    "peak RSS", "stored", "memory_bytes_peak"], rows))
    o.append("")

    # ---------------------------------------------------------- variants
    variants = meta.get("VARIANT_SCENARIOS", "").split()
    if variants:
        o.append("## Harder variants of the same race: exhaustive, fixed kernel (6.18)")
        o.append("")
        o.append("The anchor reads the buffer back once the read and reclaim are both done. In "
                 "`madv-free-dio-window` the read-back and the process's exit race reclaim too; in "
                 "`madv-free-dio` reclaim also races the setup (mmap, the stores, MADV_FREE). "
                 "SPIN's anchor has no counterpart of either, so there is no ratio.")
        o.append("")
        rows = []
        for scenario in variants:
            for p in [int(x) for x in meta.get("VARIANT_PAGES", "").split()]:
                mm = runs.get(f"mm-variant-{scenario}-{p}")
                rows.append([scenario, p] + mm_cells(mm))
        o.append(table(["scenario", "pages", "mmcheck (6.18)", "time", "search", "states", "transitions",
                        "peak RSS"], rows))
        o.append("")

    # ---------------------------------------------------------- targets
    o.append("## Targets")
    o.append("")
    o.append("Computed from the numbers above (time = wall clock of the mmcheck process, memory = peak RSS).")
    o.append("")
    rows = []
    scenario = os.environ.get('BENCH_SCENARIO', 'madv-free-dio-anchor')
    v8 = runs.get("mm-verify-8")
    if v8 is None or v8.wall is None:
        rows.append(["8 pages verified exhaustively < 10 s and < 1 GiB", "not measured", "NOT MEASURED"])
        rows.append(["goal: 8 pages verified exhaustively < 1 s", "not measured", "NOT MEASURED"])
    else:
        measured = f"{v8.status}, {fmt_time(v8.wall)}, {fmt_bytes(v8.rss)}"
        ok = v8.verdict == "verified" and v8.wall < T_VERIFY8_SECONDS and v8.rss is not None and v8.rss < T_VERIFY8_BYTES
        rows.append([f"8 pages of `{scenario}` verified exhaustively < 10 s and < 1 GiB", measured, "MET" if ok else "NOT MET"])
        ok = v8.verdict == "verified" and v8.wall < T_VERIFY8_GOAL_SECONDS
        rows.append([f"goal: 8 pages of `{scenario}` verified exhaustively < 1 s", measured, "MET" if ok else "NOT MET"])

    # violation: the fastest violation-finding run at each size, any mode
    best = {}
    for run in runs.values():
        if run.tool != "mmcheck" or run.variant != "5.16":
            continue
        if run.verdict == "violation" and run.wall is not None:
            mode = "bound 1" if "--preemption-bound 1" in run.extra else "exhaustive"
            if run.pages not in best or run.wall < best[run.pages][0]:
                best[run.pages] = (run.wall, mode)
    parts, ok, missing = [], True, False
    for size in T_VIOLATION_SIZES:
        if size in best:
            t, mode = best[size]
            parts.append(f"{size}: {fmt_time(t)} ({mode})")
            ok = ok and t < T_VIOLATION_SECONDS
        else:
            tried = [r for r in runs.values() if r.tool == "mmcheck" and r.variant == "5.16" and r.pages == size]
            if tried:
                parts.append(f"{size}: no violation found ({'; '.join(r.status for r in tried)})")
                ok = False
            else:
                parts.append(f"{size}: not measured")
                missing = True
    status = "NOT MET" if not ok else ("NOT MEASURED (partly)" if missing else "MET")
    rows.append(["violation on the old kernel < 1 s for every size up to 64 pages "
                 "(fastest mode per size)", "; ".join(parts), status])

    b64 = runs.get(f"mm-bounded-{T_BOUNDED_PAGES}")
    if b64 is None or b64.wall is None:
        rows.append(["64 pages with bound 2 within 60 s", "not measured", "NOT MEASURED"])
    else:
        ok = b64.verdict == "verified-bounded" and b64.wall < T_BOUNDED_SECONDS
        rows.append(["64 pages with bound 2 within 60 s", f"{b64.status}, {fmt_time(b64.wall)}",
                     "MET" if ok else "NOT MET"])
    o.append(table(["target", "measured", "status"], rows))
    o.append("")
    o.append(f"Raw logs of this run: `{meta.get('OUT', '?')}` (temporary, not kept).")
    o.extend(seeds_block(meta))
    print("\n".join(o))


def seeds_block(meta):
    """The seed-race block bench/seeds.sh keeps in the report, carried over unchanged."""
    path = os.environ.get("BENCH_REPORT") or os.path.join(os.path.dirname(__file__), "..", "docs", "PERFORMANCE.md")
    text = read(path, "") or ""
    begin, end = "<!-- seeds:begin -->", "<!-- seeds:end -->"
    if begin not in text or end not in text:
        return []
    return ["", text[text.index(begin): text.index(end) + len(end)]]


if __name__ == "__main__":
    main()
