//! Running one litmus test under a memory model, and comparing what the engine found with the
//! LKMM's verdict in the test's `Result:` line.

use super::compile::{compile, Compiled, Unsupported};
use super::run::{FinalState, Finals, LitmusModel};
use super::{Atom, ExpectedResult, LitmusTest, Location, Prop, Value};
use mmcheck_explorer::memory::MemoryModel;
use mmcheck_explorer::{explore_exhaustive, Limits, Options, Verdict};
use serde::Serialize;
use std::cell::RefCell;

/// What the engine found about the condition's proposition over every final state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Observed {
    Never,
    Sometimes,
    Always,
}

impl Observed {
    pub fn name(self) -> &'static str {
        match self {
            Observed::Never => "Never",
            Observed::Sometimes => "Sometimes",
            Observed::Always => "Always",
        }
    }
}

/// A test's status against the LKMM's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Agree,
    /// The engine shows an outcome the verdict forbids: unsound, if the verdict is right.
    ForbiddenShown,
    /// The verdict allows an outcome the engine never shows.
    AllowedMissed,
    /// The test uses what the front end does not run, or has no plain verdict.
    Unsupported(String),
    /// A limit stopped the search: nothing is claimed.
    Incomplete(String),
}

impl Status {
    pub fn describe(&self) -> String {
        match self {
            Status::Agree => "agree".to_string(),
            Status::ForbiddenShown => "forbidden-shown".to_string(),
            Status::AllowedMissed => "allowed-missed".to_string(),
            Status::Unsupported(what) => format!("unsupported: {what}"),
            Status::Incomplete(what) => format!("incomplete: {what}"),
        }
    }
}

/// One test's run.
#[derive(Clone, Debug, Serialize)]
pub struct TestRun {
    pub name: String,
    pub expected: Option<String>,
    pub observed: Option<Observed>,
    pub status: Status,
    pub states: u64,
    pub elapsed_ms: u64,
}

/// Explores every execution of `test` under `memory_model` within `limits`.
pub fn check(test: &LitmusTest, memory_model: MemoryModel, limits: &Limits) -> TestRun {
    let expected = test.expected.as_ref().map(|e| match &e.result {
        ExpectedResult::Never => "Never".to_string(),
        ExpectedResult::Sometimes => "Sometimes".to_string(),
        ExpectedResult::Always => "Always".to_string(),
        ExpectedResult::Other(other) => other.clone(),
    });
    let mut run = TestRun {
        name: test.name.clone(),
        expected,
        observed: None,
        status: Status::Unsupported(String::new()),
        states: 0,
        elapsed_ms: 0,
    };
    let compiled = match compile(test) {
        Ok(compiled) => compiled,
        Err(Unsupported { construct, position }) => {
            run.status = Status::Unsupported(format!("{construct} ({}:{})", position.line, position.column));
            return run;
        }
    };
    let (finals, verdict, stats) = explore(test, &compiled, memory_model, limits);
    run.states = stats.states;
    run.elapsed_ms = stats.elapsed_ms;
    if let Some(error) = finals.error {
        run.status = Status::Unsupported(error);
        return run;
    }
    if let Verdict::LimitReached { limit } = verdict {
        run.status = Status::Incomplete(format!("the {} limit", limit.name()));
        return run;
    }
    run.observed = observed(&finals);
    run.status = status(test, run.observed);
    run
}

fn explore(
    test: &LitmusTest,
    compiled: &Compiled,
    memory_model: MemoryModel,
    limits: &Limits,
) -> (Finals, Verdict, mmcheck_explorer::Stats) {
    let prop = &test.condition.prop;
    let filter = test.filter.as_ref();
    let judge = move |state: &FinalState| -> Option<bool> {
        if filter.is_some_and(|f| !holds(f, state)) {
            return None;
        }
        Some(holds(prop, state))
    };
    let model = LitmusModel { compiled, memory_model, judge: Box::new(judge), finals: RefCell::new(Finals::default()) };
    let options = Options { limits: limits.clone(), ..Options::default() };
    let outcome = explore_exhaustive(&model, options);
    (model.finals.into_inner(), outcome.verdict, outcome.stats)
}

/// Never, Sometimes or Always: whether some, every or no final state satisfies the proposition.
fn observed(finals: &Finals) -> Option<Observed> {
    match (finals.satisfied, finals.unsatisfied) {
        (0, 0) => None,
        (0, _) => Some(Observed::Never),
        (_, 0) => Some(Observed::Always),
        _ => Some(Observed::Sometimes),
    }
}

/// The Result line speaks of the proposition (herd's Never/Sometimes/Always) whatever the
/// quantifier: showing a satisfying state herd says never exists, or a failing one where herd
/// says always, is showing a forbidden outcome.
fn status(test: &LitmusTest, observed: Option<Observed>) -> Status {
    let Some(expected) = test.expected.as_ref() else {
        return Status::Unsupported("no Result: line".to_string());
    };
    let Some(observed) = observed else {
        return Status::Unsupported("no execution reaches a final state".to_string());
    };
    let shows_satisfying = observed != Observed::Never;
    let shows_failing = observed != Observed::Always;
    match expected.result {
        ExpectedResult::Never if shows_satisfying => Status::ForbiddenShown,
        ExpectedResult::Always if shows_failing => Status::ForbiddenShown,
        ExpectedResult::Never | ExpectedResult::Always => Status::Agree,
        ExpectedResult::Sometimes if observed == Observed::Sometimes => Status::Agree,
        ExpectedResult::Sometimes => Status::AllowedMissed,
        ExpectedResult::Other(ref other) => Status::Unsupported(format!("Result: {other}")),
    }
}

fn holds(prop: &Prop, state: &FinalState) -> bool {
    match prop {
        Prop::True => true,
        Prop::False => false,
        Prop::Not(p) => !holds(p, state),
        Prop::And(a, b) => holds(a, state) && holds(b, state),
        Prop::Or(a, b) => holds(a, state) || holds(b, state),
        Prop::Implies(a, b) => !holds(a, state) || holds(b, state),
        Prop::Atom(atom) => atom_holds(atom, state),
    }
}

fn atom_holds(atom: &Atom, state: &FinalState) -> bool {
    let left = value_of(&atom.location, state);
    let right = match &atom.value {
        Value::Integer(value) => Some(*value),
        Value::Address(name) => state.compiled.address(name),
        Value::Location(location) => value_of(location, state),
    };
    (left == right) != atom.negated
}

fn value_of(location: &Location, state: &FinalState) -> Option<i64> {
    match location {
        Location::Global(name) => state.global(name),
        // A register the thread never names reads as herd's zero.
        Location::Register { thread, name } => Some(state.register(*thread, name).unwrap_or(0)),
    }
}
