//! End-to-end tests of the `mmcheck` binary: exit codes, human and JSON output, replay and determinism.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

fn mmcheck(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_mmcheck")).args(args).output().expect("mmcheck runs");
    let run = Run {
        code: output.status.code().expect("mmcheck exited, not killed by a signal"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    };
    assert!(!run.stderr.contains("panicked"), "mmcheck {args:?} panicked:\n{}", run.stderr);
    run
}

#[track_caller]
fn expect_code(args: &[&str], code: i32) -> Run {
    let run = mmcheck(args);
    assert_eq!(run.code, code, "mmcheck {args:?}\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    run
}

/// `check madv-free-dio` with extra arguments and `--json`.
fn check_json(extra: &[&str], code: i32) -> Value {
    let mut args = vec!["check", "madv-free-dio", "--json"];
    args.extend_from_slice(extra);
    expect_code(&args, code).json()
}

/// The report without the fields that measure the run rather than describe the search.
fn without_measurements(mut report: Value) -> Value {
    let object = report.as_object_mut().expect("a report is an object");
    object.remove("elapsed_ms");
    object.remove("memory_bytes_peak");
    report
}

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mmcheck-cli-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn replay_token_line(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("replay: mmcheck replay '"))
        .unwrap_or_else(|| panic!("no replay line in:\n{stdout}"));
    line.trim_start_matches("replay: mmcheck replay '").trim_end_matches('\'').to_string()
}

// ---- check ---------------------------------------------------------------------------------------

#[test]
fn check_on_5_16_finds_data_loss() {
    let run = expect_code(&["check", "madv-free-dio", "--kernel", "5.16"], 1);
    assert!(run.stdout.contains("data-loss"), "{}", run.stdout);
    assert!(run.stdout.contains("verdict   violation"), "{}", run.stdout);
    assert!(run.stdout.contains("(as expected)"), "{}", run.stdout);
    assert!(run.stdout.contains("zero page"), "the violation explains itself:\n{}", run.stdout);
    let token = replay_token_line(&run.stdout);
    assert!(token.starts_with("mmc1/madv-free-dio/5.16/-/"), "{token}");
}

#[test]
fn check_on_6_18_is_verified() {
    let run = expect_code(&["check", "madv-free-dio", "--kernel", "6.18"], 0);
    assert!(run.stdout.contains("verified"), "{}", run.stdout);
    // What was exhausted: every interleaving, under which memory model, ending in how many
    // distinct final states.
    let said = "verified (verified: every interleaving explored under sc, 2 distinct final states)";
    assert!(run.stdout.contains(said), "{}", run.stdout);
    assert!(run.stdout.contains("(as expected)"), "{}", run.stdout);
    assert!(!run.stdout.contains("replay:"), "no violation, no replay token:\n{}", run.stdout);
    // The newest kernel is the default.
    let default = expect_code(&["check", "madv-free-dio"], 0);
    assert!(default.stdout.contains("kernel    6.18"), "{}", default.stdout);
}

#[test]
fn json_report_has_every_field() {
    let report = check_json(&["--kernel", "5.16"], 1);
    for field in [
        "scenario",
        "kernel",
        "strategy",
        "verdict",
        "violation",
        "states",
        "transitions",
        "elapsed_ms",
        "replay",
        "trace",
    ] {
        assert!(report.get(field).is_some(), "field `{field}` missing from {report:#}");
    }
    assert_eq!(report["scenario"], "madv-free-dio");
    assert_eq!(report["kernel"], "5.16");
    assert_eq!(report["strategy"], "exhaustive");
    assert_eq!(report["verdict"], "violation");
    assert_eq!(report["violation"]["kind"], "data-loss");
    assert!(report["violation"]["message"].as_str().is_some_and(|m| m.contains("expected 0x79")), "{report:#}");
    assert!(report["states"].as_u64().is_some_and(|n| n > 0));
    assert!(report["transitions"].as_u64().is_some_and(|n| n >= report["states"].as_u64().unwrap() - 1));
    assert!(report["elapsed_ms"].is_u64());
    assert!(report["replay"].as_str().is_some_and(|t| t.starts_with("mmc1/madv-free-dio/5.16/")));
    let trace = report["trace"].as_array().expect("the trace is an array");
    assert!(!trace.is_empty());
    for step in trace {
        for field in ["step", "thread", "function", "label", "detail"] {
            assert!(step.get(field).is_some(), "trace step without `{field}`: {step}");
        }
    }
    let threads: Vec<&str> = trace.iter().filter_map(|s| s["thread"].as_str()).collect();
    for thread in ["p", "io", "kswapd"] {
        assert!(threads.contains(&thread), "thread {thread} takes part in the race: {threads:?}");
    }
    assert!(trace.iter().any(|s| s["function"] == "try_to_unmap_one"), "reclaim unmaps the folio");
}

#[test]
fn json_report_of_a_verified_check() {
    let report = check_json(&["--kernel", "6.18"], 0);
    assert_eq!(report["verdict"], "verified");
    assert_eq!(report["kernel"], "6.18");
    assert!(report["violation"].is_null());
    assert!(report["replay"].is_null());
    assert_eq!(report["trace"].as_array().map(Vec::len), Some(0));
    assert_eq!(report["matches_expectation"], true);
}

#[test]
fn check_is_deterministic() {
    for kernel in ["5.16", "6.18"] {
        let first = without_measurements(check_json(&["--kernel", kernel], if kernel == "5.16" { 1 } else { 0 }));
        let second = without_measurements(check_json(&["--kernel", kernel], if kernel == "5.16" { 1 } else { 0 }));
        assert_eq!(first, second, "two runs of the same check differ on {kernel}");
    }
}

#[test]
fn reduction_off_gives_the_same_verdicts() {
    let on = check_json(&["--kernel", "6.18"], 0);
    let off = check_json(&["--kernel", "6.18", "--no-reduction"], 0);
    assert_eq!(off["verdict"], "verified");
    assert!(on["states"].as_u64() <= off["states"].as_u64(), "reduction visits no more states");
    let off = check_json(&["--kernel", "5.16", "--no-reduction"], 1);
    assert_eq!(off["violation"]["kind"], "data-loss");
}

// ---- replay --------------------------------------------------------------------------------------

#[test]
fn replay_is_deterministic_and_exits_1() {
    let report = check_json(&["--kernel", "5.16"], 1);
    let token = report["replay"].as_str().expect("a violation has a replay token");
    let first = expect_code(&["replay", token], 1);
    let second = expect_code(&["replay", token], 1);
    assert_eq!(first.stdout, second.stdout, "replay output differs between runs");
    assert!(first.stdout.contains("data-loss"), "{}", first.stdout);
    assert_eq!(replay_token_line(&first.stdout), token, "replay prints the token it ran");
}

#[test]
fn replay_reproduces_the_checked_trace() {
    let report = check_json(&["--kernel", "5.16"], 1);
    let token = report["replay"].as_str().expect("a token");
    let replayed = expect_code(&["replay", token, "--json"], 1).json();
    assert_eq!(replayed["violation"], report["violation"], "the replay ends in the same violation");
    assert_eq!(replayed["trace"], report["trace"], "the replay takes the same steps");
    // A saved JSON report replays too.
    let dir = TempDir::new("replay-file");
    let path = dir.file("report.json");
    std::fs::write(&path, serde_json::to_string(&report).expect("serialises")).expect("written");
    let from_file = expect_code(&["replay", path.to_str().expect("UTF-8 path"), "--json"], 1).json();
    assert_eq!(from_file["violation"], report["violation"]);
}

#[test]
fn replay_of_a_non_violating_schedule_exits_0() {
    // Three steps of p alone: a schedule prefix with no race and no final check.
    let report = check_json(&["--kernel", "5.16"], 1);
    let token = report["replay"].as_str().expect("a token");
    let prefix = token.rsplit_once('/').expect("the schedule is the last part").0;
    let run = mmcheck(&["replay", &format!("{prefix}/0*3")]);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

#[test]
fn replay_of_a_bad_token_exits_2() {
    let run = expect_code(&["replay", "mmc1/madv-free-dio/5.16/-/7*3"], 2);
    assert!(run.stderr.contains("not enabled"), "{}", run.stderr);
    expect_code(&["replay", "mmc9/madv-free-dio/5.16/-/0"], 2);
    expect_code(&["replay", "/no/such/report.json"], 2);
}

// ---- errors --------------------------------------------------------------------------------------

#[test]
fn a_malformed_scenario_file_exits_2_with_its_place() {
    let dir = TempDir::new("malformed");
    let path = dir.file("bad.mmc");
    std::fs::write(
        &path,
        "scenario bad\nprocess p {\n  buf = mmap(4K, read|write, private|anonymous)\n  frob(buf)\n}\n",
    )
    .expect("written");
    let path = path.to_str().expect("UTF-8 path");
    let run = expect_code(&["check", path], 2);
    assert!(run.stderr.contains(&format!("{path}:4:3")), "stderr lacks {path}:4:3:\n{}", run.stderr);
    assert!(run.stderr.contains("unknown call `frob`"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_scenario_file_runs_like_a_builtin() {
    let dir = TempDir::new("good");
    let path = dir.file("dontneed.mmc");
    std::fs::write(
        &path,
        concat!(
            "scenario dontneed\n",
            "process p {\n",
            "  buf = mmap(4K, read|write, private|anonymous)\n",
            "  store(buf, 4K, 1)\n",
            "  thread z {\n",
            "    madvise(buf, 4K, dontneed)\n",
            "  }\n",
            "  thread w {\n",
            "    store(buf, 4K, 2)\n",
            "    assert load(buf, 4K) == 2\n",
            "  }\n",
            "}\n",
        ),
    )
    .expect("written");
    let path = path.to_str().expect("UTF-8 path");
    let run = expect_code(&["check", path, "--json"], 1);
    let report = run.json();
    assert_eq!(report["scenario"], "dontneed");
    assert_eq!(report["violation"]["kind"], "data-loss");
    assert!(report["expected"].is_null(), "the scenario has no expectation");
    // A token for a scenario that is not built in replays with --file.
    let token = report["replay"].as_str().expect("a token");
    expect_code(&["replay", token], 2);
    let replayed = expect_code(&["replay", token, "--file", path, "--json"], 1).json();
    assert_eq!(replayed["violation"], report["violation"]);
}

#[test]
fn an_unknown_scenario_exits_2() {
    let run = expect_code(&["check", "no-such-scenario"], 2);
    assert!(run.stderr.contains("no-such-scenario"), "{}", run.stderr);
    assert!(run.stderr.contains("madv-free-dio"), "the error lists the built-in scenarios:\n{}", run.stderr);
}

#[test]
fn bad_kernels_and_patches_exit_2() {
    expect_code(&["check", "madv-free-dio", "--kernel", "seven"], 2);
    let run = expect_code(&["check", "madv-free-dio", "--kernel", "9.0"], 2);
    assert!(run.stderr.contains("6.18"), "names the newest modelled kernel: {}", run.stderr);
    expect_code(&["check", "madv-free-dio", "--patch", "no-such-patch=off"], 2);
    expect_code(&["check", "madv-free-dio", "--patch", "madv-free-gup-race=maybe"], 2);
    expect_code(&["check", "madv-free-dio", "--patch", "madv-free-gup-race"], 2);
    expect_code(&["check", "madv-free-dio", "--strategy", "bfs"], 2);
}

// ---- options -------------------------------------------------------------------------------------

#[test]
fn reverting_the_fix_on_6_18_finds_the_violation() {
    let report = check_json(&["--kernel", "6.18", "--patch", "madv-free-gup-race=off"], 1);
    assert_eq!(report["violation"]["kind"], "data-loss");
    assert_eq!(report["kernel"], "6.18 -madv-free-gup-race");
    let token = report["replay"].as_str().expect("a token");
    assert!(token.starts_with("mmc1/madv-free-dio/6.18,-madv-free-gup-race/"), "{token}");
    expect_code(&["replay", token], 1);
    // By commit id too.
    let by_commit = check_json(&["--kernel", "6.18", "--patch", "6c8e2a256915=off"], 1);
    assert_eq!(by_commit["violation"]["kind"], "data-loss");
    // And applying the fix to 5.16 verifies it.
    let applied = check_json(&["--kernel", "5.16", "--patch", "madv-free-gup-race=on"], 0);
    assert_eq!(applied["verdict"], "verified");
}

#[test]
fn a_fix_version_with_the_merged_fix_is_a_usage_error() {
    let run = expect_code(&["check", "madv-free-dio", "--patch", "madv-free-refcount-check-v1=on"], 2);
    assert!(run.stderr.contains("versions of one fix"), "{}", run.stderr);
    let v2 = check_json(
        &["--kernel", "6.18", "--patch", "madv-free-gup-race=off", "--patch", "madv-free-refcount-check-v2=on"],
        0,
    );
    assert_eq!(v2["verdict"], "verified");
}

#[test]
fn set_overrides_a_parameter() {
    let one = check_json(&["--kernel", "6.18"], 0);
    let two = check_json(&["--kernel", "6.18", "--set", "pages=2"], 0);
    assert_eq!(two["verdict"], "verified");
    assert!(two["states"].as_u64() > one["states"].as_u64(), "two pages have more interleavings");
    let violation = check_json(&["--kernel", "5.16", "--set", "pages=2"], 1);
    let token = violation["replay"].as_str().expect("a token");
    assert!(token.contains("/pages=2/"), "the token keeps the override: {token}");
    expect_code(&["replay", token], 1);
}

#[test]
fn set_of_an_unknown_parameter_exits_2() {
    let run = expect_code(&["check", "madv-free-dio", "--set", "nosuch=1"], 2);
    assert!(run.stderr.contains("nosuch"), "{}", run.stderr);
    expect_code(&["check", "madv-free-dio", "--set", "pages"], 2);
    expect_code(&["check", "madv-free-dio", "--set", "pages=many"], 2);
}

#[test]
fn preemption_bound_one() {
    let old = check_json(&["--kernel", "5.16", "--preemption-bound", "1"], 1);
    assert_eq!(old["verdict"], "violation");
    assert_eq!(old["violation"]["kind"], "data-loss");
    let new = check_json(&["--kernel", "6.18", "--preemption-bound", "1"], 0);
    assert_eq!(new["verdict"], "verified-bounded");
    assert_eq!(new["matches_expectation"], false, "a bounded verification is not a verification");
    let run = expect_code(&["check", "madv-free-dio", "--kernel", "6.18", "--preemption-bound", "1"], 0);
    assert!(run.stdout.contains("verified-bounded"), "{}", run.stdout);
}

#[test]
fn random_strategy_is_deterministic() {
    let args = ["--strategy", "random", "--seed", "1", "--max-schedules", "200"];
    for kernel in ["5.16", "6.18"] {
        let mut with_kernel = vec!["check", "madv-free-dio", "--json", "--kernel", kernel];
        with_kernel.extend_from_slice(&args);
        let first = mmcheck(&with_kernel);
        let second = mmcheck(&with_kernel);
        assert!(first.code == 0 || first.code == 1, "{}", first.stderr);
        assert_eq!(first.code, second.code);
        let report = first.json();
        assert_eq!(report["strategy"], "random");
        assert_eq!(without_measurements(report.clone()), without_measurements(second.json()), "same seed, same run");
        match report["verdict"].as_str().unwrap() {
            "violation" => {
                assert_eq!(report["violation"]["kind"], "data-loss", "the only violation 5.16 has");
                expect_code(&["replay", report["replay"].as_str().expect("a token")], 1);
            }
            // 200 samples need not pass every racy step the scenario's reach lines name.
            "vacuous" => assert!(report["verdict_detail"].as_str().unwrap().contains("never reached"), "{report}"),
            verdict => {
                assert_eq!(verdict, "no-violation-found");
                assert_eq!(report["schedules"], 200);
            }
        }
    }
}

#[test]
fn pct_strategy_is_deterministic() {
    for (kernel, extra) in [("5.16", vec![]), ("6.18", vec!["--max-schedules", "300"])] {
        let mut args = vec!["check", "madv-free-dio", "--json", "--strategy", "pct", "--seed", "7", "--kernel", kernel];
        args.extend(extra);
        let first = mmcheck(&args);
        let second = mmcheck(&args);
        assert!(first.code == 0 || first.code == 1, "{}", first.stderr);
        assert_eq!(first.code, second.code);
        let report = first.json();
        assert_eq!(report["strategy"], "pct");
        assert_eq!(without_measurements(report.clone()), without_measurements(second.json()), "same seed, same run");
        if kernel == "6.18" {
            assert_eq!(first.code, 0, "6.18 has no violation to sample");
            assert_eq!(report["verdict"], "no-violation-found");
        }
    }
    // The default PCT run.
    let run = mmcheck(&["check", "madv-free-dio", "--strategy", "pct", "--kernel", "5.16"]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
}

#[test]
fn a_state_limit_is_reported() {
    let report = check_json(&["--kernel", "6.18", "--max-states", "50"], 0);
    assert_eq!(report["verdict"], "limit-reached");
    // The limit bounds the visited set; the bounded prelude explores states it does not store.
    assert_eq!(report["states_stored"], 50);
    assert!(report["states"].as_u64().expect("a count") >= 50);
    assert_eq!(report["matches_expectation"], false);
}

// ---- list, kernels, suite ------------------------------------------------------------------------

#[test]
fn list_names_the_builtin_scenarios() {
    let run = expect_code(&["list"], 0);
    assert!(run.stdout.contains("madv-free-dio"), "{}", run.stdout);
    assert!(run.stdout.contains("violation data-loss"), "{}", run.stdout);
}

#[test]
fn kernels_lists_the_patches() {
    let run = expect_code(&["kernels"], 0);
    assert!(run.stdout.contains("6c8e2a256915"), "{}", run.stdout);
    assert!(run.stdout.contains("madv-free-gup-race"), "{}", run.stdout);
    assert!(run.stdout.contains("5.18"), "{}", run.stdout);
}

/// The whole built-in suite once (under SC: `mmcheck` without arguments runs the weak-memory
/// lines too, which .ci/run runs in a release build; a debug build takes minutes over them).
#[test]
fn the_suite_under_sequential_consistency_matches_every_expectation() {
    let reports = expect_code(&["suite", "--memory-model", "sc", "--json"], 0).json();
    let reports = reports.as_array().expect("an array of reports");
    let unmatched: Vec<&Value> = reports.iter().filter(|r| r["matches_expectation"] != true).collect();
    assert!(unmatched.is_empty(), "rows not as expected: {unmatched:?}");
    let kernels: Vec<&str> =
        reports.iter().filter(|r| r["scenario"] == "madv-free-dio").filter_map(|r| r["kernel"].as_str()).collect();
    assert_eq!(
        kernels,
        vec!["5.16", "5.16 +madv-free-refcount-check-v1", "5.16 +madv-free-refcount-check-v2", "5.17", "5.18", "6.18"]
    );
    for (scenario, verdict) in [("madv-free-dio", "violation"), ("madv-free-dio", "verified")] {
        let found = reports.iter().any(|r| r["scenario"] == scenario && r["verdict"] == verdict);
        assert!(found, "{scenario} has a {verdict} row");
    }
}

#[test]
fn a_preemption_bound_with_sampling_is_a_usage_error() {
    let run = expect_code(&["check", "madv-free-dio", "--strategy", "random", "--preemption-bound", "1"], 2);
    assert!(run.stderr.contains("--preemption-bound"), "{}", run.stderr);
}

#[test]
fn host_refuses_a_scenario_that_needs_an_interleaving_or_kswapd() {
    let run = expect_code(&["host", "madv-free-dio"], 2);
    assert!(
        run.stderr.contains("not sequentialisable on the host") && run.stderr.contains("reclaim(all)"),
        "{}",
        run.stderr
    );
    let run = expect_code(&["host", "uffd-missing-copy"], 2);
    assert!(run.stderr.contains("uffd_read"), "{}", run.stderr);
    // A conformance run reports refusals as such, never as agreement.
    let run = expect_code(&["conform", "madv-free-dio", "--json"], 1);
    let rows = run.json();
    assert!(rows[0]["status"].as_str().unwrap().starts_with("refused"), "{rows}");
    assert_eq!(rows[0]["agree"], 0);
}

/// Yu Zhao's fork question (docs/MEMORY-MODEL.md): with fork holding both PTE locks, reclaim
/// never sees the copy's mapcount without its reference, within one preemption under arm64.
#[test]
fn fork_during_direct_io_is_verified_bounded_under_arm64() {
    let args = ["check", "madv-free-fork-dio", "--kernel", "6.4", "--memory-model", "arm64", "--preemption-bound", "1"];
    let run = expect_code(&[&args[..], &["--json"]].concat(), 0).json();
    assert_eq!(run["verdict"], "verified-bounded", "{run}");
}

#[test]
fn the_seed_threads_v2_fails_under_arm64_and_replays() {
    let args = ["check", "madv-free-dio", "--kernel", "5.16", "--patch", "madv-free-refcount-check-v2=on"];
    // (x86 verifies it: the release suite's `under x86` lines, too slow for a debug build.)
    let arm64 = expect_code(&[&args[..], &["--memory-model", "arm64", "--json"]].concat(), 1).json();
    assert_eq!(arm64["memory_model"], "arm64");
    assert_eq!(arm64["violation"]["kind"], "data-loss");
    let token = arm64["replay"].as_str().expect("a replay token");
    assert!(token.starts_with("mmc2/") && token.contains("/arm64/"), "{token}");
    let stale = arm64["trace"].as_array().unwrap().iter().any(|step| {
        step["label"] == "read_refcount" && step["detail"].as_str().unwrap().contains("read an older store")
    });
    assert!(stale, "reclaim's refcount read misses GUP-fast's reference: {}", arm64["trace"]);
    let replayed = expect_code(&["replay", token, "--json"], 1).json();
    assert_eq!(replayed["trace"], arm64["trace"], "the replay gives the same trace");
    let bad = expect_code(&[&args[..], &["--memory-model", "power"]].concat(), 2);
    assert!(bad.stderr.contains("power"), "{}", bad.stderr);
}

/// conform: a load check that fails in both worlds is STOPPED (the scenario did not run to its
/// end), never agreement; a file that does not parse is a row with its error, the other files
/// still run, and the exit code is then 2.
#[test]
fn conform_stops_at_a_failed_load_and_reports_a_bad_file_as_a_row() {
    let dir = TempDir::new("conform-rows");
    let stopped = dir.file("stopped.mmc");
    let text = "scenario stopped-load \"a load check that fails in both worlds\"\nprocess p {\n  buf = mmap(4K, read|write, private|anonymous)\n  store(buf, 4K, 0x01)\n  assert load(buf, 4K) == 0x02\n  store(buf, 4K, 0x03)\n}\n";
    std::fs::write(&stopped, text).expect("scenario written");
    let bad = dir.file("bad.mmc");
    std::fs::write(&bad, "scenario bad \"x\"\nprocess p {\n  frob()\n}\n").expect("scenario written");
    let (stopped, bad) = (stopped.display().to_string(), bad.display().to_string());
    let rows = expect_code(&["conform", &stopped, "--json"], 1).json();
    assert!(rows[0]["status"].as_str().unwrap().starts_with("STOPPED: data-loss"), "{rows}");
    let run = expect_code(&["conform", &bad, &stopped, "--json"], 2);
    let rows = run.json();
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    assert_eq!(rows[0]["status"], format!("error: {bad}:3:3: unknown call `frob`"));
    assert!(rows[1]["status"].as_str().unwrap().starts_with("STOPPED"), "{rows}");
    assert!(run.stderr.contains("unknown call `frob`"), "{}", run.stderr);
}

/// `mmcheck suite FILE...` runs a user's scenarios under the kernels their `expect` lines name:
/// exit 0 when every line holds, 1 when one does not, 2 for a file without `expect` lines.
#[test]
fn suite_runs_scenario_files_under_their_expect_lines() {
    let dir = TempDir::new("suite-files");
    let scenario = |expect: &str| {
        format!("scenario mine \"a store and its load\"\nprocess p {{\n  buf = mmap(4K, read|write, private|anonymous)\n  store(buf, 4K, 0x01)\n  assert load(buf, 4K) == 0x01\n}}\n{expect}")
    };
    let (good, wrong, none) = (dir.file("good.mmc"), dir.file("wrong.mmc"), dir.file("none.mmc"));
    std::fs::write(&good, scenario("expect kernel 5.10: verified\nexpect kernel >= 6.18: verified\n")).unwrap();
    std::fs::write(&wrong, scenario("expect kernel >= 6.18: violation data-loss\n")).unwrap();
    std::fs::write(&none, scenario("")).unwrap();
    let reports = expect_code(&["suite", &good.display().to_string(), "--json"], 0).json();
    let kernels: Vec<&str> = reports.as_array().unwrap().iter().filter_map(|r| r["kernel"].as_str()).collect();
    assert_eq!(kernels, vec!["5.10", "6.18"]);
    let run = expect_code(&["suite", &good.display().to_string(), &wrong.display().to_string()], 1);
    assert!(run.stdout.contains("2 passed, 1 failed"), "{}", run.stdout);
    let run = expect_code(&["suite", &none.display().to_string()], 2);
    assert!(run.stderr.contains("no `expect` line"), "{}", run.stderr);
}

/// `reclaim(all, passes = N)`: one pass keeps a page its PTE had just referenced (it only sets
/// PG_referenced, FOLIOREF_KEEP), the second swaps it out; the option is checked.
#[test]
fn a_second_reclaim_pass_swaps_out_what_the_first_kept() {
    let dir = TempDir::new("reclaim-passes");
    let scenario = |passes: &str| {
        format!("scenario passes \"reclaim passes over a referenced page\"\nswap size 4 * 4K\nprocess p {{\n  buf = mmap(4K, read|write, private|anonymous)\n  store(buf, 4K, 0x3c)\n  signal stored\n  wait reclaimed\n  swap = smaps(buf, Swap)\n  assert swap == 4\n}}\nkthread kswapd {{\n  wait stored\n  reclaim(all{passes})\n  signal reclaimed\n}}\n")
    };
    let file = dir.file("passes.mmc");
    let path = file.display().to_string();
    std::fs::write(&file, scenario("")).unwrap();
    let one = expect_code(&["check", &path, "--json"], 1).json();
    assert_eq!(one["violation"]["kind"], "assertion", "{one}");
    std::fs::write(&file, scenario(", passes = 2")).unwrap();
    let two = expect_code(&["check", &path, "--json"], 0).json();
    assert_eq!(two["verdict"], "verified", "{two}");
    std::fs::write(&file, scenario(", passes = 0")).unwrap();
    assert!(expect_code(&["check", &path], 2).stderr.contains("`passes` is 1 to 16"));
    std::fs::write(&file, scenario(", 2")).unwrap();
    assert!(expect_code(&["check", &path], 2).stderr.contains("expected `passes = N` here"));
}

/// Coverage: the step labels any explored interleaving reached, and in the functions entered
/// those the source names that none reached. The seed race's racy steps are reached on both
/// sides of the fix; a scenario without reclaim never enters try_to_unmap_one.
#[test]
fn coverage_lists_the_labels_a_search_reached() {
    let reached = |report: &Value| -> Vec<String> {
        report["coverage"]["reached"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
    };
    for kernel in ["5.16", "6.18"] {
        let report = check_json(&["--kernel", kernel], if kernel == "5.16" { 1 } else { 0 });
        let labels = reached(&report);
        for racy in
            ["gup_fast_pte_range: try_grab_folio_fast", "gup_fast_pte_range: recheck", "try_to_unmap_one: clear_pte"]
        {
            assert!(labels.iter().any(|l| l == racy), "{kernel}: {racy} not in {labels:?}");
        }
        let unreached = report["coverage"]["unreached"].as_array().unwrap();
        assert!(unreached.iter().all(|l| !labels.contains(&l.as_str().unwrap().to_string())));
        let mut sorted = labels.clone();
        sorted.sort();
        assert_eq!(labels, sorted, "in order");
    }
    let report = expect_code(&["check", "fork-cow", "--json"], 0).json();
    assert!(!reached(&report).iter().any(|l| l.starts_with("try_to_unmap_one")), "{report}");
    let run = expect_code(&["check", "madv-free-dio"], 0);
    assert!(run.stdout.contains("\nlabels    ") && run.stdout.contains("reached in"), "{}", run.stdout);
}

/// `expect reach`: a run that finds no violation without reaching a line's label is `vacuous`
/// (exit 1, and the suite fails it), never verified; `expect unreached` is the converse.
#[test]
fn a_run_that_misses_its_racy_step_is_vacuous() {
    let dir = TempDir::new("vacuous");
    let scenario = |line: &str| {
        format!("scenario mine \"no reclaim\"\nprocess p {{\n  buf = mmap(4K, read|write, private|anonymous)\n  store(buf, 4K, 0x01)\n  assert load(buf, 4K) == 0x01\n}}\nexpect kernel >= 6.18: verified\n{line}\n")
    };
    let file = dir.file("vacuous.mmc");
    let path = file.display().to_string();
    std::fs::write(&file, scenario("expect reach try_to_unmap_one: discard")).unwrap();
    let report = expect_code(&["check", &path, "--json"], 1).json();
    assert_eq!(report["verdict"], "vacuous", "{report}");
    assert!(report["verdict_detail"].as_str().unwrap().contains("line 8: never reached try_to_unmap_one: discard"));
    assert_eq!(report["matches_expectation"], false);
    expect_code(&["suite", &path], 1);
    std::fs::write(&file, scenario("expect reach user: store\nexpect unreached try_to_unmap_one: discard")).unwrap();
    assert_eq!(expect_code(&["check", &path, "--json"], 0).json()["verdict"], "verified");
    std::fs::write(&file, scenario("expect unreached user: store")).unwrap();
    assert_eq!(expect_code(&["check", &path, "--json"], 1).json()["verdict"], "vacuous");
    std::fs::write(&file, scenario("expect reach try_to_unmap_one")).unwrap();
    assert!(expect_code(&["check", &path], 2).stderr.contains("`:` after the function"));
}
