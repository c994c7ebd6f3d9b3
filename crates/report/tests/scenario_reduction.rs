//! Reduction cross-check on real scenarios: reduced and unreduced exhaustive search agree on verdicts and final states.

// These belong with crates/explorer/tests/reduction.rs, but the explorer crate cannot see the
// model or the scenario language without dev-dependencies in its Cargo.toml; the report crate
// depends on all three.

use mmcheck_explorer::{explore_bounded, explore_exhaustive, replay, Options, Outcome, Verdict};
use mmcheck_model::{KernelConfig, KernelVersion, Patch, System, Violation, ViolationKind};
use std::collections::BTreeSet;

const DONTNEED_RACE: &str = r#"
scenario dontneed-race "MADV_DONTNEED races stores of another thread of the process"
process p {
  buf = mmap(8K, read|write, private|anonymous)
  store(buf, 8K, 0x01)
  thread zapper {
    r = madvise(buf, 8K, dontneed)
    assert r == 0
  }
  thread writer {
    store(buf + 4K, 4K, 0x02)
    store(buf, 1, 0x03)
  }
}
"#;

/// The same race where the writer checks its own store: the zap can come between.
const DONTNEED_LOAD: &str = r#"
scenario dontneed-load "MADV_DONTNEED between a store and a load of another thread"
process p {
  buf = mmap(4K, read|write, private|anonymous)
  thread zapper {
    madvise(buf, 4K, dontneed)
  }
  thread writer {
    store(buf, 4K, 0x02)
    assert load(buf, 4K) == 0x02
  }
}
"#;

fn madv_free_dio() -> &'static str {
    mmcheck_scenario::builtin("madv-free-dio").expect("madv-free-dio is built in")
}

fn system(source: &str, kernel: KernelConfig, overrides: &[(String, i64)]) -> System {
    let scenario = mmcheck_scenario::parse(source).unwrap_or_else(|d| panic!("scenario does not parse: {}", d.message));
    System::new(scenario.system(overrides).expect("the scenario builds"), kernel)
}

fn kernel(major: u8, minor: u8) -> KernelConfig {
    KernelConfig::for_version(KernelVersion::new(major, minor))
}

fn explore(system: &System, reduction: bool) -> Outcome<Violation> {
    explore_exhaustive(system, Options { reduction, collect_final_states: true, ..Options::default() })
}

/// Both searches complete, verify, and reach the same final states.
fn assert_same_final_states(system: &System) -> (Outcome<Violation>, Outcome<Violation>) {
    let reduced = explore(system, true);
    let unreduced = explore(system, false);
    assert_eq!(reduced.verdict, Verdict::Verified, "reduced: {:?}", reduced.violation);
    assert_eq!(unreduced.verdict, Verdict::Verified, "unreduced: {:?}", unreduced.violation);
    assert!(!reduced.final_states.is_empty());
    let reduced_set: BTreeSet<u128> = reduced.final_states.iter().copied().collect();
    let unreduced_set: BTreeSet<u128> = unreduced.final_states.iter().copied().collect();
    let missing = unreduced_set.difference(&reduced_set).count();
    let extra = reduced_set.difference(&unreduced_set).count();
    assert_eq!(
        (missing, extra),
        (0, 0),
        "reduction lost {missing} and added {extra} of {} final states",
        unreduced_set.len()
    );
    assert!(reduced.stats.states <= unreduced.stats.states);
    (reduced, unreduced)
}

/// Both searches find a violation of `kind`, and each schedule replays to its violation.
fn assert_same_violation(system: &System, kind: ViolationKind) {
    for reduction in [true, false] {
        let outcome = explore(system, reduction);
        assert_eq!(outcome.verdict, Verdict::Violation, "reduction {reduction}");
        let (violation, schedule) = outcome.violation.expect("a violation has a schedule");
        assert_eq!(violation.kind, kind, "reduction {reduction}: {violation}");
        let replayed = replay(system, &schedule).expect("the schedule fits the scenario");
        assert_eq!(replayed.violation.as_ref(), Some(&violation), "reduction {reduction}: replay differs");
    }
}

#[test]
fn madv_free_dio_on_6_18_same_final_states() {
    let (reduced, _) = assert_same_final_states(&system(madv_free_dio(), kernel(6, 18), &[]));
    assert!(reduced.final_states.len() > 1, "the race has several outcomes");
}

#[test]
fn madv_free_dio_on_5_18_same_final_states() {
    assert_same_final_states(&system(madv_free_dio(), kernel(5, 18), &[]));
}

#[test]
fn madv_free_dio_two_pages_on_6_18_same_final_states() {
    assert_same_final_states(&system(madv_free_dio(), kernel(6, 18), &[("pages".into(), 2)]));
}

#[test]
fn madv_free_dio_on_5_16_same_violation() {
    assert_same_violation(&system(madv_free_dio(), kernel(5, 16), &[]), ViolationKind::DataLoss);
}

#[test]
fn madv_free_dio_on_5_17_same_violation() {
    assert_same_violation(&system(madv_free_dio(), kernel(5, 17), &[]), ViolationKind::DataLoss);
}

#[test]
fn madv_free_dio_on_6_18_with_the_fix_reverted_same_violation() {
    let mut config = kernel(6, 18);
    config.set(Patch::MadvFreeGupRace, false);
    assert_same_violation(&system(madv_free_dio(), config, &[]), ViolationKind::DataLoss);
}

#[test]
fn dontneed_racing_stores_same_final_states() {
    for version in [kernel(6, 18), kernel(5, 16)] {
        let (reduced, _) = assert_same_final_states(&system(DONTNEED_RACE, version, &[]));
        assert!(reduced.final_states.len() > 1, "the zap and the stores race");
    }
}

#[test]
fn dontneed_between_store_and_load_same_violation() {
    assert_same_violation(&system(DONTNEED_LOAD, kernel(6, 18), &[]), ViolationKind::DataLoss);
}

fn bounded(system: &System, bound: u32) -> Outcome<Violation> {
    explore_bounded(system, Options { collect_final_states: true, ..Options::default() }, bound)
}

#[test]
fn bound_zero_explores_no_more_than_bound_one() {
    let system = system(madv_free_dio(), kernel(6, 18), &[]);
    let zero = bounded(&system, 0);
    let one = bounded(&system, 1);
    assert_eq!(zero.verdict, Verdict::VerifiedBounded { preemptions_max: 0 });
    assert_eq!(one.verdict, Verdict::VerifiedBounded { preemptions_max: 1 });
    assert!(zero.stats.states <= one.stats.states, "{} > {}", zero.stats.states, one.stats.states);
    assert!(zero.stats.states > 0);
    // Every final state a bounded search reaches is reachable, and more preemptions reach more.
    let all: BTreeSet<u128> = explore(&system, false).final_states.into_iter().collect();
    let zero_set: BTreeSet<u128> = zero.final_states.into_iter().collect();
    let one_set: BTreeSet<u128> = one.final_states.into_iter().collect();
    assert!(!zero_set.is_empty());
    assert!(zero_set.is_subset(&one_set));
    assert!(one_set.is_subset(&all));
}

#[test]
fn bound_one_finds_the_5_16_violation() {
    let system = system(madv_free_dio(), kernel(5, 16), &[]);
    let zero = bounded(&system, 0);
    assert_eq!(zero.verdict, Verdict::VerifiedBounded { preemptions_max: 0 }, "the race needs a preemption");
    let one = bounded(&system, 1);
    assert_eq!(one.verdict, Verdict::Violation);
    let (violation, schedule) = one.violation.expect("a violation has a schedule");
    assert_eq!(violation.kind, ViolationKind::DataLoss, "{violation}");
    assert_eq!(replay(&system, &schedule).expect("fits").violation, Some(violation));
}

/// The bounded search takes a local step of the running thread alone (no preemption point
/// before it): with and without that reduction, bound 1 and bound 2 reach the same final
/// states, and a bound-1 search still finds the 5.16 violation.
#[test]
fn bounded_search_with_and_without_local_steps_agree() {
    let window = mmcheck_scenario::builtin("madv-free-dio-window").expect("built in");
    let pages = vec![("pages".to_string(), 2)];
    for bound in [1, 2] {
        let system = system(window, kernel(6, 18), &pages);
        let run = |reduction| {
            explore_bounded(&system, Options { reduction, collect_final_states: true, ..Options::default() }, bound)
        };
        let (reduced, full) = (run(true), run(false));
        assert_eq!(reduced.verdict, Verdict::VerifiedBounded { preemptions_max: bound });
        assert_eq!(full.verdict, reduced.verdict);
        assert_eq!(reduced.final_states, full.final_states, "bound {bound}: the reduction lost or added final states");
        assert!(reduced.stats.states <= full.stats.states);
    }
    let old = system(window, kernel(5, 16), &pages);
    let found = explore_bounded(&old, Options::default(), 1);
    assert_eq!(found.verdict, Verdict::Violation);
    assert_eq!(found.violation.expect("a violation").0.kind, ViolationKind::DataLoss);
}

fn builtin(name: &str) -> &'static str {
    mmcheck_scenario::builtin(name).unwrap_or_else(|| panic!("{name} is built in"))
}

#[test]
fn uffd_move_swapcache_race_same_final_states_when_fixed() {
    let (reduced, _) = assert_same_final_states(&system(builtin("uffd-move-swapcache-race"), kernel(6, 16), &[]));
    assert!(reduced.final_states.len() > 1, "the race has several outcomes");
}

#[test]
fn uffd_move_swapcache_race_same_violation_on_6_15() {
    assert_same_violation(&system(builtin("uffd-move-swapcache-race"), kernel(6, 15), &[]), ViolationKind::KernelBug);
}
