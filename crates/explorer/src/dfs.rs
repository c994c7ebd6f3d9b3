//! Exhaustive depth-first search with visited-state hashing, and its preemption-bounded variant.
//!
//! Reduction (sound for safety: every reachable violation of a step or of a final state is
//! still reached):
//! - persistent sets of one *local* step: a step with an empty footprint commutes with every
//!   step of every other thread and stays enabled, so exploring it alone loses nothing; the
//!   cycle proviso (C3) expands the state fully when the step closes a cycle on the stack;
//! - sleep sets (Godefroid): after exploring `t` from `s`, a later sibling `u` independent of
//!   `t` need not explore `t` again. With state caching, a state keeps the set of threads
//!   explored from it; a revisit explores only what its own sleep set allows and was not
//!   explored before.
//!
//! The frontier (the stack of frames) holds plain model states and thread ids, so it can be
//! serialised for sharded search later.

use crate::audit::{self, Audit, Kept};
use crate::limits::Clock;
use crate::visited::{Key, KeyMap, StateTable};
use std::rc::Rc;

use crate::{
    fingerprint, Choice, Footprint, Limit, Model, Options, Outcome, Progress, Stats, StepEffects, ThreadId, Verdict,
};

/// A set of threads: a visited-set word holds one, so a model has at most 32 threads.
type ThreadSet = u32;

fn bit(thread: ThreadId) -> ThreadSet {
    assert!(thread < 32, "the explorer supports at most 32 threads");
    1 << thread
}

/// One successor computed for a frame: the choice, its next state and the step's footprint.
///
/// The successors of one thread (one per outcome of its step) are consecutive, and the search
/// treats them as one transition of that thread: they are explored together, a state's
/// covered set and a sleep set name the thread, and the footprint is the union of theirs.
struct Successor<S> {
    choice: Choice,
    /// Taken (not cloned) when the search enters it.
    state: Option<S>,
    /// The union of the footprints of the thread's outcomes, shared with the sleep sets it
    /// joins (the bounded search keeps none: see `local`).
    footprint: Rc<Footprint>,
    /// Every outcome of the thread's step had an empty footprint.
    local: bool,
    /// The state's fingerprint, when the persistent-set check already computed it.
    fingerprint: Option<u128>,
}

/// A sleep set: threads whose next step need not be explored, with that step's footprint
/// (the same step as when the thread was put to sleep, since only independent steps ran since).
#[derive(Clone, Default)]
struct SleepSet {
    threads: ThreadSet,
    footprints: Vec<(ThreadId, Rc<Footprint>)>,
}

impl SleepSet {
    fn add(&mut self, thread: ThreadId, footprint: &Rc<Footprint>) {
        if self.threads & bit(thread) == 0 {
            self.threads |= bit(thread);
            self.footprints.push((thread, Rc::clone(footprint)));
        }
    }

    /// The sleep set after `footprint`'s step: only the threads independent of it stay asleep.
    fn after(&self, footprint: &Footprint) -> SleepSet {
        let mut next = SleepSet::default();
        for (thread, sleeping) in &self.footprints {
            if !sleeping.conflicts_with(footprint) {
                next.add(*thread, sleeping);
            }
        }
        next
    }
}

/// A step that fired an oracle, and its choice.
type ViolatingStep<M> = (<M as Model>::Violation, Choice);

struct Frame<S> {
    fingerprint: u128,
    successors: Vec<Successor<S>>,
    /// Indices into `successors` still to explore, the next one last.
    todo: Vec<usize>,
    sleep: SleepSet,
    /// Successors already explored from this frame in this visit (they join later siblings'
    /// sleep sets).
    done: Vec<usize>,
    /// The frame's state, for the footprint audit (debug builds, audited frames).
    kept: Kept<S>,
}

struct Search<'m, 'o, M: Model> {
    model: &'m M,
    options: Options<'o>,
    clock: Clock,
    stats: Stats,
    /// Fingerprint → threads explored from the state (exhaustive) or best remaining preemption
    /// budget (bounded).
    visited: StateTable,
    /// Fingerprints on the current path, for the cycle proviso.
    on_stack: KeyMap<u32>,
    encode_buffer: Vec<u8>,
    final_states: Vec<u128>,
    effects: StepEffects<M::Event, M::Violation>,
    state_bytes: u64,
    /// The largest whole state seen ([`Model::state_bytes`]).
    state_bytes_whole: u64,
    /// The most a step copies beyond its encoding ([`Model::step_copy_bytes`]).
    step_copy_bytes: u64,
    /// States entered, for checking the clock every few thousand.
    entries: u64,
    /// Whether successors keep their step's footprint (for sleep sets).
    keep_footprints: bool,
    /// The footprint successors share when they keep none.
    no_footprint: Rc<Footprint>,
    audit: Audit,
}

impl<'m, 'o, M: Model> Search<'m, 'o, M> {
    fn new(model: &'m M, options: Options<'o>) -> Self {
        Search {
            model,
            options,
            clock: Clock::start(),
            stats: Stats::default(),
            visited: StateTable::default(),
            on_stack: KeyMap::default(),
            encode_buffer: Vec::new(),
            final_states: Vec::new(),
            effects: StepEffects::new(false),
            state_bytes: 0,
            state_bytes_whole: 0,
            step_copy_bytes: 0,
            entries: 0,
            keep_footprints: true,
            no_footprint: Rc::new(Footprint::default()),
            audit: Audit::default(),
        }
    }

    fn fingerprint_of(&mut self, state: &M::State) -> u128 {
        self.encode_buffer.clear();
        self.model.encode(state, &mut self.encode_buffer);
        self.state_bytes = self.state_bytes.max(self.encode_buffer.len() as u64);
        fingerprint(&self.encode_buffer)
    }

    fn memory_bytes(&self, depth: usize) -> u64 {
        // The visited table, one whole state (every part of it, once: the states on the stack
        // share what their steps did not change), and what the stack's states changed.
        let frame_bytes = self.state_bytes.saturating_mul(4).saturating_add(self.step_copy_bytes);
        let stack_bytes = (depth as u64).saturating_mul(frame_bytes);
        self.visited.memory_bytes().saturating_add(self.state_bytes_whole).saturating_add(stack_bytes)
    }

    /// Checks the limits (states at every state entered, the clock at every state, memory when
    /// [`Clock::check_due`]); returns the one hit.
    fn limit_hit(&mut self, depth: usize, state: &M::State) -> Option<Limit> {
        if self.stats.states_stored >= self.options.limits.states_max {
            return Some(Limit::States);
        }
        if self.clock.out_of_time(&self.options.limits) {
            return Some(Limit::Time);
        }
        self.entries += 1;
        // The first state is measured at once: a search that ends early still knows its size.
        if !self.clock.check_due(self.entries) && self.entries > 1 {
            return None;
        }
        self.state_bytes_whole = self.state_bytes_whole.max(self.model.state_bytes(state));
        self.step_copy_bytes = self.step_copy_bytes.max(self.model.step_copy_bytes(state));
        let memory_bytes = self.memory_bytes(depth);
        self.stats.memory_bytes_peak = self.stats.memory_bytes_peak.max(memory_bytes);
        if let Some(progress) = self.options.progress.as_mut() {
            progress(&Progress {
                states: self.stats.states,
                transitions: self.stats.transitions,
                depth: depth as u64,
                queue: depth as u64,
                elapsed_ms: self.clock.elapsed_ms(),
            });
        }
        if memory_bytes > self.options.limits.memory_bytes_max {
            return Some(Limit::Memory);
        }
        None
    }

    /// Runs the next step of every enabled thread not in `skip` from `state`, once per outcome.
    /// With reduction, stops at the first thread whose every outcome is a local step: they
    /// alone are a persistent set. A violating step ends the search. The last step steps
    /// `state` itself: a state is left behind once its successors exist, so it is cloned once
    /// fewer than it has successors. `kept` is `state` when the frame is audited.
    fn successors(
        &mut self,
        state: M::State,
        enabled: &[ThreadId],
        skip: ThreadSet,
        stop_at_local: bool,
        kept: &Kept<M::State>,
    ) -> Result<Vec<Successor<M::State>>, ViolatingStep<M>> {
        let threads: Vec<(ThreadId, u32)> = enabled
            .iter()
            .filter(|&&t| skip & bit(t) == 0)
            .map(|&t| (t, self.model.outcomes(&state, t).max(1)))
            .collect();
        let count: u32 = threads.iter().map(|&(_, outcomes)| outcomes).sum();
        let mut successors = Vec::with_capacity(count as usize);
        let mut owned = Some(state);
        let mut stepped = 0;
        for &(thread, outcomes) in &threads {
            let first = successors.len();
            let mut union = Footprint::default();
            for outcome in 0..outcomes {
                stepped += 1;
                let mut next = match stepped == count {
                    true => owned.take().expect("stepped last"),
                    false => owned.as_ref().expect("not stepped yet").clone(),
                };
                let choice = Choice::new(thread, outcome);
                self.effects.footprint.clear();
                self.effects.violation = None;
                self.model.step(&mut next, choice, &mut self.effects);
                self.stats.transitions += 1;
                if let Some(violation) = self.effects.violation.take() {
                    return Err((violation, choice));
                }
                audit::check_writes(self.model, kept, &next, choice, &self.effects.footprint);
                union.extend(&self.effects.footprint);
                successors.push(Successor {
                    choice,
                    state: Some(next),
                    footprint: Rc::clone(&self.no_footprint),
                    local: false,
                    fingerprint: None,
                });
            }
            union.normalize();
            let local = union.is_local();
            // Only sleep sets read a footprint again; the bounded search has none.
            let footprint = match self.keep_footprints {
                true => Rc::new(union),
                false => Rc::clone(&self.no_footprint),
            };
            for successor in &mut successors[first..] {
                successor.footprint = Rc::clone(&footprint);
                successor.local = local;
            }
            if local && stop_at_local {
                return Ok(successors.split_off(first));
            }
        }
        Ok(successors)
    }

    /// Runs the next step of `thread` (which has one outcome) on `state` itself, for a state with
    /// no other choice (its footprint is not needed, so not recorded).
    fn step_in_place(&mut self, state: &mut M::State, thread: ThreadId) -> Result<(), M::Violation> {
        self.effects.footprint.clear();
        self.effects.violation = None;
        self.effects.record_footprint = false;
        self.model.step(state, Choice::new(thread, 0), &mut self.effects);
        self.effects.record_footprint = true;
        self.stats.transitions += 1;
        self.effects.violation.take().map_or(Ok(()), Err)
    }

    fn finish(mut self, verdict: Verdict, violation: Option<(M::Violation, Vec<Choice>)>) -> Outcome<M::Violation> {
        self.stats.elapsed_ms = self.clock.elapsed_ms();
        self.stats.memory_bytes_peak = self.stats.memory_bytes_peak.max(self.memory_bytes(0));
        self.final_states.sort_unstable();
        self.final_states.dedup();
        Outcome { verdict, stats: self.stats, violation, final_states: self.final_states }
    }
}

fn schedule_of<S>(stack: &[Frame<S>]) -> Vec<Choice> {
    stack.iter().filter_map(|frame| frame.done.last().map(|&index| frame.successors[index].choice)).collect()
}

/// Exhaustive search. `Verified` only when it completed.
pub fn explore_exhaustive<M: Model>(model: &M, options: Options<'_>) -> Outcome<M::Violation> {
    let mut search = Search::new(model, options);
    let reduction = search.options.reduction;
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    // The state to enter next, its sleep set and its fingerprint if already known.
    let mut pending: Option<(M::State, SleepSet, Option<u128>)> =
        Some((model.initial_state(), SleepSet::default(), None));
    let mut enabled = Vec::new();
    loop {
        if let Some((state, sleep, known)) = pending.take() {
            if let Some(limit) = search.limit_hit(stack.len(), &state) {
                return search.finish(Verdict::LimitReached { limit }, None);
            }
            if stack.len() as u64 >= search.options.limits.depth_max {
                return search.finish(Verdict::LimitReached { limit: Limit::Depth }, None);
            }
            let fingerprint = match known {
                Some(fingerprint) => fingerprint,
                None => search.fingerprint_of(&state),
            };
            let key = Key::new(fingerprint);
            enabled.clear();
            model.enabled_threads(&state, &mut enabled);
            let all: ThreadSet = enabled.iter().fold(0, |set, &t| set | bit(t));
            // Threads covered from this state before: explored, or left out of its persistent set.
            let seen = search.visited.get(&key);
            let revisit = seen.is_some();
            let covered = seen.unwrap_or_else(|| {
                search.stats.states += 1;
                search.stats.states_stored += 1;
                0
            });
            if revisit && all & !sleep.threads & !covered == 0 {
                // Nothing new from here.
            } else if enabled.is_empty() {
                if let Some(violation) = model.check_final(&state) {
                    return search.finish(Verdict::Violation, Some((violation, schedule_of(&stack))));
                }
                search.visited.insert(key, ThreadSet::MAX);
                if search.options.collect_final_states {
                    search.final_states.push(fingerprint);
                }
            } else {
                let skip = if reduction { sleep.threads | covered } else { covered };
                let kept = search.audit.keep(&state);
                let successors = match search.successors(state, &enabled, skip, reduction, &kept) {
                    Ok(successors) => successors,
                    Err((violation, choice)) => {
                        let mut schedule = schedule_of(&stack);
                        schedule.push(choice);
                        return search.finish(Verdict::Violation, Some((violation, schedule)));
                    }
                };
                let mut successors = successors;
                let persistent =
                    persistent_set(&mut successors, all, reduction, &search.on_stack, &mut search.encode_buffer, model);
                if persistent != all {
                    let local = successors.iter().filter(|s| persistent & bit(s.choice.thread) != 0);
                    let local = local.map(|s| (s.choice, s.state.as_ref().expect("not entered yet")));
                    audit::check_persistent(model, &kept, local, &enabled);
                }
                let todo: Vec<usize> = (0..successors.len())
                    .rev()
                    .filter(|&i| persistent & bit(successors[i].choice.thread) != 0)
                    .collect();
                let newly: ThreadSet = todo.iter().fold(0, |set, &index| set | bit(successors[index].choice.thread));
                search.visited.insert(key, covered | newly | (all & !persistent));
                if !todo.is_empty() {
                    *search.on_stack.entry(key).or_insert(0) += 1;
                    stack.push(Frame { fingerprint, successors, todo, sleep, done: Vec::new(), kept });
                    search.stats.depth_max = search.stats.depth_max.max(stack.len() as u64);
                }
            }
        }
        // Choose the next successor of the top frame, or pop it.
        let Some(frame) = stack.last_mut() else {
            return search.finish(Verdict::Verified, None);
        };
        if frame.todo.is_empty() {
            let key = Key::new(frame.fingerprint);
            stack.pop();
            if let Some(count) = search.on_stack.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    search.on_stack.remove(&key);
                }
            }
            continue;
        }
        let index = frame.todo.pop().expect("not empty");
        let sleep = if reduction {
            // The threads explored before this one, each with all its outcomes (they are
            // consecutive); the other outcomes of this successor's own thread are not independent
            // of it.
            let thread = frame.successors[index].choice.thread;
            let mut asleep = frame.sleep.clone();
            for &earlier in frame.done.iter().filter(|&&earlier| frame.successors[earlier].choice.thread != thread) {
                asleep.add(frame.successors[earlier].choice.thread, &frame.successors[earlier].footprint);
            }
            asleep.after(&frame.successors[index].footprint)
        } else {
            SleepSet::default()
        };
        frame.done.push(index);
        let successor = &mut frame.successors[index];
        let state = successor.state.take().expect("each successor is entered once");
        audit::check_sleep(model, &frame.kept, successor.choice, &state, sleep.threads);
        pending = Some((state, sleep, successor.fingerprint));
    }
}

/// The threads to explore from a state: one thread whose step is local in every outcome when
/// there is one (and none of its outcomes closes a cycle on the stack), otherwise every enabled
/// thread.
fn persistent_set<M: Model>(
    successors: &mut [Successor<M::State>],
    all: ThreadSet,
    reduction: bool,
    on_stack: &KeyMap<u32>,
    encode_buffer: &mut Vec<u8>,
    model: &M,
) -> ThreadSet {
    if !reduction {
        return all;
    }
    let Some(thread) = successors.iter().find(|s| s.local).map(|s| s.choice.thread) else {
        return all;
    };
    let mut closes_cycle = false;
    for local in successors.iter_mut().filter(|s| s.choice.thread == thread) {
        encode_buffer.clear();
        model.encode(local.state.as_ref().expect("not entered yet"), encode_buffer);
        let local_fingerprint = fingerprint(encode_buffer);
        // Kept for when the search enters the state: it need not be encoded twice.
        local.fingerprint = Some(local_fingerprint);
        closes_cycle |= on_stack.contains_key(&Key::new(local_fingerprint));
    }
    match closes_cycle {
        true => all,
        false => bit(thread),
    }
}

/// No running thread (or one that cannot continue): the next choice costs no preemption.
const FREE: ThreadId = ThreadId::MAX;

/// The largest preemption bound a visited-set word holds: a larger one is searched, and
/// reported, as this one (the CLI refuses larger ones).
const BUDGET_MAX: u32 = (1 << 24) - 1;

/// The largest preemption bound [`explore_bounded`] searches as given.
pub const PREEMPTION_BOUND_MAX: u32 = BUDGET_MAX;

/// A bounded search's visit of a state: the preemptions left and the running thread.
#[derive(Clone, Copy, PartialEq, Eq)]
struct BoundedVisit {
    budget: u32,
    running: ThreadId,
}

impl BoundedVisit {
    /// The running thread in the top 8 bits (all ones when free), the budget below.
    fn pack(self) -> u32 {
        let running = if self.running == FREE { 0xff } else { self.running };
        running << 24 | self.budget
    }

    fn unpack(word: u32) -> BoundedVisit {
        let running = match word >> 24 {
            0xff => FREE,
            thread => thread,
        };
        BoundedVisit { budget: word & BUDGET_MAX, running }
    }

    /// Every schedule `other` may run is within this visit's budget, so exploring `other`
    /// after this one finds nothing new. A schedule's preemptions counted from two running
    /// threads differ only in its first step, by at most one; counted with no running thread
    /// they are never more.
    fn covers(self, other: BoundedVisit) -> bool {
        other.budget < self.budget
            || (other.budget == self.budget && (self.running == other.running || self.running == FREE))
    }

    /// Which of two visits the visited set keeps: the larger budget, then the free one.
    fn outranks(self, other: BoundedVisit) -> bool {
        self.budget > other.budget || (self.budget == other.budget && self.running == FREE)
    }
}

/// One in this many states of a run without choices is stored (by [`Model::sample_key`]). A
/// power of two: [`is_sample_point`] takes the key's top bits.
const SAMPLE_EVERY: u64 = 8;
const _: () = assert!(SAMPLE_EVERY.is_power_of_two());

/// Whether a state with this sample key is stored: the key is mixed first (Fibonacci hashing)
/// so that a cheap key with poor low bits still samples evenly.
fn is_sample_point(key: u64) -> bool {
    key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SAMPLE_EVERY.trailing_zeros()) == 0
}

/// A run without choices stores a state at least this often, whatever the sample keys say: a
/// run that comes back to a state (a retry loop) is then caught on its second lap.
const UNSTORED_RUN_MAX: u32 = 32;

/// Exhaustive search of the schedules with at most `preemptions_max` preemptions (a switch away
/// from a thread that could have continued), as in CHESS. The visited set keeps, per state, the
/// largest remaining budget and its running thread, and a state is revisited only when that
/// visit does not cover the new one ([`BoundedVisit::covers`]).
///
/// Most states of a bounded search lie on runs without choices: once the budget is spent, the
/// running thread continues alone (96% of the states of `madv-free-dio-window` at bound 2).
/// Such a state is looked up and stored only at sample points ([`SAMPLE_EVERY`],
/// [`UNSTORED_RUN_MAX`]). Two runs that meet share every later state, so the second stops at
/// the next sample point, a few steps later; a state that is not stored is only explored again,
/// never skipped, so this costs time, not soundness. `Stats::states` counts such a state at
/// every visit.
pub fn explore_bounded<M: Model>(model: &M, options: Options<'_>, preemptions_max: u32) -> Outcome<M::Violation> {
    let mut search = Search::new(model, options);
    search.keep_footprints = false;
    // The bound searched, and so the one the verdict names.
    let preemptions_max = preemptions_max.min(BUDGET_MAX);
    /// A successor: its choice, its state, the budget left and the length of the run without a
    /// stored state that it continues.
    type Next<S> = (Choice, Option<S>, u32, u32);
    struct BoundedFrame<S> {
        successors: Vec<Next<S>>,
        next: usize,
        chosen: Option<Choice>,
    }
    let mut stack: Vec<BoundedFrame<M::State>> = Vec::new();
    let mut pending = Some((model.initial_state(), None::<ThreadId>, preemptions_max, 0u32));
    let mut enabled = Vec::new();
    loop {
        if let Some((state, running, budget, unstored)) = pending.take() {
            if let Some(limit) = search.limit_hit(stack.len(), &state) {
                return search.finish(Verdict::LimitReached { limit }, None);
            }
            if stack.len() as u64 >= search.options.limits.depth_max {
                return search.finish(Verdict::LimitReached { limit: Limit::Depth }, None);
            }
            enabled.clear();
            model.enabled_threads(&state, &mut enabled);
            // A running thread that cannot continue makes every choice free: its identity no
            // longer matters.
            let running = running.filter(|r| enabled.contains(r));
            // One step to run: the only thread enabled, or the running one with no budget left,
            // and its step has one outcome.
            let alone = match running {
                Some(running) if budget == 0 => Some(running),
                _ => (enabled.len() == 1).then(|| enabled[0]),
            };
            let no_choice = alone.is_some_and(|thread| model.outcomes(&state, thread) == 1);
            let stored = !no_choice || unstored >= UNSTORED_RUN_MAX || is_sample_point(model.sample_key(&state));
            let key = stored.then(|| Key::new(search.fingerprint_of(&state)));
            let visit = BoundedVisit { budget, running: running.unwrap_or(FREE) };
            let before = key.and_then(|key| search.visited.get(&key).map(BoundedVisit::unpack));
            let fresh = match before {
                None => {
                    search.stats.states += 1;
                    true
                }
                Some(before) => !before.covers(visit),
            };
            if fresh {
                if let Some(key) = key.filter(|_| before.is_none_or(|before| visit.outranks(before))) {
                    search.stats.states_stored += u64::from(before.is_none());
                    search.visited.insert(key, visit.pack());
                }
                let unstored = if stored { 0 } else { unstored + 1 };
                if no_choice {
                    // One thread runs, at no cost (with no budget left, only the running thread
                    // may continue): it steps the state itself, and its frame holds no successor
                    // list.
                    let thread = alone.expect("no choice: one thread runs");
                    let mut state = state;
                    if let Err(violation) = search.step_in_place(&mut state, thread) {
                        let mut schedule: Vec<Choice> = stack.iter().filter_map(|f| f.chosen).collect();
                        schedule.push(Choice::new(thread, 0));
                        return search.finish(Verdict::Violation, Some((violation, schedule)));
                    }
                    stack.push(BoundedFrame { successors: Vec::new(), next: 0, chosen: Some(Choice::new(thread, 0)) });
                    search.stats.depth_max = search.stats.depth_max.max(stack.len() as u64);
                    pending = Some((state, Some(thread), budget, unstored));
                    continue;
                }
                if enabled.is_empty() {
                    if let Some(violation) = model.check_final(&state) {
                        let schedule: Vec<Choice> = stack.iter().filter_map(|f| f.chosen).collect();
                        return search.finish(Verdict::Violation, Some((violation, schedule)));
                    }
                    if search.options.collect_final_states {
                        let fingerprint = search.fingerprint_of(&state);
                        search.final_states.push(fingerprint);
                    }
                } else {
                    // With no budget left only the running thread may continue (its step has
                    // several outcomes, or it would have run in place above).
                    let enabled: &[ThreadId] = match alone {
                        Some(thread) if budget == 0 => {
                            std::slice::from_ref(enabled.iter().find(|&&t| t == thread).expect("enabled"))
                        }
                        _ => &enabled,
                    };
                    // The running thread goes first; if its step is local it alone continues: a
                    // preemption before a local step reaches what the same preemption right after
                    // it reaches, at the same cost (the thread is still enabled after it).
                    let first = running.filter(|_| search.options.reduction);
                    let kept = search.audit.keep(&state);
                    let successors = match first {
                        Some(r) => match search.successors(state.clone(), &[r], 0, true, &kept) {
                            Ok(mine) if mine[0].local => {
                                let local = mine.iter().map(|s| (s.choice, s.state.as_ref().expect("not entered")));
                                audit::check_persistent(model, &kept, local, enabled);
                                Ok(mine)
                            }
                            Ok(mut mine) => search.successors(state, enabled, bit(r), false, &kept).map(|others| {
                                mine.extend(others);
                                mine
                            }),
                            Err(error) => Err(error),
                        },
                        None => search.successors(state, enabled, 0, false, &kept),
                    };
                    let successors = match successors {
                        Ok(successors) => successors,
                        Err((violation, choice)) => {
                            let mut schedule: Vec<Choice> = stack.iter().filter_map(|f| f.chosen).collect();
                            schedule.push(choice);
                            return search.finish(Verdict::Violation, Some((violation, schedule)));
                        }
                    };
                    let mut choices = Vec::with_capacity(successors.len());
                    for successor in successors {
                        let preempts = running.is_some_and(|r| r != successor.choice.thread);
                        let cost = u32::from(preempts);
                        if cost <= budget {
                            choices.push((successor.choice, successor.state, budget - cost, unstored));
                        }
                    }
                    // Continue the running thread first: schedules without preemption come first.
                    choices.sort_by_key(|(choice, _, left, _)| (std::cmp::Reverse(*left), *choice));
                    stack.push(BoundedFrame { successors: choices, next: 0, chosen: None });
                    search.stats.depth_max = search.stats.depth_max.max(stack.len() as u64);
                }
            }
        }
        let Some(frame) = stack.last_mut() else {
            let verdict = Verdict::VerifiedBounded { preemptions_max };
            return search.finish(verdict, None);
        };
        if frame.next == frame.successors.len() {
            stack.pop();
            continue;
        }
        let (choice, state, left, unstored) = &mut frame.successors[frame.next];
        frame.next += 1;
        frame.chosen = Some(*choice);
        pending = Some((state.take().expect("each successor is entered once"), Some(choice.thread), *left, *unstored));
    }
}
