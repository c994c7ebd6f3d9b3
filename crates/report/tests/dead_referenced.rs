//! The canonical encoding forgets PG_referenced where no thread can read it any more (the
//! dead-variable reduction): states that differ only in a dead bit are one state, and a bit
//! some thread may still read keeps states apart.

mod common;

use mmcheck_explorer::{Model, StepEffects};
use mmcheck_model::folio::{FolioId, PageFlag};
use mmcheck_model::state::Kernel;
use mmcheck_model::{KernelConfig, KernelVersion, System};
use std::collections::HashSet;

/// The state once thread 0 has run alone to the end of its program's first `steps` steps.
fn run(system: &System, thread: u32, steps: usize) -> Kernel {
    let mut state = system.initial_state();
    for _ in 0..steps {
        let mut effects = StepEffects::new(false);
        system.step(&mut state, thread.into(), &mut effects);
        assert!(effects.violation.is_none());
    }
    state
}

fn encoding(system: &System, state: &Kernel) -> Vec<u8> {
    let mut bytes = Vec::new();
    system.encode(state, &mut bytes);
    bytes
}

/// The buffer's folio, with PG_referenced flipped.
fn flipped(state: &Kernel, folio: FolioId) -> Kernel {
    let mut other = state.clone();
    other.folio_mut(folio).flags ^= PageFlag::Referenced.mask();
    other
}

/// A process that faults a page in and then waits; `later` is the rest of the scenario.
fn scenario(later: &str) -> String {
    format!(
        "scenario dead-referenced \"PG_referenced liveness\"\n\
         process p {{\n  buf = mmap(4K, read|write, private|anonymous)\n  store(buf, 4K, 0x01)\n  \
         signal stored\n  wait go\n  assert load(buf, 4K) == 0x01\n}}\n{later}"
    )
}

/// Steps until the store has faulted folio 1 in and the process signalled.
fn stored(system: &System) -> Kernel {
    let state = run(system, 0, 12);
    assert!(state.folio(1).allocated, "the store faulted folio 1 in");
    assert_eq!(state.events & 1, 1, "the process signalled");
    state
}

#[test]
fn a_bit_nobody_reads_again_is_forgotten() {
    let system = common::system(&scenario("kthread k {\n  wait stored\n  signal go\n}\n"), &[]);
    let state = stored(&system);
    assert_eq!(encoding(&system, &state), encoding(&system, &flipped(&state, 1)));
    // The process's exit still zaps: it may mark a young file PTE's folio accessed, never an
    // anonymous one.
    let readers = system.referenced_readers(&state).expect("no thread reads every folio's bit");
    assert!(readers.file_folios && !readers.may_read(1, state.folio(1)), "{readers:?}");
}

#[test]
fn a_pending_reclaim_keeps_the_bit() {
    let system = common::system(&scenario("kthread k {\n  wait stored\n  reclaim(all)\n  signal go\n}\n"), &[]);
    let state = stored(&system);
    assert_ne!(encoding(&system, &state), encoding(&system, &flipped(&state, 1)));
    assert_eq!(system.referenced_readers(&state), None);
}

#[test]
fn a_pending_kpageflags_read_keeps_the_bit() {
    let system = common::system(
        &scenario("kthread k {\n  wait stored\n  signal go\n}\nprocess q {\n  wait go\n}\n")
            .replace("assert load(buf, 4K) == 0x01", "f = kpageflags(buf)"),
        &[],
    );
    let state = stored(&system);
    assert_ne!(encoding(&system, &state), encoding(&system, &flipped(&state, 1)));
}

/// Reclaim reads PG_referenced of a folio once, in folio_check_references(): once past it,
/// the folio's bit is dead even while reclaim goes on with the rest of its list.
#[test]
fn reclaim_forgets_the_folios_it_has_checked() {
    let system = common::system(&scenario("kthread k {\n  wait stored\n  reclaim(all)\n  signal go\n}\n"), &[]);
    let mut state = stored(&system);
    let mut checked = false;
    for _ in 0..40 {
        let mut effects = StepEffects::new(true);
        system.step(&mut state, 1.into(), &mut effects);
        if effects.events.iter().any(|e| e.label == "references") {
            checked = true;
            break;
        }
    }
    assert!(checked, "reclaim reached folio_check_references()");
    let readers = system.referenced_readers(&state).expect("reclaim is past its only folio");
    assert!(readers.folios.is_empty() && !readers.may_read(1, state.folio(1)), "{readers:?}");
    assert_eq!(encoding(&system, &state), encoding(&system, &flipped(&state, 1)));
}

/// A file folio mapped by a young PTE stays live while an exit is pending:
/// zap_present_folio_ptes() marks it accessed (folio_mark_accessed() reads PG_referenced).
#[test]
fn a_pending_zap_keeps_a_file_folios_bit() {
    let source = "scenario zap-file \"PG_referenced of a mapped file page\"\n\
                  file disk size 4K fill 0x79\n\
                  process p {\n  map = mmap(4K, read, private, disk)\n  assert load(map, 4K) == 0x79\n  \
                  signal stored\n  wait go\n}\nkthread k {\n  wait stored\n  signal go\n}\n";
    let system = common::system(source, &[]);
    let mut state = system.initial_state();
    while state.events & 1 == 0 {
        let mut effects = StepEffects::new(false);
        system.step(&mut state, 0.into(), &mut effects);
        assert!(effects.violation.is_none());
    }
    let cached = state.files[0].cached(0).expect("the read fault cached the page");
    assert!(!state.folio(cached).test(PageFlag::Anon));
    let readers = system.referenced_readers(&state).expect("no thread reads every folio's bit");
    assert!(readers.may_read(cached, state.folio(cached)), "{readers:?}");
    assert_ne!(encoding(&system, &state), encoding(&system, &flipped(&state, cached)));
}

/// An O_DIRECT read's GUP may mark accessed (follow_page_pte(), FOLL_TOUCH) whatever is
/// mapped at the pages it has still to pin, and nothing once they are all pinned.
#[test]
fn an_o_direct_read_reads_the_bits_of_the_pages_it_has_yet_to_pin() {
    let source = "scenario dio-gup \"PG_referenced under an O_DIRECT read's GUP\"\n\
                  file disk size 8K fill 0x79\n\
                  process p {\n  buf = mmap(8K, read|write, private|anonymous)\n  store(buf, 8K, 0x01)\n  \
                  thread io {\n    n = pread(disk, buf, 8K, 0, direct)\n  }\n}\n";
    let system = common::system(source, &[]);
    // p runs until it has spawned io; then io alone, step by step.
    let mut state = system.initial_state();
    while state.threads[1].status == mmcheck_model::thread::ThreadStatus::NotStarted {
        let mut effects = StepEffects::new(false);
        system.step(&mut state, 0.into(), &mut effects);
    }
    let buffer = state.threads[1].registers[0] as u64;
    let folios: Vec<FolioId> = (0..2u64)
        .map(|page| {
            let pte = state.mms[0].pte((buffer >> 12) + page);
            mmcheck_model::folio::pfn_folio(pte.present().expect("stored to").pfn)
        })
        .collect();
    let mut seen_partial = false;
    loop {
        let Some(readers) = system.referenced_readers(&state) else {
            assert!(state.threads[1].stack.is_empty(), "only a read yet to start may GUP anything");
            let mut effects = StepEffects::new(false);
            system.step(&mut state, 1.into(), &mut effects);
            continue;
        };
        let live: Vec<bool> = folios.iter().map(|&f| readers.may_read(f, state.folio(f))).collect();
        if state.threads[1].stack.iter().any(|f| matches!(f, mmcheck_model::thread::Frame::GupFast(_))) {
            // The pages the fast path got are not the slow path's.
            let pinned = state.threads[1].pages.len();
            assert_eq!(live, [pinned == 0, pinned <= 1], "{readers:?}");
            seen_partial |= pinned == 1;
        }
        let mut effects = StepEffects::new(true);
        system.step(&mut state, 1.into(), &mut effects);
        if effects.events.iter().any(|e| e.label == "dma") {
            let readers = system.referenced_readers(&state).expect("only the read and the exit are left");
            assert!(readers.indexes.is_empty(), "every page pinned: {readers:?}");
            assert!(seen_partial, "the fast path got one page, then the other");
            return;
        }
    }
}

/// The canonical encodings of every state reachable in any interleaving, the violations
/// raised, and the states entered, with states told apart by their canonical encoding
/// (`merge`, as the explorer does) or by their exact contents.
fn reachable(system: &System, merge: bool) -> (HashSet<Vec<u8>>, HashSet<String>, usize) {
    let (mut canonical, mut violations, mut entered) = (HashSet::new(), HashSet::new(), 0);
    let key = |state: &Kernel| match merge {
        true => encoding(system, state),
        false => mmcheck_model::shared::hash128(state).to_le_bytes().to_vec(),
    };
    let on_state = |state: &Kernel, final_state: bool| {
        entered += 1;
        canonical.insert(encoding(system, state));
        if final_state {
            violations.extend(system.check_final(state).map(|v| v.kind.name().to_string()));
        }
    };
    let mut step_violations = HashSet::new();
    common::walk(system, key, on_state, |effects| {
        let violation = effects.violation.as_ref().map(|v| v.kind.name().to_string());
        step_violations.extend(violation.clone());
        violation.is_none()
    });
    violations.extend(step_violations);
    (canonical, violations, entered)
}

/// Merging states that differ only in dead PG_referenced bits loses nothing: exploring every
/// interleaving with states told apart by their exact contents reaches the same canonical
/// states and the same violations, on reclaim races with and without the bug.
#[test]
fn merging_dead_bits_reaches_every_canonical_state() {
    let cases = [
        ("madv-free-dio-anchor", 6, 18, 2),
        ("madv-free-dio-anchor", 5, 16, 2),
        ("madv-free-dio-window", 6, 18, 1),
        ("fork-reclaim", 6, 18, 0),
        ("buffered-read-reclaim", 6, 18, 0),
    ];
    for (name, major, minor, pages) in cases {
        let source = mmcheck_scenario::builtin(name).expect("a built-in scenario");
        let scenario = mmcheck_scenario::parse(source).expect("built-in scenarios parse");
        let overrides: Vec<(String, i64)> = match pages {
            0 => Vec::new(),
            pages => vec![("pages".to_string(), pages)],
        };
        let kernel = KernelConfig::for_version(KernelVersion::new(major, minor));
        let system = System::new(scenario.system(&overrides).expect("the scenario builds"), kernel);
        let (merged, merged_violations, merged_states) = reachable(&system, true);
        let (exact, exact_violations, exact_states) = reachable(&system, false);
        assert!(
            merged == exact,
            "{name} on {major}.{minor}: the canonical states reached differ: {} merged, {} exact, {} only merged, {} only exact",
            merged.len(),
            exact.len(),
            merged.difference(&exact).count(),
            exact.difference(&merged).count()
        );
        assert_eq!(merged_violations, exact_violations, "{name} on {major}.{minor}");
        assert!(merged.len() > 100, "{name}: a real state space");
        let buggy = (major, minor) == (5, 16);
        assert_eq!(merged_violations.contains("data-loss"), buggy, "{name} on {major}.{minor}: {merged_violations:?}");
        if name == "madv-free-dio-anchor" {
            assert!(merged_states < exact_states, "{name}: some states differ only in a dead bit");
        }
    }
}
