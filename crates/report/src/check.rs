//! Running a check: scenario + kernel + strategy → explorer → verdict, with the violation's
//! schedule replayed into a readable trace.

use crate::token::ReplayToken;
use mmcheck_explorer::memory::MemoryModel;
use mmcheck_explorer::{
    explore_bounded, explore_exhaustive_iterative, explore_pct, explore_random, Choice, Limits, Options, ProgressFn,
    Stats, Strategy, Verdict,
};
use mmcheck_model::{KernelConfig, System, Violation};
use mmcheck_scenario::{Outcome, Scenario};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub kernel: KernelConfig,
    pub overrides: Vec<(String, i64)>,
    pub strategy: Strategy,
    /// Exhaustive search bounded by this many preemptions.
    pub preemption_bound: Option<u32>,
    pub seed: u64,
    /// PCT's bug depth (number of priority change points plus one).
    pub pct_depth: u32,
    pub limits: Limits,
    pub reduction: bool,
    pub memory_model: MemoryModel,
    /// Bounded passes store every state ([`Options::store_every_state`]).
    pub store_every_state: bool,
}

impl CheckOptions {
    pub fn new(kernel: KernelConfig) -> Self {
        CheckOptions {
            kernel,
            overrides: Vec::new(),
            strategy: Strategy::Exhaustive,
            preemption_bound: None,
            seed: 0,
            pct_depth: 3,
            limits: Limits::default(),
            reduction: true,
            memory_model: MemoryModel::Sc,
            store_every_state: false,
        }
    }
}

/// One step of a trace, as printed and as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct TraceStep {
    pub step: usize,
    pub thread: String,
    pub function: String,
    pub label: String,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ViolationReport {
    pub kind: String,
    pub message: String,
    pub dump: Vec<String>,
}

impl From<&Violation> for ViolationReport {
    fn from(v: &Violation) -> Self {
        ViolationReport { kind: v.kind.name().to_string(), message: v.message.clone(), dump: v.dump.clone() }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub scenario: String,
    pub kernel: String,
    pub memory_model: MemoryModel,
    pub strategy: Strategy,
    pub verdict: String,
    /// "verified up to N preemptions", "limit reached: states", ...
    pub verdict_detail: String,
    pub expected: Option<String>,
    pub matches_expectation: Option<bool>,
    pub violation: Option<ViolationReport>,
    pub states: u64,
    /// States in the visited set (fewer than `states` only in a bounded search).
    pub states_stored: u64,
    pub transitions: u64,
    pub schedules: u64,
    pub depth_max: u64,
    pub elapsed_ms: u64,
    pub memory_bytes_peak: u64,
    pub replay: Option<String>,
    pub trace: Vec<TraceStep>,
    pub coverage: Coverage,
}

/// What a verdict rests on: the step labels (`function: label`) some explored step reached,
/// and, in the functions entered, the labels the model's source names that none reached (as
/// SPIN's "unreached in proctype").
#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    pub reached: Vec<String>,
    pub unreached: Vec<String>,
}

impl Coverage {
    fn of(stats: &Stats) -> Coverage {
        let reached = stats.reached.sorted();
        let entered: std::collections::BTreeSet<&str> = reached.iter().map(|&(function, _)| function).collect();
        let name = |&(function, label): &(&str, &str)| format!("{function}: {label}");
        let unreached = mmcheck_model::step_labels::STEP_LABELS
            .iter()
            .filter(|&&(function, label)| entered.contains(function) && !stats.reached.contains((function, label)))
            .map(name)
            .collect();
        Coverage { reached: reached.iter().map(name).collect(), unreached }
    }
}

/// What the verdict rests on. `verified` says what was exhausted: every interleaving, under
/// which memory model, ending in how many distinct final states (the full search collects them).
fn verdict_detail(verdict: &Verdict, memory_model: MemoryModel, final_states: usize) -> String {
    let plural = if final_states == 1 { "" } else { "s" };
    let detail = match verdict {
        Verdict::Verified => format!(
            "verified: every interleaving explored under {memory_model}, {final_states} distinct final state{plural}"
        ),
        Verdict::VerifiedBounded { preemptions_max } => {
            format!("verified up to {preemptions_max} preemption(s), not beyond")
        }
        Verdict::Violation => "an interleaving breaks an oracle: trace below".to_string(),
        Verdict::NoViolationFound => "no violation found in the sampled schedules (not a proof)".to_string(),
        Verdict::LimitReached { limit } => format!("limit reached ({}): search incomplete", limit.name()),
    };
    detail + &weak_detail(memory_model, verdict)
}

/// What a verdict under a weak model does not cover (the model's confinement, access/weak.rs).
fn weak_detail(memory_model: MemoryModel, verdict: &Verdict) -> String {
    match (memory_model.is_weak(), verdict) {
        (true, Verdict::Verified | Verdict::VerifiedBounded { .. }) => format!(
            "; under {memory_model} only GUP-fast's PTE reads and refcount reads read older stores, one per step, in order, \
             and no load buffering: a verdict for those behaviours, not all {memory_model} allows"
        ),
        _ => String::new(),
    }
}

/// Whether a verdict is what the scenario expects. A bounded verification never counts as
/// `verified`.
pub fn matches(expected: &Outcome, verdict: &Verdict, violation: Option<&Violation>) -> bool {
    match (expected, verdict) {
        (Outcome::Verified, Verdict::Verified) => true,
        (Outcome::Violation(kind), Verdict::Violation) => violation.is_some_and(|v| v.kind == *kind),
        _ => false,
    }
}

/// Explores the scenario under the options and reports.
pub fn check(
    scenario: &Scenario,
    options: &CheckOptions,
    progress: Option<ProgressFn<'_>>,
) -> Result<CheckReport, String> {
    let spec = scenario.system(&options.overrides)?;
    let system = System::new(spec, options.kernel.clone()).with_memory_model(options.memory_model);
    let mut explorer_options = Options {
        limits: options.limits.clone(),
        reduction: options.reduction,
        progress,
        // The full search counts the distinct final states a `verified` rests on.
        collect_final_states: options.strategy == Strategy::Exhaustive,
        store_every_state: options.store_every_state,
    };
    let outcome = match (options.strategy, options.preemption_bound) {
        (Strategy::Exhaustive, None) => explore_exhaustive_iterative(&system, explorer_options),
        (Strategy::Exhaustive, Some(bound)) => explore_bounded(&system, explorer_options, bound),
        (Strategy::Random, _) => explore_random(&system, explorer_options, options.seed),
        (Strategy::Pct, _) => {
            // The sequential run's length (its events) sizes the range of change points; it
            // counts at most the depth limit, within the time limit, and the search gets the
            // time left.
            let started = std::time::Instant::now();
            let seconds_max = options.limits.seconds_max;
            let events = mmcheck_model::system::sequential_events(&system, options.limits.depth_max, || {
                started.elapsed().as_secs_f64() > seconds_max
            });
            explorer_options.limits.seconds_max = (seconds_max - started.elapsed().as_secs_f64()).max(0.0);
            explore_pct(&system, explorer_options, options.seed, options.pct_depth, events)
        }
    };
    let expected = scenario.expected_under(&options.kernel, options.memory_model).cloned();
    let violation = outcome.violation.as_ref().map(|(v, _)| v.clone());
    let matches_expectation = expected.as_ref().map(|e| matches(e, &outcome.verdict, violation.as_ref()));
    let (replay, trace) = match &outcome.violation {
        Some((_, schedule)) => {
            let token = ReplayToken {
                scenario: scenario.name.clone(),
                kernel: options.kernel.clone(),
                overrides: options.overrides.clone(),
                memory_model: options.memory_model,
                schedule: schedule.clone(),
            };
            (Some(token.encode()), trace_of(&system, schedule)?.0)
        }
        None => (None, Vec::new()),
    };
    let mut report = report(
        scenario,
        options,
        &outcome.verdict,
        &outcome.stats,
        outcome.final_states.len(),
        violation.as_ref(),
        expected,
        matches_expectation,
        replay,
        trace,
    );
    vacuous(&mut report, scenario, &outcome.verdict, &outcome.stats);
    Ok(report)
}

/// A run that found no violation but did not reach what an `expect reach` line names (or
/// reached what an `expect unreached` line names) is `vacuous`, never verified: it says nothing
/// of the race it was written for.
fn vacuous(report: &mut CheckReport, scenario: &Scenario, verdict: &Verdict, stats: &Stats) {
    if !matches!(verdict, Verdict::Verified | Verdict::VerifiedBounded { .. } | Verdict::NoViolationFound) {
        return;
    }
    let reached = stats.reached.sorted();
    let missed: Vec<String> = scenario
        .reach
        .iter()
        .filter(|line| reached.iter().any(|&(f, l)| f == line.function && l == line.label) != line.reached)
        .map(|line| {
            format!("line {}: {} {}", line.line, if line.reached { "never reached" } else { "reached" }, line.name())
        })
        .collect();
    if missed.is_empty() {
        return;
    }
    report.verdict = "vacuous".to_string();
    report.verdict_detail =
        format!("no violation, but the run is not what its expect lines ask: {}", missed.join("; "));
    report.matches_expectation = report.matches_expectation.map(|_| false);
}

#[allow(clippy::too_many_arguments)]
fn report(
    scenario: &Scenario,
    options: &CheckOptions,
    verdict: &Verdict,
    stats: &Stats,
    final_states: usize,
    violation: Option<&Violation>,
    expected: Option<Outcome>,
    matches_expectation: Option<bool>,
    replay: Option<String>,
    trace: Vec<TraceStep>,
) -> CheckReport {
    CheckReport {
        scenario: scenario.name.clone(),
        kernel: options.kernel.label(),
        memory_model: options.memory_model,
        strategy: options.strategy,
        verdict: verdict.name().to_string(),
        verdict_detail: verdict_detail(verdict, options.memory_model, final_states),
        expected: expected.map(|e| e.describe()),
        matches_expectation,
        violation: violation.map(ViolationReport::from),
        states: stats.states,
        states_stored: stats.states_stored,
        transitions: stats.transitions,
        schedules: stats.schedules,
        depth_max: stats.depth_max,
        elapsed_ms: stats.elapsed_ms,
        memory_bytes_peak: stats.memory_bytes_peak,
        replay,
        trace,
        coverage: Coverage::of(stats),
    }
}

/// Replays a schedule and turns its events into trace steps.
pub fn trace_of(system: &System, schedule: &[Choice]) -> Result<(Vec<TraceStep>, Option<Violation>), String> {
    let replayed = mmcheck_explorer::replay(system, schedule).map_err(|e| e.to_string())?;
    let mut steps = Vec::new();
    for (index, (choice, events)) in replayed.steps.iter().enumerate() {
        for event in events {
            steps.push(TraceStep {
                step: index + 1,
                thread: system.thread_name(choice.thread).to_string(),
                function: event.function.to_string(),
                label: event.label.to_string(),
                detail: event.detail.clone() + &stale_note(event),
            });
        }
    }
    Ok((steps, replayed.violation))
}

/// Under a weak memory model, the loads of a step that read a store older than the latest.
fn stale_note(event: &mmcheck_model::Event) -> String {
    let stale: Vec<String> =
        event.accesses.iter().filter(|a| a.stale).filter_map(|a| a.object).map(|o| format!("{o:?}")).collect();
    match stale.is_empty() {
        true => String::new(),
        false => format!(
            " [weak memory: this load of {} read an older store; the latest is not yet visible to this CPU]",
            stale.join(", ")
        ),
    }
}

/// Re-executes a replay token against a scenario.
pub fn replay(scenario: &Scenario, token: &ReplayToken) -> Result<CheckReport, String> {
    let spec = scenario.system(&token.overrides)?;
    let system = System::new(spec, token.kernel.clone()).with_memory_model(token.memory_model);
    let (trace, violation) = trace_of(&system, &token.schedule)?;
    let mut options = CheckOptions::new(token.kernel.clone());
    options.memory_model = token.memory_model;
    options.overrides = token.overrides.clone();
    let verdict = if violation.is_some() { Verdict::Violation } else { Verdict::NoViolationFound };
    let stats =
        Stats { transitions: token.schedule.len() as u64, depth_max: token.schedule.len() as u64, ..Stats::default() };
    let mut result =
        report(scenario, &options, &verdict, &stats, 0, violation.as_ref(), None, None, Some(token.encode()), trace);
    result.verdict_detail = if violation.is_some() {
        "the schedule ends in a violation".to_string()
    } else {
        "the schedule ends without a violation".to_string()
    };
    Ok(result)
}
