//! What the mutation fuzzer (tests/fuzz.rs) found, each kept as a regression test of the binary.

use std::path::Path;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn mmcheck(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_mmcheck")).args(args).output().expect("mmcheck runs");
    let run = Run {
        code: output.status.code().expect("mmcheck exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "mmcheck {args:?} panicked:\n{}", run.stderr);
    run
}

fn reproducer(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/robustness").join(name).display().to_string()
}

/// A load at an address past TASK_SIZE is SIGSEGV (a fault, exit 1), not a walk of the user's
/// page tables at an index the model's objects cannot key.
#[test]
fn a_user_access_past_task_size_is_sigsegv() {
    let run = mmcheck(&["check", &reproducer("user-access-kernel-address.mmc")]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("fault: line 9: user access at 0xfffffffffffffff4 got SIGSEGV"), "{}", run.stdout);
}

/// PCT with as many change points as a u32 holds and no depth limit to speak of: the change
/// points are bounded by the range they are drawn from, so nothing huge is allocated.
#[test]
fn pct_change_points_are_bounded() {
    let run = mmcheck(&[
        "check",
        "madv-free-dio",
        "--strategy",
        "pct",
        "--pct-depth",
        "4294967295",
        "--max-depth",
        "9223372036854775808",
        "--max-states",
        "2000",
        "--max-seconds",
        "5",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("limit reached (states)"), "{}", run.stdout);
}

/// PCT sizes its change points by the sequential run's length: that run stops at the depth and
/// time limits too (the 100,000-input run, seed 1: 16M pages stored one step each, run to the
/// end before the search started).
#[test]
fn pct_on_a_long_scenario_ends_at_its_time_limit() {
    let started = std::time::Instant::now();
    let args = ["check", "madv-free-reclaim", "--set", "pages=16M", "--strategy", "pct", "--max-seconds", "1"];
    let run = mmcheck(&args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("limit reached (time)"), "{}", run.stdout);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
}

/// `replay FILE` reads at most a report's worth of a file that never ends.
#[test]
fn replay_of_an_endless_file_is_refused() {
    let run = mmcheck(&["replay", "/dev/zero"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is longer than a JSON report may be (256 MiB)"), "{}", run.stderr);
}
