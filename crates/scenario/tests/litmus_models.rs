//! The classic litmus shapes under each memory model, with and without their barriers, against
//! what the hardware manuals and the LKMM say (../shared/memory-models.md's table), and the
//! copied corpus sample against its Result: lines.

use mmcheck_explorer::memory::MemoryModel::{self, Arm64, Lkmm, Sc, X86};
use mmcheck_explorer::Limits;
use mmcheck_scenario::litmus::{check, parse, Observed, Status};

/// Two threads' bodies (P0 and P1, or more) over x and y, and the condition.
fn test(threads: &[&str], condition: &str) -> String {
    let mut source = String::from("C shape\n{\n}\n");
    for (index, body) in threads.iter().enumerate() {
        source.push_str(&format!("P{index}(int *x, int *y, int *z)\n{{\n{body}\n}}\n"));
    }
    source.push_str(&format!("exists ({condition})\n"));
    source
}

fn observed(source: &str, model: MemoryModel) -> Observed {
    let test = parse(source).expect("the shape parses");
    let run = check(&test, model, &Limits::default());
    run.observed.unwrap_or_else(|| panic!("{model}: {:?}", run.status))
}

/// Asserts the shape's outcome under sc, x86, arm64 and lkmm, in that order.
fn expect(name: &str, source: &str, outcomes: [Observed; 4]) {
    for (model, expected) in [Sc, X86, Arm64, Lkmm].into_iter().zip(outcomes) {
        assert_eq!(observed(source, model), expected, "{name} under {model}");
    }
}

use Observed::{Never, Sometimes};

#[test]
fn store_buffering_needs_a_full_barrier_on_both_sides() {
    let plain = test(
        &["WRITE_ONCE(*x, 1); int r0 = READ_ONCE(*y);", "WRITE_ONCE(*y, 1); int r0 = READ_ONCE(*x);"],
        "0:r0=0 /\\ 1:r0=0",
    );
    expect("SB", &plain, [Never, Sometimes, Sometimes, Sometimes]);
    let one = test(
        &["WRITE_ONCE(*x, 1); smp_mb(); int r0 = READ_ONCE(*y);", "WRITE_ONCE(*y, 1); int r0 = READ_ONCE(*x);"],
        "0:r0=0 /\\ 1:r0=0",
    );
    expect("SB+mb+po", &one, [Never, Sometimes, Sometimes, Sometimes]);
    let both = test(
        &[
            "WRITE_ONCE(*x, 1); smp_mb(); int r0 = READ_ONCE(*y);",
            "WRITE_ONCE(*y, 1); smp_mb(); int r0 = READ_ONCE(*x);",
        ],
        "0:r0=0 /\\ 1:r0=0",
    );
    expect("SB+mbs", &both, [Never; 4]);
    // The seed's shape: a full-barrier RMW on one side (GUP-fast's folio_try_get()) and a
    // relaxed xchg (arm64's ptep_get_and_clear()) on the other.
    let seed = test(
        &[
            "int r1 = xchg_relaxed(x, 0); int r0 = READ_ONCE(*y);",
            "int r1 = atomic_add_unless(y, 1, 0); int r0 = READ_ONCE(*x);",
        ],
        "0:r0=1 /\\ 1:r0=1",
    );
    let seed = seed.replace("{\n}", "{\nx=1;\ny=1;\n}");
    expect("SB, xchg_relaxed against a full RMW", &seed, [Never, Never, Sometimes, Sometimes]);
    // 6c8e2a256915 (v3): smp_mb() after clearing the PTE.
    let fixed = seed.replace("int r1 = xchg_relaxed(x, 0);", "int r1 = xchg_relaxed(x, 0); smp_mb();");
    expect("SB, xchg_relaxed + smp_mb against a full RMW", &fixed, [Never; 4]);
    // v1/v2: only smp_rmb() there, which orders the refcount read after earlier loads, not
    // after the clearing store.
    let rmb = seed.replace("int r1 = xchg_relaxed(x, 0);", "int r1 = xchg_relaxed(x, 0); smp_rmb();");
    expect("SB, xchg_relaxed + smp_rmb against a full RMW", &rmb, [Never, Never, Sometimes, Sometimes]);
}

#[test]
fn message_passing_needs_ordering_on_both_sides_except_on_x86() {
    let writer = "WRITE_ONCE(*x, 1); WRITE_ONCE(*y, 1);";
    let reader = "int r0 = READ_ONCE(*y); int r1 = READ_ONCE(*x);";
    expect("MP", &test(&[writer, reader], "1:r0=1 /\\ 1:r1=0"), [Never, Never, Sometimes, Sometimes]);
    let writer = "WRITE_ONCE(*x, 1); smp_wmb(); WRITE_ONCE(*y, 1);";
    let reader = "int r0 = READ_ONCE(*y); smp_rmb(); int r1 = READ_ONCE(*x);";
    expect("MP+wmb+rmb", &test(&[writer, reader], "1:r0=1 /\\ 1:r1=0"), [Never; 4]);
    let writer = "WRITE_ONCE(*x, 1); smp_store_release(y, 1);";
    let reader = "int r0 = smp_load_acquire(y); int r1 = READ_ONCE(*x);";
    expect("MP+rel+acq", &test(&[writer, reader], "1:r0=1 /\\ 1:r1=0"), [Never; 4]);
    // An address dependency orders the reader on arm64 and in the LKMM.
    let writer = "WRITE_ONCE(*z, 1); smp_store_release(y, z);";
    let reader = "int *r0 = READ_ONCE(*y); int r1 = READ_ONCE(*r0);";
    let source = test(&[writer, reader], "1:r0=z /\\ 1:r1=0").replace("{\n}", "{\ny=x;\n}");
    expect("MP+rel+addr", &source, [Never; 4]);
}

#[test]
fn load_buffering_is_shown_by_promises_and_stopped_by_dependencies() {
    let plain = test(
        &["int r0 = READ_ONCE(*x); WRITE_ONCE(*y, 1);", "int r0 = READ_ONCE(*y); WRITE_ONCE(*x, 1);"],
        "0:r0=1 /\\ 1:r0=1",
    );
    expect("LB", &plain, [Never, Never, Sometimes, Sometimes]);
    let ctrl = test(
        &["int r0 = READ_ONCE(*x); if (r0) WRITE_ONCE(*y, 1);", "int r0 = READ_ONCE(*y); if (r0) WRITE_ONCE(*x, 1);"],
        "0:r0=1 /\\ 1:r0=1",
    );
    expect("LB+ctrls", &ctrl, [Never; 4]);
    let data = test(
        &["int r0 = READ_ONCE(*x); WRITE_ONCE(*y, r0);", "int r0 = READ_ONCE(*y); WRITE_ONCE(*x, r0);"],
        "0:r0=1 /\\ 1:r0=1",
    );
    expect("LB+datas (out of thin air)", &data, [Never; 4]);
}

#[test]
fn store_shapes_need_promises_on_arm64() {
    let s = test(
        &["WRITE_ONCE(*x, 2); WRITE_ONCE(*y, 1);", "int r0 = READ_ONCE(*y); WRITE_ONCE(*x, 1);"],
        "x=2 /\\ 1:r0=1",
    );
    expect("S", &s, [Never, Never, Sometimes, Sometimes]);
    let ww = test(&["WRITE_ONCE(*x, 1); WRITE_ONCE(*y, 2);", "WRITE_ONCE(*y, 1); WRITE_ONCE(*x, 2);"], "x=1 /\\ y=1");
    expect("2+2W", &ww, [Never, Never, Sometimes, Sometimes]);
}

#[test]
fn independent_reads_of_independent_writes() {
    let writers = ["WRITE_ONCE(*x, 1);", "WRITE_ONCE(*y, 1);"];
    let condition = "2:r0=1 /\\ 2:r1=0 /\\ 3:r0=1 /\\ 3:r1=0";
    let rmb = [
        writers[0],
        writers[1],
        "int r0 = READ_ONCE(*x); smp_rmb(); int r1 = READ_ONCE(*y);",
        "int r0 = READ_ONCE(*y); smp_rmb(); int r1 = READ_ONCE(*x);",
    ];
    // The LKMM allows IRIW+rmbs ("rmb is not transitive"); x86 and arm64 are multi-copy
    // atomic, as this engine is: it never shows it (an allowed outcome missed under lkmm).
    expect("IRIW+rmbs", &test(&rmb, condition), [Never; 4]);
    let plain = [
        writers[0],
        writers[1],
        "int r0 = READ_ONCE(*x); int r1 = READ_ONCE(*y);",
        "int r0 = READ_ONCE(*y); int r1 = READ_ONCE(*x);",
    ];
    expect("IRIW", &test(&plain, condition), [Never, Never, Sometimes, Sometimes]);
}

#[test]
fn spin_locks_and_rcu_order_what_they_protect() {
    let locked = test(
        &[
            "spin_lock(z); WRITE_ONCE(*x, 1); WRITE_ONCE(*y, 1); spin_unlock(z);",
            "spin_lock(z); int r0 = READ_ONCE(*y); int r1 = READ_ONCE(*x); spin_unlock(z);",
        ],
        "1:r0=1 /\\ 1:r1=0",
    );
    expect("MP in critical sections", &locked, [Never; 4]);
    let rcu = test(
        &[
            "rcu_read_lock(); int r0 = READ_ONCE(*x); int r1 = READ_ONCE(*y); rcu_read_unlock();",
            "WRITE_ONCE(*y, 1); synchronize_rcu(); WRITE_ONCE(*x, 1);",
        ],
        "0:r0=1 /\\ 0:r1=0",
    );
    expect("RCU grace period against a reader", &rcu, [Never; 4]);
    let no_gp = test(
        &[
            "rcu_read_lock(); int r0 = READ_ONCE(*x); int r1 = READ_ONCE(*y); rcu_read_unlock();",
            "WRITE_ONCE(*y, 1); WRITE_ONCE(*x, 1);",
        ],
        "0:r0=1 /\\ 0:r1=0",
    );
    expect("the same without the grace period", &no_gp, [Never, Never, Sometimes, Sometimes]);
}

#[test]
fn the_same_test_gives_the_same_run() {
    let source = test(
        &["int r0 = READ_ONCE(*x); WRITE_ONCE(*y, 1);", "int r0 = READ_ONCE(*y); WRITE_ONCE(*x, 1);"],
        "0:r0=1 /\\ 1:r0=1",
    );
    let test = parse(&source).unwrap();
    let first = check(&test, Arm64, &Limits::default());
    let second = check(&test, Arm64, &Limits::default());
    assert_eq!((first.observed, first.states), (second.observed, second.states));
}

#[test]
fn the_corpus_sample_shows_nothing_its_verdicts_forbid() {
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/litmus");
    let mut agree = 0;
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "litmus") {
            continue;
        }
        let test = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for model in [X86, Arm64, Lkmm] {
            let run = check(&test, model, &Limits::default());
            assert_ne!(run.status, Status::ForbiddenShown, "{} under {model}", path.display());
            agree += usize::from(run.status == Status::Agree && model == Lkmm);
        }
    }
    assert!(agree >= 5, "{agree} of the sample agree under lkmm");
}

#[test]
fn a_test_with_too_many_threads_is_unsupported_not_a_panic() {
    let bodies: Vec<&str> = (0..40).map(|_| "WRITE_ONCE(*x, 1);").collect();
    let test = parse(&test(&bodies, "x=1")).unwrap();
    let run = check(&test, Lkmm, &Limits::default());
    assert!(
        matches!(&run.status, Status::Unsupported(why) if why.contains("more than 16 threads")),
        "{:?}",
        run.status
    );
}
