//! Partial-order reduction cross-check, replay and preemption bounding on a tiny hand-written counter model.

use mmcheck_explorer::{
    explore_bounded, explore_exhaustive, explore_pct, explore_random, fingerprint, replay, Choice, Limit, Limits,
    Model, Options, Outcome, SplitMix64, StepEffects, ThreadId, Verdict,
};
use std::collections::BTreeSet;

/// One instruction of a thread of the counter model.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `local = shared[var]`.
    Load(usize),
    /// `shared[var] = local + 1`: with `Load`, a non-atomic increment.
    StoreIncrement(usize),
    /// `shared[var] += 1` in one step.
    AtomicIncrement(usize),
    /// `local += 10`: touches nothing shared (an empty footprint).
    Local,
    /// Records `shared[var]` in the thread's observations.
    Observe(usize),
    /// A step violation unless `shared[var] == value`.
    Assert(usize, i64),
    /// Blocks until `shared[var] >= value`.
    WaitAtLeast(usize, i64),
    /// Busy-waits until `shared[var] >= value`: a step that finds it lower leaves the state
    /// as it was (a retry loop, a cycle in the state graph).
    SpinUntil(usize, i64),
    /// `local = outcome` for one of `n` outcomes: a choice that touches nothing shared.
    Pick(u32),
    /// `local = outcome` for an outcome in `0..=shared[var]`: a step whose number of outcomes
    /// depends on what it reads (as a weak load's does on the stores it may read).
    LoadUpTo(usize),
}

/// Threads running straight-line programs over shared counters.
struct Counters {
    programs: Vec<Vec<Op>>,
    vars: usize,
    /// Final-state oracle: `shared[var] == value`.
    final_expect: Vec<(usize, i64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    shared: Vec<i64>,
    pc: Vec<usize>,
    local: Vec<i64>,
    seen: Vec<Vec<i64>>,
}

impl Counters {
    fn new(vars: usize, programs: Vec<Vec<Op>>) -> Self {
        Counters { programs, vars, final_expect: Vec::new() }
    }

    fn expecting(mut self, var: usize, value: i64) -> Self {
        self.final_expect.push((var, value));
        self
    }

    fn op(&self, state: &State, thread: usize) -> Option<Op> {
        self.programs[thread].get(state.pc[thread]).copied()
    }
}

impl Model for Counters {
    type State = State;
    type Event = String;
    type Violation = String;

    fn initial_state(&self) -> State {
        let threads = self.programs.len();
        State { shared: vec![0; self.vars], pc: vec![0; threads], local: vec![0; threads], seen: vec![vec![]; threads] }
    }

    fn enabled_threads(&self, state: &State, out: &mut Vec<ThreadId>) {
        for thread in 0..self.programs.len() {
            match self.op(state, thread) {
                None => {}
                Some(Op::WaitAtLeast(var, value)) if state.shared[var] < value => {}
                Some(_) => out.push(thread as ThreadId),
            }
        }
    }

    fn outcomes(&self, state: &State, thread: ThreadId) -> u32 {
        match self.op(state, thread as usize) {
            Some(Op::Pick(n)) => n,
            Some(Op::LoadUpTo(var)) => state.shared[var].max(0) as u32 + 1,
            _ => 1,
        }
    }

    fn step(&self, state: &mut State, choice: Choice, effects: &mut StepEffects<String, String>) {
        let t = choice.thread as usize;
        assert!(choice.outcome < self.outcomes(state, choice.thread), "an outcome the step has");
        let op = self.op(state, t).expect("an enabled thread has a next instruction");
        let key = |var: usize| var as u64;
        match op {
            Op::Load(var) => {
                effects.footprint.read(key(var));
                state.local[t] = state.shared[var];
            }
            Op::StoreIncrement(var) => {
                effects.footprint.write(key(var));
                state.shared[var] = state.local[t] + 1;
            }
            Op::AtomicIncrement(var) => {
                effects.footprint.write(key(var));
                state.shared[var] += 1;
            }
            Op::Local => state.local[t] += 10,
            Op::Observe(var) => {
                effects.footprint.read(key(var));
                let value = state.shared[var];
                state.seen[t].push(value);
            }
            Op::Assert(var, value) => {
                effects.footprint.read(key(var));
                if state.shared[var] != value {
                    effects.violation = Some(format!("thread {t}: x{var} is {}, not {value}", state.shared[var]));
                }
            }
            Op::WaitAtLeast(var, _) => effects.footprint.read(key(var)),
            Op::Pick(_) => state.local[t] = choice.outcome.into(),
            Op::LoadUpTo(var) => {
                effects.footprint.read(key(var));
                state.local[t] = choice.outcome.into();
            }
            Op::SpinUntil(var, value) => {
                effects.footprint.read(key(var));
                if state.shared[var] < value {
                    return;
                }
            }
        }
        if effects.record_events {
            effects.events.push(format!("thread {t}: {op:?} outcome {}", choice.outcome));
        }
        state.pc[t] += 1;
    }

    fn encode(&self, state: &State, out: &mut Vec<u8>) {
        let mut put = |value: i64| out.extend_from_slice(&value.to_le_bytes());
        state.shared.iter().for_each(|&v| put(v));
        state.pc.iter().for_each(|&v| put(v as i64));
        state.local.iter().for_each(|&v| put(v));
        for seen in &state.seen {
            put(seen.len() as i64);
            seen.iter().for_each(|&v| put(v));
        }
    }

    fn check_final(&self, state: &State) -> Option<String> {
        let stuck: Vec<usize> = (0..self.programs.len()).filter(|&t| self.op(state, t).is_some()).collect();
        if !stuck.is_empty() {
            return Some(format!("deadlock: threads {stuck:?} cannot run"));
        }
        self.final_expect
            .iter()
            .find(|&&(var, value)| state.shared[var] != value)
            .map(|&(var, value)| format!("final x{var} is {}, expected {value}", state.shared[var]))
    }
}

fn options(reduction: bool) -> Options<'static> {
    Options { reduction, collect_final_states: true, ..Options::default() }
}

fn fingerprint_of<M: Model>(model: &M, state: &M::State) -> u128 {
    let mut bytes = Vec::new();
    model.encode(state, &mut bytes);
    fingerprint(&bytes)
}

/// Ground truth by plain enumeration of every interleaving (no hashing, no reduction): the final
/// states of the interleavings without violation, and whether any interleaving has a violation (of
/// a step or of its final state).
fn ground_truth<M: Model>(model: &M) -> (BTreeSet<u128>, bool) {
    bounded_ground_truth(model, u32::MAX)
}

/// The final states of every interleaving of a model without violations.
fn all_final_states<M: Model>(model: &M) -> BTreeSet<u128> {
    let (states, violation) = ground_truth(model);
    assert!(!violation, "ground truth is for models without violations");
    states
}

fn set(outcome: &Outcome<String>) -> BTreeSet<u128> {
    let set: BTreeSet<u128> = outcome.final_states.iter().copied().collect();
    assert_eq!(set.len(), outcome.final_states.len(), "final_states is deduplicated");
    assert!(outcome.final_states.windows(2).all(|w| w[0] < w[1]), "final_states is sorted");
    set
}

/// Runs the search with and without reduction; both must verify and reach the ground truth's final
/// states. Returns (reduced, unreduced).
fn cross_check(model: &Counters) -> (Outcome<String>, Outcome<String>) {
    let reduced = explore_exhaustive(model, options(true));
    let unreduced = explore_exhaustive(model, options(false));
    assert_eq!(reduced.verdict, Verdict::Verified, "{:?}", reduced.violation);
    assert_eq!(unreduced.verdict, Verdict::Verified, "{:?}", unreduced.violation);
    let truth = all_final_states(model);
    assert!(!truth.is_empty());
    assert_eq!(set(&unreduced), truth, "the unreduced search reaches every final state");
    assert_eq!(set(&reduced), truth, "the reduced search reaches every final state");
    assert!(
        reduced.stats.states <= unreduced.stats.states,
        "reduction visited more states: {} > {}",
        reduced.stats.states,
        unreduced.stats.states
    );
    (reduced, unreduced)
}

fn racy_increments() -> Counters {
    use Op::*;
    Counters::new(
        2,
        vec![
            vec![Load(0), StoreIncrement(0), Local, Observe(1)],
            vec![Load(0), Local, StoreIncrement(0), AtomicIncrement(1)],
            vec![Observe(0), Local, AtomicIncrement(1), Observe(0)],
        ],
    )
}

#[test]
fn reduced_and_unreduced_reach_the_same_final_states() {
    let (reduced, _) = cross_check(&racy_increments());
    assert!(reduced.final_states.len() > 1, "the threads race: several outcomes");
}

#[test]
fn reduction_preserves_final_states_with_only_local_steps_between_races() {
    use Op::*;
    let model = Counters::new(
        1,
        vec![
            vec![Local, Local, AtomicIncrement(0), Local, Observe(0)],
            vec![Local, Observe(0), Local, AtomicIncrement(0)],
        ],
    );
    cross_check(&model);
}

#[test]
fn reduction_preserves_final_states_of_independent_threads_and_prunes() {
    use Op::*;
    // Disjoint variables: one final state, which reduction reaches with far fewer transitions.
    let model = Counters::new(
        3,
        vec![
            vec![Load(0), Local, StoreIncrement(0), Observe(0)],
            vec![Load(1), Local, StoreIncrement(1), Observe(1)],
            vec![Load(2), Local, StoreIncrement(2), Observe(2)],
        ],
    );
    let (reduced, unreduced) = cross_check(&model);
    assert_eq!(reduced.final_states.len(), 1);
    assert!(
        reduced.stats.transitions < unreduced.stats.transitions,
        "independent steps are not interleaved: {} vs {} transitions",
        reduced.stats.transitions,
        unreduced.stats.transitions
    );
}

#[test]
fn reduction_preserves_final_states_with_blocking_waits() {
    use Op::*;
    let model = Counters::new(
        2,
        vec![
            vec![AtomicIncrement(0), Load(1), StoreIncrement(1)],
            vec![WaitAtLeast(0, 1), Load(1), StoreIncrement(1), Observe(0)],
            vec![Observe(1), AtomicIncrement(0), Observe(1)],
        ],
    );
    cross_check(&model);
}

#[test]
fn lost_update_is_found_with_and_without_reduction_and_replays() {
    use Op::*;
    let model =
        Counters::new(1, vec![vec![Load(0), StoreIncrement(0)], vec![Load(0), StoreIncrement(0)]]).expecting(0, 2);
    for reduction in [true, false] {
        let outcome = explore_exhaustive(&model, options(reduction));
        assert_eq!(outcome.verdict, Verdict::Violation, "reduction {reduction}");
        let (violation, schedule) = outcome.violation.expect("a violation comes with its schedule");
        assert_eq!(violation, "final x0 is 1, expected 2");
        let replayed = replay(&model, &schedule).expect("the schedule fits the model");
        assert_eq!(replayed.violation.as_deref(), Some(violation.as_str()), "replay ends in the same violation");
        assert_eq!(replayed.steps.len(), schedule.len());
        assert_eq!(replayed.state.shared, vec![1]);
        let choices: Vec<Choice> = replayed.steps.iter().map(|(choice, _)| *choice).collect();
        assert_eq!(choices, schedule);
        assert!(replayed.steps.iter().all(|(_, events)| events.len() == 1), "replay records events");
        // Both threads loaded 0 before either stored: the schedule interleaves them.
        assert_eq!(schedule.len(), 4);
        assert_ne!(schedule[0], schedule[1]);
    }
}

#[test]
fn step_violation_is_found_and_replays_to_the_same_step() {
    use Op::*;
    let model = Counters::new(
        2,
        vec![vec![Local, AtomicIncrement(1), AtomicIncrement(0)], vec![Observe(1), Assert(0, 0), Local]],
    );
    for reduction in [true, false] {
        let outcome = explore_exhaustive(&model, options(reduction));
        assert_eq!(outcome.verdict, Verdict::Violation);
        let (violation, schedule) = outcome.violation.expect("a violation");
        assert_eq!(violation, "thread 1: x0 is 1, not 0");
        assert_eq!(schedule.last(), Some(&Choice::new(1, 0)), "the schedule ends with the violating step");
        let replayed = replay(&model, &schedule).expect("the schedule fits the model");
        assert_eq!(replayed.violation, Some(violation));
        assert_eq!(replayed.steps.len(), schedule.len());
        assert_eq!(replayed.state.pc[1], 2, "the violating step ran");
    }
}

#[test]
fn a_model_without_violation_replays_without_one() {
    let model = racy_increments();
    let schedule: Vec<Choice> = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2].map(Choice::from).to_vec();
    let replayed = replay(&model, &schedule).expect("a sequential schedule fits");
    assert_eq!(replayed.violation, None);
    // Thread 1 loads 1, adds 10 locally and stores 12.
    assert_eq!(replayed.state.shared, vec![12, 2]);
    assert_eq!(replayed.state.seen[0], vec![0]);
    assert_eq!(replayed.state.seen[2], vec![12, 12]);
}

#[test]
fn replay_rejects_a_schedule_that_does_not_fit() {
    use Op::*;
    let model = Counters::new(1, vec![vec![WaitAtLeast(0, 1)], vec![AtomicIncrement(0)]]);
    let error = replay(&model, &[0.into()]).err().expect("thread 0 is blocked");
    assert_eq!((error.step, error.choice), (0, 0.into()));
    let error = replay(&model, &[1.into(), 1.into()]).err().expect("thread 1 has finished");
    assert_eq!((error.step, error.choice), (1, 1.into()));
    assert!(error.to_string().contains("not enabled"));
    let model = Counters::new(1, vec![vec![Op::Pick(2)]]);
    let error = replay(&model, &[Choice::new(0, 2)]).err().expect("Pick(2) has outcomes 0 and 1");
    assert!(error.to_string().contains("outcome 2"), "{error}");
}

#[test]
fn deadlock_is_a_final_violation() {
    use Op::*;
    let model = Counters::new(1, vec![vec![WaitAtLeast(0, 2)], vec![AtomicIncrement(0)]]);
    let outcome = explore_exhaustive(&model, options(true));
    assert_eq!(outcome.verdict, Verdict::Violation);
    let (violation, schedule) = outcome.violation.expect("a violation");
    assert!(violation.starts_with("deadlock"), "{violation}");
    assert_eq!(schedule, vec![Choice::new(1, 0)]);
}

#[test]
fn bounded_search_needs_a_preemption_for_a_lost_update() {
    let model =
        Counters::new(1, vec![vec![Op::Load(0), Op::StoreIncrement(0)], vec![Op::Load(0), Op::StoreIncrement(0)]])
            .expecting(0, 2);
    let zero = explore_bounded(&model, options(true), 0);
    assert_eq!(zero.verdict, Verdict::VerifiedBounded { preemptions_max: 0 }, "a lost update needs a preemption");
    let one = explore_bounded(&model, options(true), 1);
    assert_eq!(one.verdict, Verdict::Violation);
    let (violation, schedule) = one.violation.expect("a violation");
    assert_eq!(replay(&model, &schedule).expect("fits").violation, Some(violation));
}

#[test]
fn bounded_final_states_are_nested_and_reach_the_exhaustive_set() {
    let model = racy_increments();
    let exhaustive = set(&explore_exhaustive(&model, options(false)));
    let mut previous = BTreeSet::new();
    let mut previous_states = 0;
    for bound in 0..=4 {
        let outcome = explore_bounded(&model, options(true), bound);
        assert_eq!(outcome.verdict, Verdict::VerifiedBounded { preemptions_max: bound });
        assert!(outcome.stats.states >= previous_states, "bound {bound} found fewer states than bound {}", bound - 1);
        let reached = set(&outcome);
        assert!(reached.is_superset(&previous), "bound {bound} lost final states of a smaller bound");
        assert!(reached.is_subset(&exhaustive), "bound {bound} reached a state the exhaustive search did not");
        previous = reached;
        previous_states = outcome.stats.states;
    }
    let unbounded = explore_bounded(&model, options(true), 64);
    assert_eq!(set(&unbounded), exhaustive, "with enough preemptions every final state is reached");
    // A visited-set word holds a bound up to 2^24 - 1: a larger one is searched and named as that.
    let largest = explore_bounded(&model, options(true), u32::MAX);
    assert_eq!(largest.verdict, Verdict::VerifiedBounded { preemptions_max: (1 << 24) - 1 });
    assert_eq!(set(&largest), exhaustive);
}

/// Ground truth for the bounded search by plain enumeration of the schedules with at most
/// `budget` preemptions (no hashing, no reduction): the final states without violation, and
/// whether any such schedule has a violation.
fn bounded_ground_truth<M: Model>(model: &M, budget: u32) -> (BTreeSet<u128>, bool) {
    fn walk<M: Model>(
        model: &M,
        state: M::State,
        running: Option<ThreadId>,
        budget: u32,
        out: &mut BTreeSet<u128>,
        violation: &mut bool,
    ) {
        let mut enabled = Vec::new();
        model.enabled_threads(&state, &mut enabled);
        if enabled.is_empty() {
            match model.check_final(&state) {
                Some(_) => *violation = true,
                None => {
                    out.insert(fingerprint_of(model, &state));
                }
            }
            return;
        }
        let running = running.filter(|r| enabled.contains(r));
        for &thread in &enabled {
            let cost = u32::from(running.is_some_and(|r| r != thread));
            if cost > budget {
                continue;
            }
            for outcome in 0..model.outcomes(&state, thread) {
                let mut next = state.clone();
                let mut effects = StepEffects::new(false);
                model.step(&mut next, Choice::new(thread, outcome), &mut effects);
                match effects.violation {
                    Some(_) => *violation = true,
                    None => walk(model, next, Some(thread), budget - cost, out, violation),
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    let mut violation = false;
    walk(model, model.initial_state(), None, budget, &mut out, &mut violation);
    (out, violation)
}

#[test]
fn bounded_search_agrees_with_enumeration_on_random_models() {
    // Longer programs than the exhaustive cross-check's, so that runs without choices (where
    // the bounded search stores only sample points) are common.
    let mut random = SplitMix64::new(0x0062_6f75_6e64_6564);
    let (mut verified, mut violating) = (0, 0);
    for index in 0..200 {
        let mut model = random_model(&mut random);
        model.programs.truncate(2);
        for program in &mut model.programs {
            let again = program.clone();
            program.extend(again.iter().chain(&again).copied());
        }
        for budget in 0..=2 {
            let (truth, violation_reachable) = bounded_ground_truth(&model, budget);
            let outcome = explore_bounded(&model, options(true), budget);
            let context = format!("model {index}, budget {budget}: {:?}", model.programs);
            if violation_reachable {
                violating += 1;
                assert_eq!(outcome.verdict, Verdict::Violation, "{context}");
                let (violation, schedule) = outcome.violation.clone().expect("a violation has a schedule");
                assert_eq!(replay(&model, &schedule).expect("fits").violation, Some(violation), "{context}");
            } else {
                verified += 1;
                assert_eq!(outcome.verdict, Verdict::VerifiedBounded { preemptions_max: budget }, "{context}");
                assert_eq!(set(&outcome), truth, "{context}");
            }
            assert!(outcome.stats.states_stored <= outcome.stats.states, "{context}");
        }
    }
    assert!(verified > 50 && violating > 20, "both cases covered: {verified} verified, {violating} violating");
}

#[test]
fn bounded_search_ends_a_retry_loop_without_choices() {
    // Thread 0 spins on x0 first; with no preemption left it retries alone, and the state
    // repeats. Runs without choices store a state at least every few dozen steps, so the
    // search sees the repeat and ends.
    let model = Counters::new(1, vec![vec![Op::SpinUntil(0, 1)], vec![Op::AtomicIncrement(0)]]).expecting(0, 1);
    for budget in 0..=2 {
        let outcome = explore_bounded(&model, options(true), budget);
        assert_eq!(outcome.verdict, Verdict::VerifiedBounded { preemptions_max: budget });
        assert_eq!(set(&outcome), bounded_ground_truth_terminating(&model));
        assert!(outcome.stats.transitions < 200, "{} transitions", outcome.stats.transitions);
        assert!(outcome.stats.states_stored < outcome.stats.states, "the retry run is stored only sometimes");
    }
}

/// The final states of the spin model: the ones reached when the spinning thread lets the
/// other run (its only way out).
fn bounded_ground_truth_terminating(model: &Counters) -> BTreeSet<u128> {
    let mut state = model.initial_state();
    for thread in [1, 0] {
        model.step(&mut state, thread.into(), &mut StepEffects::new(false));
    }
    BTreeSet::from([fingerprint_of(model, &state)])
}

#[test]
fn a_state_limit_stops_the_search() {
    let limits = Limits { states_max: 5, ..Limits::default() };
    let outcome = explore_exhaustive(&racy_increments(), Options { limits, ..Options::default() });
    assert_eq!(outcome.verdict, Verdict::LimitReached { limit: Limit::States });
    assert_eq!(outcome.stats.states, 5);
    assert!(outcome.violation.is_none());
}

/// Small random programs over two shared counters, from a fixed seed.
fn random_model(random: &mut SplitMix64) -> Counters {
    random_model_with(random, false)
}

/// A random model; with `choices`, some steps have several outcomes (`Pick`, `LoadUpTo`).
fn random_model_with(random: &mut SplitMix64, choices: bool) -> Counters {
    let threads = 2 + random.below(2) as usize;
    let programs = (0..threads)
        .map(|_| {
            let length = 1 + random.below(if threads == 3 { 3 } else { 5 }) as usize;
            (0..length)
                .map(|_| {
                    let var = random.below(2) as usize;
                    if choices && random.below(4) == 0 {
                        return match random.below(2) {
                            0 => Op::Pick(2 + random.below(2) as u32),
                            _ => Op::LoadUpTo(var),
                        };
                    }
                    match random.below(16) {
                        0..=2 => Op::Load(var),
                        3..=5 => Op::StoreIncrement(var),
                        6..=8 => Op::AtomicIncrement(var),
                        9..=10 => Op::Local,
                        11..=13 => Op::Observe(var),
                        14 => Op::Assert(var, random.below(3) as i64),
                        _ => Op::WaitAtLeast(var, 1 + random.below(2) as i64),
                    }
                })
                .collect()
        })
        .collect();
    Counters::new(2, programs)
}

#[test]
fn reduction_agrees_with_enumeration_on_random_models() {
    let mut random = SplitMix64::new(0x006d_6d63_6865_636b);
    let (mut verified, mut violating) = (0, 0);
    for index in 0..300 {
        let model = random_model(&mut random);
        let (truth, violation_reachable) = ground_truth(&model);
        let reduced = explore_exhaustive(&model, options(true));
        let unreduced = explore_exhaustive(&model, options(false));
        let context = format!("model {index}: {:?}", model.programs);
        if violation_reachable {
            violating += 1;
            assert_eq!(reduced.verdict, Verdict::Violation, "{context}");
            assert_eq!(unreduced.verdict, Verdict::Violation, "{context}");
            for outcome in [&reduced, &unreduced] {
                let (violation, schedule) = outcome.violation.clone().expect("a violation has a schedule");
                let replayed = replay(&model, &schedule).expect("the schedule fits");
                assert_eq!(replayed.violation, Some(violation), "{context}");
            }
        } else {
            verified += 1;
            assert_eq!(reduced.verdict, Verdict::Verified, "{context}");
            assert_eq!(unreduced.verdict, Verdict::Verified, "{context}");
            assert_eq!(set(&unreduced), truth, "unreduced, {context}");
            assert_eq!(set(&reduced), truth, "reduced, {context}");
        }
    }
    assert!(
        verified > 50 && violating > 20,
        "the generator covers both cases: {verified} verified, {violating} violating"
    );
}

#[test]
fn choices_agree_with_enumeration_on_random_models() {
    // Steps with several outcomes, some local (Pick) and some whose outcomes depend on the shared
    // state they read (LoadUpTo): the reduced, unreduced and bounded searches reach exactly the
    // final states and violations that enumerating every choice reaches, and every violation's
    // schedule (with its outcomes) replays to it.
    let mut random = SplitMix64::new(0x0063_686f_6963_6573);
    let (mut verified, mut violating, mut with_choices) = (0, 0, 0);
    for index in 0..300 {
        let model = random_model_with(&mut random, true);
        with_choices +=
            usize::from(model.programs.iter().flatten().any(|op| matches!(op, Op::Pick(_) | Op::LoadUpTo(_))));
        let context = format!("model {index}: {:?}", model.programs);
        let (truth, violation_reachable) = ground_truth(&model);
        let bounded = explore_bounded(&model, options(true), 1);
        let (bounded_truth, bounded_violation) = bounded_ground_truth(&model, 1);
        for outcome in [explore_exhaustive(&model, options(true)), explore_exhaustive(&model, options(false))] {
            if violation_reachable {
                assert_eq!(outcome.verdict, Verdict::Violation, "{context}");
                let (violation, schedule) = outcome.violation.clone().expect("a violation has a schedule");
                assert_eq!(replay(&model, &schedule).expect("fits").violation, Some(violation), "{context}");
            } else {
                assert_eq!(outcome.verdict, Verdict::Verified, "{context}");
                assert_eq!(set(&outcome), truth, "{context}");
            }
        }
        match bounded_violation {
            true => assert_eq!(bounded.verdict, Verdict::Violation, "{context}"),
            false => assert_eq!(set(&bounded), bounded_truth, "{context}"),
        }
        if violation_reachable {
            violating += 1;
        } else {
            verified += 1;
        }
    }
    assert!(verified > 50 && violating > 20 && with_choices > 150, "{verified} verified, {violating} violating");
}

#[test]
fn sampling_chooses_outcomes_and_replays_them() {
    use Op::*;
    // The violation needs outcome 2 of a three-way pick: sampling finds it, with its outcome in
    // the schedule, and the same seed finds the same schedule.
    let model = Counters::new(1, vec![vec![Pick(3), Local], vec![AtomicIncrement(0)]]);
    let model = Counters { final_expect: vec![], ..model };
    struct Picky(Counters);
    impl Model for Picky {
        type State = State;
        type Event = String;
        type Violation = String;
        fn initial_state(&self) -> State {
            self.0.initial_state()
        }
        fn enabled_threads(&self, state: &State, out: &mut Vec<ThreadId>) {
            self.0.enabled_threads(state, out)
        }
        fn outcomes(&self, state: &State, thread: ThreadId) -> u32 {
            self.0.outcomes(state, thread)
        }
        fn step(&self, state: &mut State, choice: Choice, effects: &mut StepEffects<String, String>) {
            self.0.step(state, choice, effects)
        }
        fn encode(&self, state: &State, out: &mut Vec<u8>) {
            self.0.encode(state, out)
        }
        fn check_final(&self, state: &State) -> Option<String> {
            (state.local[0] == 12).then(|| "picked 2".to_string())
        }
    }
    let model = Picky(model);
    let limits = Limits { schedules_max: 200, ..Limits::default() };
    for run in [
        |m: &Picky, l: Limits| explore_random(m, Options { limits: l, ..Options::default() }, 7),
        |m: &Picky, l: Limits| explore_pct(m, Options { limits: l, ..Options::default() }, 7, 2, 4),
    ] {
        let first = run(&model, limits.clone());
        assert_eq!(first.verdict, Verdict::Violation);
        let (_, schedule) = first.violation.clone().expect("a schedule");
        assert!(schedule.contains(&Choice::new(0, 2)), "{schedule:?}");
        assert_eq!(replay(&model, &schedule).expect("fits").violation.as_deref(), Some("picked 2"));
        assert_eq!(run(&model, limits.clone()).violation.map(|(_, s)| s), Some(schedule), "deterministic");
    }
    let exhaustive = explore_exhaustive(&model, options(true));
    assert_eq!(exhaustive.verdict, Verdict::Violation);
}
