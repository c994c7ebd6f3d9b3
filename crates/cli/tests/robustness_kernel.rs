//! Robustness reproducers where the model's answer differed from the kernel's (issue 13): each
//! file in tests/robustness/ is checked with `mmcheck check`, with asserts on the kernel's
//! return values (checked on the live 6.18 kernel) added after the line that makes the call.
//! Every assert is also run negated, which must fail: the value is exactly the one asserted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A reproducer, the line after which the asserts go, and the asserts (`left OP right`).
struct Case {
    file: &'static str,
    after: &'static str,
    asserts: &'static [(&'static str, &'static str, &'static str)],
}

const CASES: &[Case] = &[
    // mm/mremap.c check_mremap_params(): the target wraps. The second mremap, to 0, is the
    // model's unprivileged process below mmap_min_addr (cap_mmap_addr(): -EPERM).
    Case {
        file: "model-mremap-fixed-wrap.mmc",
        after: "m = mremap(",
        asserts: &[("m", "==", "-EINVAL"), ("zero", "==", "-EPERM")],
    },
    // The move returns an address (the reproducer's own assert: not -EFAULT).
    Case { file: "model-mremap-uffd-efault.mmc", after: "m = mremap(", asserts: &[("m", ">", "0")] },
    // The reproducer's own asserts: munmap(-4K, 8K) and pread at -4K are -EINVAL.
    Case { file: "model-odd-returns.mmc", after: "r1 = munmap(", asserts: &[("r1", "==", "-EINVAL")] },
    // The reproducer's own assert: -EBUSY.
    Case {
        file: "conform-uffd-register-other-ctx.mmc",
        after: "r2 = uffdio_register(",
        asserts: &[("r2", "==", "-EBUSY")],
    },
    Case { file: "conform-disagree-dio-partial-ro.mmc", after: "n2 = pread(", asserts: &[("n2", "==", "-EFAULT")] },
    Case {
        file: "conform-disagree-pread-neg-offset.mmc",
        after: "n2 = pread(",
        asserts: &[("n", "==", "-EINVAL"), ("n2", "==", "-EINVAL")],
    },
    Case { file: "conform-disagree-uffd-fork-child.mmc", after: "z = uffdio_zeropage(", asserts: &[("z", "==", "4K")] },
];

/// Lines inserted into model-mremap-fixed-wrap.mmc before its asserts (the zero target).
const EXTRA_CALLS: &[(&str, &str)] = &[("model-mremap-fixed-wrap.mmc", "zero = mremap(a, 8K, 8K, maymove|fixed, 0)")];

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn check(path: &Path) -> Run {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_mmcheck"))
        .args(["check", path.to_str().expect("UTF-8 path"), "--max-seconds", "20"])
        .output()
        .expect("mmcheck runs");
    Run {
        code: output.status.code().expect("mmcheck exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

fn reproducer(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/robustness").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The opposite comparison.
fn negate(comparison: &str) -> &'static str {
    match comparison {
        "==" => "!=",
        ">" => "<=",
        other => panic!("no negation for {other}"),
    }
}

/// The reproducer with `asserts` (and the extra calls) inserted after the line holding `after`,
/// the `negated`-th comparison negated.
fn with_asserts(case: &Case, negated: Option<usize>) -> String {
    let text = reproducer(case.file);
    let mut out = String::new();
    let mut inserted = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if !inserted && line.contains(case.after) {
            inserted = true;
            let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
            for (file, call) in EXTRA_CALLS {
                if *file == case.file {
                    out.push_str(&format!("{indent}{call}\n"));
                }
            }
            for (index, (left, comparison, right)) in case.asserts.iter().enumerate() {
                let comparison = if negated == Some(index) { negate(comparison) } else { comparison };
                out.push_str(&format!("{indent}assert {left} {comparison} {right}\n"));
            }
        }
    }
    assert!(inserted, "{}: no line holds {:?}", case.file, case.after);
    out
}

fn temporary(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mmcheck-robustness-kernel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the scenario");
    path
}

fn assert_clean(run: &Run, what: &str) {
    assert!(!run.stderr.contains("panicked"), "{what} panicked:\n{}", run.stderr);
    assert!([0, 1, 2].contains(&run.code), "{what}: exit {}\n{}", run.code, run.stderr);
    assert!(run.elapsed < Duration::from_secs(30), "{what} took {:?}", run.elapsed);
}

#[test]
fn reproducers_as_copied_run_clean() {
    for case in CASES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/robustness").join(case.file);
        let run = check(&path);
        assert_clean(&run, case.file);
        // No invariant, "not modelled" or assertion: the model now answers as the kernel.
        assert_eq!(run.code, 0, "{}:\n{}{}", case.file, run.stdout, run.stderr);
        assert!(run.stdout.contains("verdict   verified"), "{}:\n{}", case.file, run.stdout);
    }
}

#[test]
fn reproducers_return_what_the_kernel_returns() {
    for case in CASES {
        let name = case.file.trim_end_matches(".mmc");
        let run = check(&temporary(&format!("{name}-eq.mmc"), &with_asserts(case, None)));
        assert_clean(&run, case.file);
        assert_eq!(run.code, 0, "{} with its kernel values:\n{}{}", case.file, run.stdout, run.stderr);
        assert!(run.stdout.contains("verdict   verified"), "{}:\n{}", case.file, run.stdout);
        for index in 0..case.asserts.len() {
            let negated = check(&temporary(&format!("{name}-ne{index}.mmc"), &with_asserts(case, Some(index))));
            assert_clean(&negated, case.file);
            assert_eq!(negated.code, 1, "{} negated must fail:\n{}{}", case.file, negated.stdout, negated.stderr);
            let (left, _, _) = case.asserts[index];
            assert!(negated.stdout.contains(&format!("assert {left} ")), "{}:\n{}", case.file, negated.stdout);
        }
    }
    let _ = std::fs::remove_dir_all(temporary("done", "").parent().expect("in the directory"));
}
