//! How far could persistent sets shrink the state space of a scenario? A measurement, not a
//! search mode: it counts the states of a plain depth-first search twice, once expanding every
//! enabled thread and once with *ideal* persistent sets for the case the explorer cannot know:
//! a thread's next step is explored alone when it is independent of every step the other
//! threads can still take. When the other threads' run is deterministic (at most one of them is
//! enabled at a time while the chosen thread waits), that run is computed by stepping them
//! ahead (a lookahead the real explorer cannot afford per state), so the set is exact. Cycle
//! proviso as in the explorer: a singleton that closes a cycle on the stack is not used.
//!
//! Usage: cargo run --release -p mmcheck-report --example ideal_persistent_sets -- \
//!            [SCENARIO] [KERNEL] [PAGES...]
//! (defaults: madv-free-dio-anchor 6.18 1 2 3 4). The README quotes its output.

use mmcheck_explorer::{Footprint, Model, StepEffects, ThreadId};
use mmcheck_model::state::Kernel;
use mmcheck_model::{KernelConfig, KernelVersion, System};
use rustc_hash::FxHashSet;

fn step(system: &System, state: &Kernel, thread: ThreadId) -> (Kernel, Footprint) {
    let mut next = state.clone();
    let mut effects = StepEffects::new(false);
    system.step(&mut next, thread.into(), &mut effects);
    effects.footprint.normalize();
    (next, effects.footprint)
}

fn fingerprint(system: &System, state: &Kernel) -> u128 {
    let mut bytes = Vec::new();
    system.encode(state, &mut bytes);
    mmcheck_explorer::fingerprint(&bytes)
}

/// The footprints of the steps every thread but `waiting` takes from `state` while `waiting`
/// does not move, if that run is deterministic (never two of them enabled at once).
fn others_future(system: &System, state: &Kernel, waiting: ThreadId) -> Option<Vec<Footprint>> {
    let mut state = state.clone();
    let mut footprints = Vec::new();
    let mut enabled = Vec::new();
    loop {
        enabled.clear();
        system.enabled_threads(&state, &mut enabled);
        enabled.retain(|&thread| thread != waiting);
        match enabled[..] {
            [] => return Some(footprints),
            [only] => {
                let (next, footprint) = step(system, &state, only);
                footprints.push(footprint);
                state = next;
            }
            _ => return None,
        }
    }
}

/// The successors to explore from `state`: one thread's when its step is independent of
/// everything the others can still do, otherwise every enabled thread's.
fn expand(system: &System, state: &Kernel, ideal: bool, on_stack: &FxHashSet<u128>) -> Vec<Kernel> {
    let mut enabled = Vec::new();
    system.enabled_threads(state, &mut enabled);
    let successors: Vec<(ThreadId, Kernel, Footprint)> = enabled
        .iter()
        .map(|&thread| {
            let (next, footprint) = step(system, state, thread);
            (thread, next, footprint)
        })
        .collect();
    if ideal && successors.len() > 1 {
        for (thread, next, footprint) in &successors {
            let independent = footprint.is_local()
                || others_future(system, state, *thread)
                    .is_some_and(|future| future.iter().all(|other| !other.conflicts_with(footprint)));
            if independent && !on_stack.contains(&fingerprint(system, next)) {
                return vec![next.clone()];
            }
        }
    }
    successors.into_iter().map(|(_, next, _)| next).collect()
}

/// States a depth-first search with visited-state hashing enters, and how many of them are
/// final (no thread enabled).
fn count_states(system: &System, ideal: bool) -> (usize, usize) {
    let mut visited = FxHashSet::default();
    let mut on_stack = FxHashSet::default();
    let mut stack: Vec<(u128, Vec<Kernel>)> = Vec::new();
    let mut pending = Some(system.initial_state());
    let mut finals = 0;
    loop {
        if let Some(state) = pending.take() {
            let fingerprint = fingerprint(system, &state);
            if visited.insert(fingerprint) {
                let successors = expand(system, &state, ideal, &on_stack);
                finals += usize::from(successors.is_empty());
                on_stack.insert(fingerprint);
                stack.push((fingerprint, successors));
            }
        }
        let Some((fingerprint, successors)) = stack.last_mut() else {
            return (visited.len(), finals);
        };
        match successors.pop() {
            Some(next) => pending = Some(next),
            None => {
                on_stack.remove(fingerprint);
                stack.pop();
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("madv-free-dio-anchor", String::as_str);
    let kernel = args.get(1).map_or("6.18", String::as_str);
    let pages: Vec<i64> = match args.get(2..) {
        Some(rest) if !rest.is_empty() => rest.iter().map(|p| p.parse().expect("pages: a number")).collect(),
        _ => vec![1, 2, 3, 4],
    };
    let source = mmcheck_scenario::builtin(name).expect("a built-in scenario");
    let scenario = mmcheck_scenario::parse(source).expect("built-in scenarios parse");
    let version = KernelVersion::parse(kernel).expect("a kernel version such as 6.18");
    println!("{name} on {kernel}: states entered");
    println!(
        "{:>6} {:>14} {:>22} {:>7} {:>13}",
        "pages", "every thread", "ideal persistent sets", "ratio", "final states"
    );
    for pages in pages {
        let spec = scenario.system(&[("pages".to_string(), pages)]).expect("the scenario has `pages`");
        let system = System::new(spec, KernelConfig::for_version(version));
        let (full, finals) = count_states(&system, false);
        let (ideal, _) = count_states(&system, true);
        println!("{pages:>6} {full:>14} {ideal:>22} {:>7.2} {finals:>13}", full as f64 / ideal as f64);
    }
}
