//! Helpers the integration tests share: a scenario's system on 6.18 and the events every
//! interleaving can reach. Each test crate uses some of them.
#![allow(dead_code)]

use mmcheck_explorer::{Model, StepEffects};
use mmcheck_model::access::Effects;
use mmcheck_model::state::Kernel;
use mmcheck_model::{KernelConfig, KernelVersion, Patch, System, ViolationKind};
use std::collections::{HashMap, HashSet};

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
    events_by_label(system, &[]).remove(label).unwrap_or_default()
}

/// Every reachable step's event details by label, from one search of every interleaving (for
/// a test that asks about several labels of one scenario). A step violating an oracle of one
/// of the `allowed` kinds ends its interleaving (the scenario's outcome may be such a
/// violation, as a signal); any other violation panics.
pub fn events_by_label(system: &System, allowed: &[ViolationKind]) -> HashMap<&'static str, HashSet<String>> {
    let mut details: HashMap<&'static str, HashSet<String>> = HashMap::new();
    let encoded = |state: &Kernel| {
        let mut bytes = Vec::new();
        system.encode(state, &mut bytes);
        bytes
    };
    let on_state = |state: &Kernel, final_state: bool| {
        assert!(!final_state || system.check_final(state).is_none(), "a final state violates an oracle");
    };
    walk(system, encoded, on_state, |effects| {
        for event in &effects.events {
            details.entry(event.label).or_default().insert(event.detail.clone());
        }
        let violation = effects.violation.as_ref();
        assert!(
            violation.is_none_or(|v| allowed.contains(&v.kind)),
            "a step violates an oracle: {}",
            violation.unwrap()
        );
        violation.is_none()
    });
    details
}

/// Depth-first search of every interleaving (no reduction), states told apart by `key`.
/// `on_state` sees each state entered and whether it is final (no thread enabled); `on_step`
/// sees each step's effects (events recorded) and says whether to go on from its successor.
pub fn walk(
    system: &System,
    key: impl Fn(&Kernel) -> Vec<u8>,
    mut on_state: impl FnMut(&Kernel, bool),
    mut on_step: impl FnMut(&Effects) -> bool,
) {
    let mut visited = HashSet::new();
    let mut stack = vec![system.initial_state()];
    let mut enabled = Vec::new();
    while let Some(state) = stack.pop() {
        if !visited.insert(key(&state)) {
            continue;
        }
        enabled.clear();
        system.enabled_threads(&state, &mut enabled);
        on_state(&state, enabled.is_empty());
        for &thread in &enabled {
            let mut next = state.clone();
            let mut effects = StepEffects::new(true);
            system.step(&mut next, thread.into(), &mut effects);
            if on_step(&effects) {
                stack.push(next);
            }
        }
    }
}
