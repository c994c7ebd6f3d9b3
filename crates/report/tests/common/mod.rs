//! Helpers the integration tests share: a scenario's system on 6.18 and the events every
//! interleaving can reach.

use mmcheck_explorer::{Model, StepEffects};
use mmcheck_model::{KernelConfig, KernelVersion, Patch, System, ViolationKind};
use std::collections::HashSet;

/// The scenario on 6.18 with `overrides` applied.
pub fn system(source: &str, overrides: &[(Patch, bool)]) -> System {
    let scenario = mmcheck_scenario::parse(source).unwrap_or_else(|d| panic!("scenario does not parse: {}", d.message));
    let mut kernel = KernelConfig::for_version(KernelVersion::new(6, 18));
    for &(patch, on) in overrides {
        kernel.set(patch, on);
    }
    System::new(scenario.system(&[]).expect("the scenario builds"), kernel)
}

/// Every reachable step's event details under `label`, from a depth-first search of every
/// interleaving (no reduction); panics on any violation.
pub fn events(system: &System, label: &str) -> HashSet<String> {
    events_allowing(system, label, &[])
}

/// [`events`], where a step violating an oracle of one of the `allowed` kinds ends its
/// interleaving instead (the scenario's outcome may be such a violation, as a signal).
pub fn events_allowing(system: &System, label: &str, allowed: &[ViolationKind]) -> HashSet<String> {
    let mut details = HashSet::new();
    let mut visited = HashSet::new();
    let mut stack = vec![system.initial_state()];
    let mut enabled = Vec::new();
    while let Some(state) = stack.pop() {
        let mut bytes = Vec::new();
        system.encode(&state, &mut bytes);
        if !visited.insert(bytes) {
            continue;
        }
        enabled.clear();
        system.enabled_threads(&state, &mut enabled);
        if enabled.is_empty() {
            assert!(system.check_final(&state).is_none(), "a final state violates an oracle");
        }
        for &thread in &enabled {
            let mut next = state.clone();
            let mut effects = StepEffects::new(true);
            system.step(&mut next, thread, &mut effects);
            let labelled = effects.events.iter().filter(|e| e.label == label);
            details.extend(labelled.map(|e| e.detail.clone()));
            if let Some(violation) = effects.violation {
                assert!(allowed.contains(&violation.kind), "a step violates an oracle: {violation}");
                continue;
            }
            stack.push(next);
        }
    }
    details
}
