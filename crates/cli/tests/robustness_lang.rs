//! Robustness of the scenario language, the CLI's input and replay tokens (issue 13): each
//! reproducer in tests/robustness/ ends with exit 0, 1 or 2, quickly, without a panic or a
//! signal, and with the answer it should give (a located error for bad input).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Far above what any of these takes; a hang or a runaway recursion would not end this fast.
const SECONDS_MAX: u64 = 60;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn reproducer(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "robustness", name].iter().collect();
    path.display().to_string()
}

/// Runs mmcheck; asserts it exited (no signal) with 0, 1 or 2, printed no panic, and was quick.
fn mmcheck(args: &[&str]) -> Run {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_mmcheck")).args(args).output().expect("mmcheck runs");
    let elapsed = started.elapsed();
    let run = Run {
        code: output.status.code().unwrap_or_else(|| panic!("mmcheck {args:?} was killed: {:?}", output.status)),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "mmcheck {args:?} panicked:\n{}", run.stderr);
    assert!([0, 1, 2].contains(&run.code), "mmcheck {args:?} exited {}:\n{}", run.code, run.stderr);
    assert!(elapsed < Duration::from_secs(SECONDS_MAX), "mmcheck {args:?} took {elapsed:?}");
    run
}

/// `mmcheck check FILE` is bad input: exit 2 and an error that starts `FILE:LINE:COL: MESSAGE`.
#[track_caller]
fn located_error(name: &str, line_column: &str, message: &str) {
    let path = reproducer(name);
    let run = mmcheck(&["check", &path]);
    assert_eq!(run.code, 2, "{name}\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let expected = format!("error: {path}:{line_column}: {message}");
    assert!(run.stderr.contains(&expected), "{name}: expected `{expected}` in\n{}", run.stderr);
}

#[test]
fn division_overflow_is_a_located_error() {
    let overflow = "arithmetic overflow";
    located_error("panic-div-overflow-param.mmc", "2:12", overflow);
    located_error("panic-div-overflow-assert.mmc", "5:26", overflow);
}

#[test]
fn deep_nesting_is_a_located_error() {
    let nesting = "nesting deeper than 256 levels";
    located_error("stackoverflow-parens.mmc", "2:267", nesting);
    located_error("stackoverflow-unary-minus.mmc", "2:523", nesting);
    // The 256th nested fork opens the 257th block (the process's is the first).
    located_error("stackoverflow-fork-nesting.mmc", "259:11", nesting);
}

#[test]
fn a_long_operator_chain_is_a_located_error() {
    located_error("stackoverflow-plus-chain.mmc", "2:1039", "an expression is at most 256 operators deep");
}

#[test]
fn invalid_utf8_is_located_at_its_first_byte() {
    located_error("error-invalid-utf8.mmc", "3:49", "the file is not valid UTF-8");
    // A path that names neither a file nor a built-in keeps its message.
    let run = mmcheck(&["check", "no-such-scenario.mmc"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is neither a built-in scenario"), "{}", run.stderr);
}

#[test]
fn an_offset_that_wraps_is_a_located_error() {
    // Constant offsets are checked when the scenario is built.
    located_error("silent-offset-wrap.mmc", "4:9", "arithmetic overflow");
    // A variable's run-time value plus its offset: the run ends as the scenario's error.
    let run = mmcheck(&["check", &reproducer("runtime-offset-wrap.mmc")]);
    assert_eq!(run.code, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("scenario error: thread p, instruction 4:"), "{}", run.stdout);
    assert!(run.stdout.contains("does not fit in a signed 64-bit integer"), "{}", run.stdout);
}

#[test]
fn replay_tokens_are_bounded_before_allocation() {
    let path = reproducer("replay-tokens.txt");
    let tokens = std::fs::read_to_string(&path).expect("the tokens file");
    let tokens: Vec<&str> = tokens.lines().collect();
    let expected = [
        "the schedule names more than 16777216 steps",
        "the schedule names more than 16777216 steps",
        // `--set pages=1G` in the token meets the file size limit as a --set value does.
        "a file is at most 1024G (1 TiB; this is 4398046511104 bytes)",
    ];
    assert_eq!(tokens.len(), expected.len());
    for (token, message) in tokens.iter().zip(expected) {
        let run = mmcheck(&["replay", token]);
        assert_eq!(run.code, 2, "{token}\n{}", run.stderr);
        assert!(run.stderr.contains(message), "{token}: expected `{message}` in\n{}", run.stderr);
    }
    let sets = vec!["pages=1"; 65].join(",");
    let run = mmcheck(&["replay", &format!("mmc1/madv-free-dio/5.16/{sets}/0")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("more than 64 parameters"), "{}", run.stderr);
}

#[test]
fn a_set_value_past_a_limit_says_where() {
    let run = mmcheck(&["check", "madv-free-dio", "--set", "pages=1G"]);
    assert_eq!(run.code, 2);
    let expected = "scenario madv-free-dio line 8:16 `pages * 4K` with --set pages=1073741824: a file is at most 1024G";
    assert!(run.stderr.contains(expected), "{}", run.stderr);
}

#[test]
fn kernel_versions_are_strict() {
    for text in ["6.18 ", "+5.16", "05.016", "0.0", " 6.18", "6.18.0"] {
        let run = mmcheck(&["check", "madv-free-dio", "--kernel", text, "--max-states", "1"]);
        assert_eq!(run.code, 2, "--kernel `{text}`\n{}", run.stderr);
        assert!(run.stderr.contains("is not a kernel version: MAJOR.MINOR"), "{}", run.stderr);
    }
    let token = mmcheck(&["replay", "mmc1/madv-free-dio/05.16/-/0"]);
    assert_eq!(token.code, 2);
    assert!(token.stderr.contains("bad kernel version `05.16`"), "{}", token.stderr);
}

/// `mmcheck check` of `source` written to a temporary file named after `name`: the run and the
/// file's path.
fn check_source(name: &str, source: &str, extra: &[&str]) -> (Run, String) {
    let path = std::env::temp_dir().join(format!("mmcheck-{name}-{}.mmc", std::process::id()));
    std::fs::write(&path, source).expect("a temporary scenario");
    let path_text = path.display().to_string();
    let mut args = vec!["check", path_text.as_str()];
    args.extend_from_slice(extra);
    let run = mmcheck(&args);
    std::fs::remove_file(&path).ok();
    (run, path_text)
}

#[test]
fn too_many_threads_are_reported_where_they_start() {
    let mut source = String::from("scenario many\nprocess p {\n");
    for index in 1..=32 {
        source.push_str(&format!("  thread t{index} {{ signal e }}\n"));
    }
    source.push_str("}\n");
    let (run, path) = check_source("many-threads", &source, &[]);
    assert_eq!(run.code, 2);
    // The 33rd thread, t32, is on line 34.
    assert!(run.stderr.contains(&format!("error: {path}:34:3: at most 32 threads")), "{}", run.stderr);
}

#[test]
fn a_file_past_the_size_limit_is_a_located_error() {
    // oom-file-size.mmc's file: refused before its pages are allocated.
    let source = "scenario bigfile\nfile disk size 4000G fill 0\nprocess p {\n  b = mmap(4K, read|write, private|anonymous)\n}\n";
    let (run, path) = check_source("file-4000G", source, &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(&format!("error: {path}:2:16: a file is at most 1024G")), "{}", run.stderr);
    // A 64G file (bigfile-64G.mmc's) is within the limit.
    let source = "scenario bigfile64\nfile disk size 64G fill 0x79\nprocess p {\n  b = mmap(8K, read|write, private|anonymous)\n}\n";
    let (run, _) = check_source("file-64G", source, &["--max-states", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("limit-reached") || run.stdout.contains("verified"), "{}", run.stdout);
}
