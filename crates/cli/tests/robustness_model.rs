//! Issue 13 (reliability), the model's and the explorer's side: state that grows with a file's
//! or a mapping's size is sparse, and every search stops at its limits and says so. Each test
//! runs the built binary on a reproducer (tests/robustness/) with tight limits and checks the
//! exit code, the answer, that nothing panicked, and (loosely) that it ended in time.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Far above what any of these runs needs (they stop within a few seconds), far below a hang.
const WALL_MAX: Duration = Duration::from_secs(20);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn reproducer(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/robustness").join(name);
    path.to_str().expect("a UTF-8 path").to_string()
}

#[track_caller]
fn mmcheck(args: &[&str], code: i32) -> Run {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_mmcheck")).args(args).output().expect("mmcheck runs");
    let elapsed = started.elapsed();
    let run = Run {
        code: output.status.code().expect("mmcheck exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "mmcheck {args:?} panicked:\n{}", run.stderr);
    assert_eq!(run.code, code, "mmcheck {args:?}\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(elapsed < WALL_MAX, "mmcheck {args:?} took {elapsed:?}");
    run
}

#[track_caller]
fn assert_says(run: &Run, text: &str) {
    assert!(run.stdout.contains(text), "expected {text:?} in:\n{}", run.stdout);
}

#[test]
fn a_4000g_file_is_past_the_language_limit() {
    // The language bounds a file at 1 TiB with a located error; the model's file state is
    // sparse, so a file at the bound costs nothing until touched (the next test and
    // buffered-huge-read below).
    let run = mmcheck(&["check", &reproducer("oom-file-size.mmc"), "--max-seconds", "10"], 2);
    assert!(run.stderr.contains("oom-file-size.mmc:2:16: a file is at most 1024G"), "{}", run.stderr);
}

#[test]
fn a_1024g_file_costs_nothing_until_touched() {
    let text = "scenario file-1024g
file disk size 1024G fill 0
process p {
  b = mmap(8K, read|write, private|anonymous)
  n = pread(disk, b, 4K, 1000G, direct)
  assert n == 4K
  assert load(b, 4K) == 0
}
";
    let run = mmcheck(&["check", &scenario_file("file-1024g", text), "--max-seconds", "10"], 0);
    assert_says(&run, "verified (verified: every interleaving explored under sc");
}

#[test]
fn a_file_of_128m_pages_through_set_is_sparse_too() {
    // pages=128M sizes the file and the mapping (512 GiB; the model places mappings upward from
    // 0x7f0000000000, so 1 TiB would pass TASK_SIZE: "not modelled"); the search
    // stops at its time limit. pages=1G is past the bound: a located error.
    let run = mmcheck(&["check", "madv-free-dio", "--set", "pages=128M", "--max-seconds", "2"], 0);
    assert_says(&run, "limit reached");
    let run = mmcheck(&["check", "madv-free-dio", "--set", "pages=1G", "--max-seconds", "2"], 2);
    assert!(run.stderr.contains("with --set pages=1073741824: a file is at most 1024G"), "{}", run.stderr);
}

#[test]
fn a_4g_file_search_stops_at_its_time_limit() {
    let run = mmcheck(&["check", &reproducer("hang-file-4G.mmc"), "--max-seconds", "0.5"], 0);
    assert_says(&run, "limit reached (time)");
}

#[test]
fn a_4g_file_search_stops_at_its_memory_limit() {
    let run = mmcheck(&["check", &reproducer("hang-file-4G.mmc"), "--max-memory-mb", "3", "--max-seconds", "15"], 0);
    assert_says(&run, "limit reached (memory)");
}

#[test]
fn a_64g_file_is_verified_within_small_limits() {
    let args = ["check", &reproducer("bigfile-64G.mmc"), "--max-memory-mb", "50", "--max-seconds", "5"];
    let run = mmcheck(&args, 0);
    assert_says(&run, "verified (verified: every interleaving explored under sc");
}

#[test]
fn a_huge_direct_read_is_walked_by_its_vmas() {
    let run = mmcheck(&["check", &reproducer("hang-dio-reclaim.mmc"), "--max-seconds", "2"], 0);
    assert_says(&run, "verified (verified: every interleaving explored under sc");
}

#[test]
fn pct_with_a_huge_depth_stops_at_its_limits() {
    // A states limit the default samples pass, so that the run ends at a limit however fast
    // the build (the time limit is the backstop on a slow machine: either is a limit reached).
    let args = [
        "check",
        "madv-free-dio",
        "--strategy",
        "pct",
        "--pct-depth",
        "4294967295",
        "--max-states",
        "100000",
        "--max-seconds",
        "2",
    ];
    let run = mmcheck(&args, 0);
    assert_says(&run, "limit reached");
}

#[test]
fn sampling_honours_the_states_and_memory_limits() {
    let file = reproducer("hang-file-4G.mmc");
    for strategy in ["random", "pct"] {
        let run = mmcheck(&["check", &file, "--strategy", strategy, "--max-states", "100"], 0);
        assert_says(&run, "limit reached (states)");
        assert_says(&run, "covered   100 states");
        let run = mmcheck(&["check", &file, "--strategy", strategy, "--max-memory-mb", "0"], 0);
        assert_says(&run, "limit reached (memory)");
    }
}

#[test]
fn numeric_options_that_would_wrap_or_truncate_are_refused() {
    let refused = [
        (&["--max-memory-mb", "17592186044416"][..], "more bytes than 64 bits hold"),
        (&["--preemption-bound", "4294967295"][..], "16777215"),
        (&["--max-seconds", "NaN"][..], "not a number of seconds"),
        (&["--max-seconds=-1"][..], "not a number of seconds"),
    ];
    for (extra, message) in refused {
        let mut args = vec!["check", "madv-free-dio"];
        args.extend_from_slice(extra);
        let run = mmcheck(&args, 2);
        assert!(run.stderr.contains(message), "{extra:?}: expected {message:?} in:\n{}", run.stderr);
    }
    // The largest value that fits is taken.
    let run = mmcheck(&["check", "madv-free-dio", "--max-memory-mb", "17592186044415"], 0);
    assert_says(&run, "verified");
}

/// Writes a scenario into the tests' temporary directory and gives its path.
fn scenario_file(name: &str, text: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("robustness-model-{name}.mmc"));
    std::fs::write(&path, text).expect("the temporary directory is writable");
    path.to_str().expect("a UTF-8 path").to_string()
}

#[test]
fn syscalls_over_huge_ranges_cost_what_is_mapped() {
    // mprotect and mremap of a 1000G mapping are single steps, munmap of the moved mapping
    // skips the tables that do not exist; the DONTNEED zap (mmap_lock for read) goes table by table,
    // one step each, so the search stops at a limit instead.
    let text = "scenario huge-ranges
process p {
  a = mmap(1000G, read|write, private|anonymous)
  store(a, 4K, 1)
  store(a + 700G, 4K, 2)
  r = mprotect(a, 1000G, read)
  b = mremap(a, 1000G, 1000G, maymove)
  u = munmap(b, 1000G)
  assert u == 0
}
";
    let run = mmcheck(&["check", &scenario_file("huge-ranges", text), "--max-seconds", "5"], 0);
    assert_says(&run, "verified (verified: every interleaving explored under sc");
}

#[test]
fn a_huge_buffered_read_reads_ahead_a_window_not_the_request() {
    // page_cache_sync_ra() of an oversized request: get_init_ra_size(), at most ra_pages.
    let text = "scenario buffered-huge-read
file disk size 1000G fill 0x79
process p {
  b = mmap(1000G, read|write, private|anonymous)
  n = pread(disk, b, 999G, 4K, buffered)
}
";
    let run = mmcheck(&["check", &scenario_file("buffered-huge-read", text), "--max-seconds", "2"], 0);
    assert_says(&run, "limit reached (time)");
}
