//! The footprint audit of debug builds: a model whose footprints miss an access makes the
//! search panic; a model whose footprints are right passes.

use mmcheck_explorer::{explore_bounded, explore_exhaustive, Choice, Model, Options, StepEffects, ThreadId, Verdict};

/// How a model's `Store` declares its write: the bugs the audit must catch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Declared {
    Write,
    /// Declares a read of the variable it writes.
    Read,
    /// Declares nothing: the step looks local.
    Nothing,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `shared[var] = value`.
    Store(usize, i64),
    /// `local = shared[var]`.
    Load(usize),
    /// Blocks until `shared[var] == 0`, then sets it to 1 (a lock).
    Lock(usize),
}

/// Threads running straight-line programs over shared variables.
struct Variables {
    programs: Vec<Vec<Op>>,
    declared: Declared,
    /// Whether the model tells the audit which variables a step changed.
    names_changes: bool,
    /// Declares a lock acquisition as a read: it disables the other thread's acquisition
    /// without conflicting with it.
    lock_as_read: bool,
}

#[derive(Clone, Debug)]
struct State {
    shared: Vec<i64>,
    pc: Vec<usize>,
    local: Vec<i64>,
}

impl Variables {
    fn new(programs: Vec<Vec<Op>>, declared: Declared) -> Self {
        Variables { programs, declared, names_changes: false, lock_as_read: false }
    }

    fn op(&self, state: &State, thread: usize) -> Option<Op> {
        self.programs[thread].get(state.pc[thread]).copied()
    }
}

impl Model for Variables {
    type State = State;
    type Event = ();
    type Violation = String;

    fn initial_state(&self) -> State {
        let threads = self.programs.len();
        State { shared: vec![0; 2], pc: vec![0; threads], local: vec![0; threads] }
    }

    fn enabled_threads(&self, state: &State, out: &mut Vec<ThreadId>) {
        for thread in 0..self.programs.len() {
            match self.op(state, thread) {
                None => {}
                Some(Op::Lock(var)) if state.shared[var] != 0 => {}
                Some(_) => out.push(thread as ThreadId),
            }
        }
    }

    fn step(&self, state: &mut State, choice: Choice, effects: &mut StepEffects<(), String>) {
        let t = choice.thread as usize;
        match self.op(state, t).expect("enabled") {
            Op::Store(var, value) => {
                match self.declared {
                    Declared::Write => effects.footprint.write(var as u64),
                    Declared::Read => effects.footprint.read(var as u64),
                    Declared::Nothing => {}
                }
                state.shared[var] = value;
            }
            Op::Load(var) => {
                effects.footprint.read(var as u64);
                state.local[t] = state.shared[var];
            }
            Op::Lock(var) => {
                match self.lock_as_read {
                    true => effects.footprint.read(var as u64),
                    false => effects.footprint.write(var as u64),
                }
                state.shared[var] = 1;
            }
        }
        state.pc[t] += 1;
    }

    fn encode(&self, state: &State, out: &mut Vec<u8>) {
        for value in state.shared.iter().chain(&state.local).copied().chain(state.pc.iter().map(|&pc| pc as i64)) {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn check_final(&self, _state: &State) -> Option<String> {
        None
    }

    fn changed_objects(&self, before: &State, after: &State, _thread: ThreadId, out: &mut Vec<u64>) {
        if self.names_changes {
            let changed = (0..before.shared.len()).filter(|&var| before.shared[var] != after.shared[var]);
            out.extend(changed.map(|var| var as u64));
        }
    }

    fn object_name(&self, object: u64) -> String {
        format!("x{object}")
    }
}

/// A writer and a reader of `x0`: the reader's value depends on the order.
fn writer_and_reader(declared: Declared) -> Variables {
    Variables::new(vec![vec![Op::Store(0, 1)], vec![Op::Load(0)]], declared)
}

fn search(model: &Variables) -> Verdict {
    let exhaustive = explore_exhaustive(model, Options::default()).verdict;
    let bounded = explore_bounded(model, Options::default(), 1).verdict;
    assert_eq!(bounded, Verdict::VerifiedBounded { preemptions_max: 1 });
    exhaustive
}

#[test]
fn correct_footprints_pass_the_audit() {
    let mut model = writer_and_reader(Declared::Write);
    model.names_changes = true;
    model.programs.push(vec![Op::Lock(1), Op::Store(0, 2), Op::Load(1)]);
    model.programs.push(vec![Op::Load(1), Op::Lock(1)]);
    assert_eq!(search(&model), Verdict::Verified);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "were treated as independent but do not commute: a footprint misses an access")]
fn a_write_declared_as_a_read_does_not_commute() {
    search(&writer_and_reader(Declared::Read));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "were treated as independent but do not commute: a footprint misses an access")]
fn a_write_declared_as_nothing_is_no_persistent_set() {
    search(&writer_and_reader(Declared::Nothing));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "step 0 changed x0 but its footprint does not write it")]
fn a_changed_object_the_footprint_does_not_write_is_reported() {
    let mut model = writer_and_reader(Declared::Read);
    model.names_changes = true;
    search(&model);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "disables the other or changes its number of outcomes")]
fn a_step_that_disables_an_independent_one_is_reported() {
    let mut model = Variables::new(vec![vec![Op::Lock(0)], vec![Op::Lock(0)]], Declared::Write);
    model.lock_as_read = true;
    search(&model);
}
