//! Every strategy honours every limit: states, time and memory (issue 13). The model is a set
//! of threads counting up, each step a shared write, so the state space is large; its states
//! say they hold a mebibyte each, and its steps can be made slow.

use mmcheck_explorer::{
    explore_bounded, explore_exhaustive, explore_exhaustive_iterative, explore_pct, explore_random, fingerprint,
    Choice, Limit, Limits, Model, Options, Outcome, StepEffects, ThreadId, Verdict,
};
use std::time::{Duration, Instant};

/// `threads` threads, each adding one to its own counter `steps` times (and to a shared one).
struct Counting {
    threads: usize,
    steps: u64,
    /// How long each step takes.
    step_delay: Duration,
}

/// Bytes each state claims to hold (as a model's big heap parts would).
const STATE_BYTES: u64 = 1 << 20;

impl Model for Counting {
    type State = Vec<u64>;
    type Event = ();
    type Violation = String;

    fn initial_state(&self) -> Vec<u64> {
        vec![0; self.threads + 1]
    }

    fn enabled_threads(&self, state: &Vec<u64>, out: &mut Vec<ThreadId>) {
        out.extend((0..self.threads).filter(|&t| state[t] < self.steps).map(|t| t as ThreadId));
    }

    fn step(&self, state: &mut Vec<u64>, choice: Choice, effects: &mut StepEffects<(), String>) {
        std::thread::sleep(self.step_delay);
        state[choice.thread as usize] += 1;
        state[self.threads] = state[self.threads].wrapping_mul(31).wrapping_add(u64::from(choice.thread) + 1);
        effects.footprint.write(self.threads as u64);
    }

    fn encode(&self, state: &Vec<u64>, out: &mut Vec<u8>) {
        out.extend(state.iter().flat_map(|v| v.to_le_bytes()));
    }

    fn check_final(&self, _state: &Vec<u64>) -> Option<String> {
        None
    }

    fn state_bytes(&self, _state: &Vec<u64>) -> u64 {
        STATE_BYTES
    }

    fn sample_key(&self, state: &Vec<u64>) -> u64 {
        let mut bytes = Vec::new();
        self.encode(state, &mut bytes);
        fingerprint(&bytes) as u64
    }
}

type Strategy = fn(&Counting, Limits) -> Outcome<String>;

/// Every strategy, by name.
fn strategies() -> Vec<(&'static str, Strategy)> {
    vec![
        ("exhaustive", |m, limits| explore_exhaustive(m, Options { limits, ..Options::default() })),
        ("iterative", |m, limits| explore_exhaustive_iterative(m, Options { limits, ..Options::default() })),
        ("bounded", |m, limits| explore_bounded(m, Options { limits, ..Options::default() }, 2)),
        ("random", |m, limits| explore_random(m, Options { limits, ..Options::default() }, 1)),
        ("pct", |m, limits| explore_pct(m, Options { limits, ..Options::default() }, 1, 3, 1000)),
    ]
}

fn big() -> Counting {
    Counting { threads: 3, steps: 200, step_delay: Duration::ZERO }
}

#[track_caller]
fn assert_limit(name: &str, outcome: &Outcome<String>, limit: Limit) {
    assert_eq!(outcome.verdict, Verdict::LimitReached { limit }, "{name}: {:?}", outcome.stats);
}

#[test]
fn every_strategy_stops_at_the_states_limit() {
    for (name, strategy) in strategies() {
        let limits = Limits { states_max: 500, memory_bytes_max: u64::MAX, ..Limits::default() };
        let outcome = strategy(&big(), limits);
        assert_limit(name, &outcome, Limit::States);
        // The sampling strategies count states as transitions; the searches count stored ones.
        let counted =
            if name == "random" || name == "pct" { outcome.stats.states } else { outcome.stats.states_stored };
        assert!(counted <= 500, "{name}: {counted} states past a limit of 500");
    }
}

#[test]
fn every_strategy_stops_at_the_memory_limit_and_counts_the_state() {
    for (name, strategy) in strategies() {
        let limits = Limits { memory_bytes_max: STATE_BYTES / 2, ..Limits::default() };
        let outcome = strategy(&big(), limits);
        assert_limit(name, &outcome, Limit::Memory);
        assert!(outcome.stats.memory_bytes_peak >= STATE_BYTES, "{name}: the estimate counts the state's bytes");
    }
}

#[test]
fn every_strategy_stops_on_time_when_steps_are_slow() {
    // 5 ms a step: the clock must be read far more often than every few thousand states.
    let slow = Counting { threads: 2, steps: 1000, step_delay: Duration::from_millis(5) };
    for (name, strategy) in strategies() {
        let started = Instant::now();
        let limits = Limits { seconds_max: 0.2, memory_bytes_max: u64::MAX, ..Limits::default() };
        let outcome = strategy(&slow, limits);
        assert_limit(name, &outcome, Limit::Time);
        // Generous: the limit is 0.2 s, a step 5 ms; only a clock read every few thousand
        // states (many seconds here) would miss this.
        assert!(started.elapsed() < Duration::from_secs(5), "{name} took {:?}", started.elapsed());
    }
}

#[test]
fn pct_with_a_huge_depth_allocates_by_the_depth_limit() {
    let limits = Limits { schedules_max: 3, depth_max: 100, memory_bytes_max: u64::MAX, ..Limits::default() };
    let started = Instant::now();
    let outcome = explore_pct(&big(), Options { limits, ..Options::default() }, 1, u32::MAX, 1000);
    assert_limit("pct", &outcome, Limit::Depth);
    assert_eq!(outcome.stats.schedules, 3);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}
