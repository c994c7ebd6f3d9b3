//! The interleaving explorer: generic over a [`Model`], it knows nothing of folios, page tables
//! or scenarios.
//!
//! A model is a set of threads, each with a deterministic next step. The explorer chooses which
//! thread steps next, hashes the canonical encoding of every state it reaches, and reports the
//! schedule (the list of chosen threads) of any step or final state that the model says violates
//! one of its oracles.
//!
//! Strategies: exhaustive depth-first search with partial-order reduction (local steps, sleep
//! sets) and visited-state hashing; the same search bounded by a number of preemptions; random
//! walks and PCT sampling. Every search has limits and reports what it covered when it hits one.

mod audit;
mod dfs;
mod footprint;
mod limits;
pub mod memory;
mod sample;
mod visited;

pub use dfs::{explore_bounded, explore_exhaustive, PREEMPTION_BOUND_MAX};

pub use footprint::{Access, AccessKind, Footprint};
use limits::Clock;
pub use limits::{Limit, Limits};
pub use sample::{explore_pct, explore_random, SplitMix64};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Index of a thread in the model's fixed thread table.
pub type ThreadId = u32;

/// A transition: which thread steps, and which of its step's outcomes happens (for a load under
/// a weak memory model, which store it reads). A step with one outcome has only outcome 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Choice {
    pub thread: ThreadId,
    pub outcome: u32,
}

impl Choice {
    pub fn new(thread: ThreadId, outcome: u32) -> Self {
        Choice { thread, outcome }
    }
}

/// A thread's step with its only (or first) outcome.
impl From<ThreadId> for Choice {
    fn from(thread: ThreadId) -> Self {
        Choice { thread, outcome: 0 }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome {
            0 => write!(f, "{}", self.thread),
            outcome => write!(f, "{}:{}", self.thread, outcome),
        }
    }
}

/// What one step of one thread did, as the explorer needs to know it.
pub struct StepEffects<E, V> {
    /// The shared objects the step read and wrote (empty: a purely thread-local step).
    pub footprint: Footprint,
    /// The model's names of the places the step passed (always recorded: a search's coverage).
    pub labels: Vec<StepLabel>,
    /// The events of the step, recorded only when `record_events` is set (traces, replay).
    pub events: Vec<E>,
    /// An oracle that fired during the step.
    pub violation: Option<V>,
    pub record_events: bool,
    /// Whether the model notes accesses in `footprint` (a search that needs no footprint for a
    /// step turns this off).
    pub record_footprint: bool,
}

impl<E, V> StepEffects<E, V> {
    pub fn new(record_events: bool) -> Self {
        StepEffects {
            footprint: Footprint::default(),
            labels: Vec::new(),
            events: Vec::new(),
            violation: None,
            record_events,
            record_footprint: true,
        }
    }

    fn reset(&mut self) {
        self.footprint.clear();
        self.labels.clear();
        self.events.clear();
        self.violation = None;
    }
}

/// The narrow interface between the explorer and a model (in the manner of stateright's `Model`).
///
/// Architecture invariant: `step` is deterministic: the same state and choice give the same
/// successor, footprint and violation on every machine. The outcomes a step may have are a
/// function of the state the step reads (its footprint): a step of another thread that is
/// independent of it leaves their number and meaning unchanged.
pub trait Model {
    type State: Clone;
    type Event: Clone;
    type Violation: Clone + fmt::Display;

    fn initial_state(&self) -> Self::State;
    /// Threads whose next step can run now, in increasing order.
    fn enabled_threads(&self, state: &Self::State, out: &mut Vec<ThreadId>);
    /// How many outcomes the next step of the enabled `thread` has (at least one): the choices
    /// `0..outcomes` that [`Model::step`] takes for it.
    fn outcomes(&self, _state: &Self::State, _thread: ThreadId) -> u32 {
        1
    }
    /// Runs the next step of `choice.thread`, with outcome `choice.outcome`, in place.
    fn step(&self, state: &mut Self::State, choice: Choice, effects: &mut StepEffects<Self::Event, Self::Violation>);
    /// Canonical encoding: two states with equal encodings behave identically.
    fn encode(&self, state: &Self::State, out: &mut Vec<u8>);
    /// Checked when no thread is enabled: final-state oracles (and deadlock).
    fn check_final(&self, state: &Self::State) -> Option<Self::Violation>;
    /// The footprint audit's view of what a step changed (debug builds): appends to `out` the
    /// key of every shared object whose stored value differs between `before` and `after`,
    /// with the keys the model's footprints use. The stepping `thread`'s own data is not
    /// shared; [`ThreadId::MAX`] names no thread, so every difference is named. The explorer
    /// asserts that a step writes every object it changed. The default names nothing (no
    /// check); a model may name only some kinds of object.
    fn changed_objects(&self, _before: &Self::State, _after: &Self::State, _thread: ThreadId, _out: &mut Vec<u64>) {}
    /// A readable name of an object key, for the audit's messages.
    fn object_name(&self, object: u64) -> String {
        format!("object {object:#x}")
    }
    /// Bytes `state` holds, every heap part included and counted as if nothing were shared,
    /// for the searches' memory estimate and limit. The default counts the state's own size
    /// only, for a model whose states have no heap parts.
    fn state_bytes(&self, _state: &Self::State) -> u64 {
        std::mem::size_of::<Self::State>() as u64
    }
    /// Bytes one step of `state` may copy beyond what its encoding shows (a persistent state's
    /// copy-on-write unit: the largest part a step clones whole), counted once per state on the
    /// search's stack. The default is none.
    fn step_copy_bytes(&self, _state: &Self::State) -> u64 {
        0
    }
    /// A cheap deterministic function of the state that changes with most steps: it picks the
    /// sample points at which the bounded search stores a state of a run without choices
    /// (two runs that meet go through the same states, so they meet again at a sample point).
    /// Any function of the state is sound; the default is the state's fingerprint.
    fn sample_key(&self, state: &Self::State) -> u64 {
        let mut bytes = Vec::new();
        self.encode(state, &mut bytes);
        fingerprint(&bytes) as u64
    }
}

/// The preemption bounds searched before the full search: most concurrency bugs need at most
/// one or two preemptions (CHESS), and a bounded search reaches them in polynomial time.
pub const PRELUDE_BOUNDS: [u32; 2] = [0, 1];

/// Exhaustive search that first runs the cheap preemption-bounded searches of
/// [`PRELUDE_BOUNDS`], so that shallow violations are found fast at any size; when they find
/// none, the full search decides. `Verified` still means the full search completed. The
/// statistics add up every pass.
pub fn explore_exhaustive_iterative<M: Model>(model: &M, mut options: Options<'_>) -> Outcome<M::Violation> {
    let started = Instant::now();
    let mut total = Stats::default();
    // Every pass gets what the previous ones left of the states and the time.
    let remaining = |limits: &Limits, total: &Stats| {
        let mut left = limits.clone();
        left.seconds_max = (limits.seconds_max - started.elapsed().as_secs_f64()).max(0.0);
        left.states_max = limits.states_max.saturating_sub(total.states_stored);
        left
    };
    for bound in PRELUDE_BOUNDS {
        let limits = remaining(&options.limits, &total);
        let pass = Options {
            limits,
            reduction: options.reduction,
            progress: options.progress.as_mut().map(|p| &mut **p as &mut dyn FnMut(&Progress)),
            collect_final_states: false,
            store_every_state: options.store_every_state,
        };
        let outcome = explore_bounded(model, pass, bound);
        add(&mut total, &outcome.stats);
        if matches!(outcome.verdict, Verdict::Violation | Verdict::LimitReached { .. }) {
            return Outcome { stats: total, ..outcome };
        }
    }
    options.limits = remaining(&options.limits, &total);
    let outcome = explore_exhaustive(model, options);
    add(&mut total, &outcome.stats);
    Outcome { stats: total, ..outcome }
}

fn add(total: &mut Stats, pass: &Stats) {
    total.states += pass.states;
    total.states_stored += pass.states_stored;
    total.transitions += pass.transitions;
    total.schedules += pass.schedules;
    total.depth_max = total.depth_max.max(pass.depth_max);
    total.elapsed_ms += pass.elapsed_ms;
    total.memory_bytes_peak = total.memory_bytes_peak.max(pass.memory_bytes_peak);
    total.reached.extend(&pass.reached);
}

/// 128-bit fingerprint of a canonical encoding (xxh3, fixed seed: the same on every machine).
pub fn fingerprint(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Exhaustive,
    Random,
    Pct,
}

/// How a search ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The exhaustive search completed: no reachable state violates an oracle.
    Verified,
    /// The bounded search completed: no violation within `preemptions_max` preemptions.
    VerifiedBounded {
        preemptions_max: u32,
    },
    Violation,
    /// Sampling ended without finding a violation: says nothing about the unsampled schedules.
    NoViolationFound,
    /// A limit stopped the search before it completed.
    LimitReached {
        limit: Limit,
    },
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Verified => "verified",
            Verdict::VerifiedBounded { .. } => "verified-bounded",
            Verdict::Violation => "violation",
            Verdict::NoViolationFound => "no-violation-found",
            Verdict::LimitReached { .. } => "limit-reached",
        }
    }
}

/// A model's name of a place a step passes: (function, label), as `try_to_unmap_one: discard`.
pub type StepLabel = (&'static str, &'static str);

/// The step labels a search reached in any explored step: one set merged across the search,
/// not kept per state.
#[derive(Clone, Debug, Default)]
pub struct Reached(std::collections::HashSet<StepLabel, rustc_hash::FxBuildHasher>);

impl Reached {
    pub fn add(&mut self, labels: &[StepLabel]) {
        self.0.extend(labels.iter().copied());
    }

    pub fn extend(&mut self, other: &Reached) {
        self.0.extend(other.0.iter().copied());
    }

    pub fn contains(&self, label: StepLabel) -> bool {
        self.0.contains(&label)
    }

    /// In order, for reports that must not depend on hashing.
    pub fn sorted(&self) -> Vec<StepLabel> {
        let mut labels: Vec<StepLabel> = self.0.iter().copied().collect();
        labels.sort_unstable();
        labels
    }
}

/// What a search covered.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// The step labels reached (not serialised: a report lists them).
    #[serde(skip)]
    pub reached: Reached,
    /// States explored. The bounded search counts a state it did not store at every visit.
    pub states: u64,
    /// States in the visited set: what the states limit bounds. The exhaustive search stores
    /// every state; the bounded search only the sample points of runs without choices.
    pub states_stored: u64,
    pub transitions: u64,
    pub depth_max: u64,
    pub schedules: u64,
    pub elapsed_ms: u64,
    /// Estimated bytes held by the search (visited set and stack), at its peak.
    pub memory_bytes_peak: u64,
}

/// The outcome of a search: a verdict, the statistics and, for a violation, its schedule.
#[derive(Clone, Debug)]
pub struct Outcome<V> {
    pub verdict: Verdict,
    pub stats: Stats,
    pub violation: Option<(V, Vec<Choice>)>,
    /// Fingerprints of the final states reached (no thread enabled), sorted, when
    /// `Options::collect_final_states` asked for them: for cross-checking reductions.
    pub final_states: Vec<u128>,
}

/// Progress reports for a user interface; the explorer itself never prints.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub states: u64,
    pub transitions: u64,
    pub depth: u64,
    pub queue: u64,
    pub elapsed_ms: u64,
}

pub type ProgressFn<'a> = &'a mut dyn FnMut(&Progress);

/// Options common to every strategy.
pub struct Options<'a> {
    pub limits: Limits,
    pub reduction: bool,
    pub progress: Option<ProgressFn<'a>>,
    pub collect_final_states: bool,
    /// The bounded search stores every state, not only the sample points of runs without
    /// choices: counts then depend on the states alone, not on where `Model::sample_key` puts
    /// sample points (a cross-check for a change of a model's representation).
    pub store_every_state: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            reduction: true,
            progress: None,
            collect_final_states: false,
            store_every_state: false,
        }
    }
}

/// Replays a schedule, recording events. Returns per step the choice and its events, and the
/// violation the schedule ends in (a step's violation, or the final-state check).
pub fn replay<M: Model>(model: &M, schedule: &[Choice]) -> Result<Replay<M>, ReplayError> {
    let mut state = model.initial_state();
    let mut effects = StepEffects::new(true);
    let mut steps = Vec::with_capacity(schedule.len());
    let mut enabled = Vec::new();
    for (index, &choice) in schedule.iter().enumerate() {
        enabled.clear();
        model.enabled_threads(&state, &mut enabled);
        if !enabled.contains(&choice.thread) {
            return Err(ReplayError { step: index, choice, reason: "is not enabled" });
        }
        if choice.outcome >= model.outcomes(&state, choice.thread) {
            return Err(ReplayError { step: index, choice, reason: "names an outcome its step does not have" });
        }
        effects.reset();
        model.step(&mut state, choice, &mut effects);
        steps.push((choice, std::mem::take(&mut effects.events)));
        if let Some(violation) = effects.violation.take() {
            return Ok(Replay { steps, violation: Some(violation), state });
        }
    }
    enabled.clear();
    model.enabled_threads(&state, &mut enabled);
    let violation = if enabled.is_empty() { model.check_final(&state) } else { None };
    Ok(Replay { steps, violation, state })
}

pub struct Replay<M: Model> {
    pub steps: Vec<(Choice, Vec<M::Event>)>,
    pub violation: Option<M::Violation>,
    pub state: M::State,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError {
    pub step: usize,
    pub choice: Choice,
    pub reason: &'static str,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Choice { thread, outcome } = self.choice;
        match outcome {
            0 => write!(f, "step {}: thread {thread} {}", self.step, self.reason)?,
            _ => write!(f, "step {}: thread {thread} (outcome {outcome}) {}", self.step, self.reason)?,
        }
        write!(f, " (the schedule does not fit this scenario)")
    }
}

/// How one sampled schedule ended.
pub(crate) enum ScheduleEnd {
    /// No thread enabled (the final check ran) or a violation.
    Complete,
    /// Cut at the depth limit.
    Truncated,
    /// A limit of the whole sampling run (states, time, memory) was hit.
    Limit(Limit),
}

/// Runs one schedule to the end without recording, choosing with `choose` among enabled threads
/// and with `outcome` among the chosen step's outcomes (given their number). Shared by the
/// sampling strategies, which count states as transitions: it stops at the depth limit, and
/// at the states, time and memory limits of the whole run (`clock` started with it).
pub(crate) fn run_schedule<M: Model>(
    model: &M,
    limits: &Limits,
    clock: &mut Clock,
    stats: &mut Stats,
    mut choose: impl FnMut(&[ThreadId], u64) -> ThreadId,
    mut outcome: impl FnMut(u32) -> u32,
) -> (Option<M::Violation>, Vec<Choice>, ScheduleEnd) {
    let mut state = model.initial_state();
    let mut effects = StepEffects::new(false);
    let mut schedule = Vec::new();
    let mut enabled = Vec::new();
    loop {
        enabled.clear();
        model.enabled_threads(&state, &mut enabled);
        if enabled.is_empty() {
            return (model.check_final(&state), schedule, ScheduleEnd::Complete);
        }
        if schedule.len() as u64 >= limits.depth_max {
            return (None, schedule, ScheduleEnd::Truncated);
        }
        if let Some(limit) = sampling_limit_hit(model, limits, clock, stats, &state, schedule.len()) {
            return (None, schedule, ScheduleEnd::Limit(limit));
        }
        let thread = choose(&enabled, schedule.len() as u64);
        let outcomes = model.outcomes(&state, thread);
        let choice = Choice::new(thread, if outcomes > 1 { outcome(outcomes) } else { 0 });
        effects.reset();
        model.step(&mut state, choice, &mut effects);
        stats.reached.add(&effects.labels);
        stats.transitions += 1;
        schedule.push(choice);
        stats.depth_max = stats.depth_max.max(schedule.len() as u64);
        if let Some(violation) = effects.violation.take() {
            return (Some(violation), schedule, ScheduleEnd::Complete);
        }
    }
}

/// The limits of a sampling run before its next step: states (its transitions), time at every
/// step, and memory (the state and the schedule) when [`Clock::check_due`] says.
fn sampling_limit_hit<M: Model>(
    model: &M,
    limits: &Limits,
    clock: &mut Clock,
    stats: &mut Stats,
    state: &M::State,
    steps: usize,
) -> Option<Limit> {
    if stats.transitions >= limits.states_max {
        return Some(Limit::States);
    }
    if clock.out_of_time(limits) {
        return Some(Limit::Time);
    }
    if steps > 0 && !clock.check_due(stats.transitions) {
        return None;
    }
    let schedule_bytes = (steps as u64).saturating_mul(std::mem::size_of::<Choice>() as u64);
    let memory_bytes = model.state_bytes(state).saturating_add(schedule_bytes);
    stats.memory_bytes_peak = stats.memory_bytes_peak.max(memory_bytes);
    (memory_bytes > limits.memory_bytes_max).then_some(Limit::Memory)
}
