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
//! The frontier (the stack of frames) holds model states, choices, and the step footprints
//! that sleep sets share through `Rc`: it is neither `Send` nor serialisable as it stands, so a
//! parallel or sharded search must first give frames owned (or `Arc`) footprints.

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

/// What a frame of the search's stack holds, in bytes: the frame itself, its lists, and the
/// states it holds (its own, which the path shares, and its successors not entered yet), each
/// at `held_state_bytes`.
trait FrameBytes {
    fn bytes(&self, held_state_bytes: u64) -> u64;
}

impl<S> FrameBytes for Frame<S> {
    fn bytes(&self, held_state_bytes: u64) -> u64 {
        let held = self.successors.iter().filter(|s| s.state.is_some()).count() as u64 + 1;
        let lists = self.successors.capacity() * std::mem::size_of::<Successor<S>>()
            + (self.todo.capacity() + self.done.capacity()) * std::mem::size_of::<usize>()
            + self.sleep.footprints.capacity() * std::mem::size_of::<(ThreadId, Rc<Footprint>)>();
        let own = (std::mem::size_of::<Self>() + lists) as u64;
        own.saturating_add(held.saturating_mul(held_state_bytes))
    }
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

    /// The memory a search holds: the visited table, one whole state (every part of it, once:
    /// the states on the stack share what their steps did not change), and what its frames hold.
    fn memory_bytes(&self, stack_bytes: u64) -> u64 {
        self.visited.memory_bytes().saturating_add(self.state_bytes_whole).saturating_add(stack_bytes)
    }

    /// What one state held on the stack may own beyond what it shares: its encoding's worth of
    /// changed parts (four times over: a step changes a folio, its page tables, a thread and a
    /// frame) and the largest copy a step makes ([`Model::step_copy_bytes`]).
    fn held_state_bytes(&self) -> u64 {
        self.state_bytes.saturating_mul(4).saturating_add(self.step_copy_bytes)
    }

    /// Checks the limits (states at every state entered, the clock at every state, memory when
    /// [`Clock::check_due`]); returns the one hit.
    fn limit_hit<F: FrameBytes>(&mut self, stack: &[F], state: &M::State) -> Option<Limit> {
        let depth = stack.len();
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
        let held_state_bytes = self.held_state_bytes();
        let stack_bytes = stack.iter().fold(0u64, |sum, frame| sum.saturating_add(frame.bytes(held_state_bytes)));
        let memory_bytes = self.memory_bytes(stack_bytes);
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
                self.effects.labels.clear();
                self.effects.violation = None;
                self.model.step(&mut next, choice, &mut self.effects);
                self.stats.reached.add(&self.effects.labels);
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
        self.effects.labels.clear();
        self.effects.violation = None;
        self.effects.record_footprint = false;
        self.model.step(state, Choice::new(thread, 0), &mut self.effects);
        self.stats.reached.add(&self.effects.labels);
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

/// How a search ended: its verdict and the violation with its schedule, if any.
type End<V> = (Verdict, Option<(V, Vec<Choice>)>);

/// The state the exhaustive search enters next: its sleep set and its fingerprint if known.
type Pending<S> = (S, SleepSet, Option<u128>);

/// Exhaustive search. `Verified` only when it completed.
pub fn explore_exhaustive<M: Model>(model: &M, options: Options<'_>) -> Outcome<M::Violation> {
    let mut run = Exhaustive { search: Search::new(model, options), stack: Vec::new(), enabled: Vec::new() };
    let mut pending = Some((model.initial_state(), SleepSet::default(), None));
    loop {
        if let Some(entered) = pending.take() {
            if let Err((verdict, violation)) = run.enter(entered) {
                return run.search.finish(verdict, violation);
            }
        }
        match run.next() {
            Some(next) => pending = next,
            None => return run.search.finish(Verdict::Verified, None),
        }
    }
}

/// The exhaustive search's stack of frames and its scratch list of enabled threads.
struct Exhaustive<'m, 'o, M: Model> {
    search: Search<'m, 'o, M>,
    stack: Vec<Frame<M::State>>,
    enabled: Vec<ThreadId>,
}

impl<M: Model> Exhaustive<'_, '_, M> {
    /// Enters a state: checks the limits, then a final state's oracle or the state's frame of
    /// successors, unless a visit before covered every thread its sleep set leaves.
    fn enter(&mut self, (state, sleep, known): Pending<M::State>) -> Result<(), End<M::Violation>> {
        let search = &mut self.search;
        if let Some(limit) = search.limit_hit(&self.stack, &state) {
            return Err((Verdict::LimitReached { limit }, None));
        }
        if self.stack.len() as u64 >= search.options.limits.depth_max {
            return Err((Verdict::LimitReached { limit: Limit::Depth }, None));
        }
        let fingerprint = known.unwrap_or_else(|| search.fingerprint_of(&state));
        let key = Key::new(fingerprint);
        self.enabled.clear();
        search.model.enabled_threads(&state, &mut self.enabled);
        let all: ThreadSet = self.enabled.iter().fold(0, |set, &t| set | bit(t));
        // Threads covered from this state before: explored, or left out of its persistent set.
        let seen = search.visited.get(&key);
        let covered = seen.unwrap_or_else(|| {
            search.stats.states += 1;
            search.stats.states_stored += 1;
            0
        });
        if seen.is_some() && all & !sleep.threads & !covered == 0 {
            return Ok(()); // Nothing new from here.
        }
        if self.enabled.is_empty() {
            return self.final_state(&state, fingerprint);
        }
        self.expand(state, sleep, fingerprint, covered, all)
    }

    /// A state where no thread is enabled: the final oracle, then it is visited for good.
    fn final_state(&mut self, state: &M::State, fingerprint: u128) -> Result<(), End<M::Violation>> {
        let search = &mut self.search;
        if let Some(violation) = search.model.check_final(state) {
            return Err((Verdict::Violation, Some((violation, schedule_of(&self.stack)))));
        }
        search.visited.insert(Key::new(fingerprint), ThreadSet::MAX);
        if search.options.collect_final_states {
            search.final_states.push(fingerprint);
        }
        Ok(())
    }

    /// Computes a state's successors, picks the persistent set among them and pushes the frame
    /// of those still to explore; the visited set records what this visit covers.
    fn expand(
        &mut self,
        state: M::State,
        sleep: SleepSet,
        fingerprint: u128,
        covered: ThreadSet,
        all: ThreadSet,
    ) -> Result<(), End<M::Violation>> {
        let (search, enabled) = (&mut self.search, &self.enabled);
        let reduction = search.options.reduction;
        let skip = if reduction { sleep.threads | covered } else { covered };
        let kept = search.audit.keep(&state);
        let mut successors = match search.successors(state, enabled, skip, reduction, &kept) {
            Ok(successors) => successors,
            Err((violation, choice)) => {
                let mut schedule = schedule_of(&self.stack);
                schedule.push(choice);
                return Err((Verdict::Violation, Some((violation, schedule))));
            }
        };
        let persistent =
            persistent_set(&mut successors, all, reduction, &search.on_stack, &mut search.encode_buffer, search.model);
        if persistent != all {
            let local = successors.iter().filter(|s| persistent & bit(s.choice.thread) != 0);
            let local = local.map(|s| (s.choice, s.state.as_ref().expect("not entered yet")));
            audit::check_persistent(search.model, &kept, local, enabled);
        }
        let todo: Vec<usize> =
            (0..successors.len()).rev().filter(|&i| persistent & bit(successors[i].choice.thread) != 0).collect();
        let newly: ThreadSet = todo.iter().fold(0, |set, &index| set | bit(successors[index].choice.thread));
        let key = Key::new(fingerprint);
        search.visited.insert(key, covered | newly | (all & !persistent));
        if !todo.is_empty() {
            *search.on_stack.entry(key).or_insert(0) += 1;
            self.stack.push(Frame { fingerprint, successors, todo, sleep, done: Vec::new(), kept });
            search.stats.depth_max = search.stats.depth_max.max(self.stack.len() as u64);
        }
        Ok(())
    }

    /// The top frame's next successor to enter (`Some(None)` after popping a finished frame),
    /// or `None` when the stack is empty: the search is complete.
    fn next(&mut self) -> Option<Option<Pending<M::State>>> {
        let frame = self.stack.last_mut()?;
        if frame.todo.is_empty() {
            self.pop();
            return Some(None);
        }
        let index = frame.todo.pop().expect("not empty");
        let sleep = match self.search.options.reduction {
            true => frame.sleep_after(index),
            false => SleepSet::default(),
        };
        frame.done.push(index);
        let successor = &mut frame.successors[index];
        let state = successor.state.take().expect("each successor is entered once");
        audit::check_sleep(self.search.model, &frame.kept, successor.choice, &state, sleep.threads);
        Some(Some((state, sleep, successor.fingerprint)))
    }

    /// Pops the top frame: its state leaves the path the cycle proviso looks at.
    fn pop(&mut self) {
        let frame = self.stack.pop().expect("a frame to pop");
        let key = Key::new(frame.fingerprint);
        if let Some(count) = self.search.on_stack.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.search.on_stack.remove(&key);
            }
        }
    }
}

impl<S> Frame<S> {
    /// The sleep set of successor `index`: the frame's, with the threads explored before it
    /// (each with all its outcomes: they are consecutive; the other outcomes of the successor's
    /// own thread are not independent of it), less those its step conflicts with.
    fn sleep_after(&self, index: usize) -> SleepSet {
        let thread = self.successors[index].choice.thread;
        let mut asleep = self.sleep.clone();
        for &earlier in self.done.iter().filter(|&&earlier| self.successors[earlier].choice.thread != thread) {
            asleep.add(self.successors[earlier].choice.thread, &self.successors[earlier].footprint);
        }
        asleep.after(&self.successors[index].footprint)
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
    let mut run = Bounded { search, stack: Vec::new(), enabled: Vec::new() };
    // The bound searched, and so the one the verdict names.
    let preemptions_max = preemptions_max.min(BUDGET_MAX);
    let mut pending =
        Some(BoundedEntry { state: model.initial_state(), running: None, budget: preemptions_max, unstored: 0 });
    loop {
        if let Some(entry) = pending.take() {
            match run.enter(entry) {
                Ok(next) => pending = next,
                Err((verdict, violation)) => return run.search.finish(verdict, violation),
            }
            if pending.is_some() {
                continue;
            }
        }
        let Some(frame) = run.stack.last_mut() else {
            let verdict = Verdict::VerifiedBounded { preemptions_max };
            return run.search.finish(verdict, None);
        };
        if frame.next == frame.successors.len() {
            run.stack.pop();
            continue;
        }
        let (choice, state, left, unstored) = &mut frame.successors[frame.next];
        frame.next += 1;
        frame.chosen = Some(*choice);
        let state = state.take().expect("each successor is entered once");
        pending = Some(BoundedEntry { state, running: Some(choice.thread), budget: *left, unstored: *unstored });
    }
}

/// A state the bounded search enters: the thread that ran last, the preemptions left and the
/// length of the run without a stored state that it continues.
struct BoundedEntry<S> {
    state: S,
    running: Option<ThreadId>,
    budget: u32,
    unstored: u32,
}

/// A successor: its choice, its state, the budget left and the length of the run without a
/// stored state that it continues.
type Next<S> = (Choice, Option<S>, u32, u32);

struct BoundedFrame<S> {
    successors: Vec<Next<S>>,
    next: usize,
    chosen: Option<Choice>,
}

impl<S> FrameBytes for BoundedFrame<S> {
    fn bytes(&self, held_state_bytes: u64) -> u64 {
        let held = self.successors.iter().filter(|s| s.1.is_some()).count() as u64 + 1;
        let own = std::mem::size_of::<Self>() + self.successors.capacity() * std::mem::size_of::<Next<S>>();
        (own as u64).saturating_add(held.saturating_mul(held_state_bytes))
    }
}

/// The bounded search's stack of frames and its scratch list of enabled threads.
struct Bounded<'m, 'o, M: Model> {
    search: Search<'m, 'o, M>,
    stack: Vec<BoundedFrame<M::State>>,
    enabled: Vec<ThreadId>,
}

impl<M: Model> Bounded<'_, '_, M> {
    fn schedule(&self) -> Vec<Choice> {
        self.stack.iter().filter_map(|f| f.chosen).collect()
    }

    /// Enters a state: checks the limits and the visited set, then steps a run without choices
    /// in place (returning its next state to enter at once), checks a final state, or pushes
    /// the frame of the choices within the budget.
    fn enter(&mut self, entry: BoundedEntry<M::State>) -> Result<Option<BoundedEntry<M::State>>, End<M::Violation>> {
        let BoundedEntry { state, running, budget, unstored } = entry;
        let search = &mut self.search;
        if let Some(limit) = search.limit_hit(&self.stack, &state) {
            return Err((Verdict::LimitReached { limit }, None));
        }
        if self.stack.len() as u64 >= search.options.limits.depth_max {
            return Err((Verdict::LimitReached { limit: Limit::Depth }, None));
        }
        self.enabled.clear();
        search.model.enabled_threads(&state, &mut self.enabled);
        // A running thread that cannot continue makes every choice free: its identity no
        // longer matters.
        let running = running.filter(|r| self.enabled.contains(r));
        // One step to run: the only thread enabled, or the running one with no budget left,
        // and its step has one outcome.
        let alone = match running {
            Some(running) if budget == 0 => Some(running),
            _ => (self.enabled.len() == 1).then(|| self.enabled[0]),
        };
        let no_choice = alone.is_some_and(|thread| search.model.outcomes(&state, thread) == 1);
        let stored = !no_choice
            || search.options.store_every_state
            || unstored >= UNSTORED_RUN_MAX
            || is_sample_point(search.model.sample_key(&state));
        let visit = BoundedVisit { budget, running: running.unwrap_or(FREE) };
        if !self.visit(&state, stored, visit) {
            return Ok(None);
        }
        let unstored = if stored { 0 } else { unstored + 1 };
        if no_choice {
            let thread = alone.expect("no choice: one thread runs");
            return self.run_alone(state, thread, budget, unstored).map(Some);
        }
        if self.enabled.is_empty() {
            return self.final_state(&state).map(|()| None);
        }
        self.branch(state, running, alone, budget, unstored).map(|()| None)
    }

    /// Looks a state up (when it is stored) and records the visit: whether it is fresh, that is
    /// not covered by an earlier visit ([`BoundedVisit::covers`]).
    fn visit(&mut self, state: &M::State, stored: bool, visit: BoundedVisit) -> bool {
        let search = &mut self.search;
        let key = stored.then(|| Key::new(search.fingerprint_of(state)));
        let before = key.and_then(|key| search.visited.get(&key).map(BoundedVisit::unpack));
        match before {
            None => search.stats.states += 1,
            Some(before) if before.covers(visit) => return false,
            Some(_) => {}
        }
        if let Some(key) = key.filter(|_| before.is_none_or(|before| visit.outranks(before))) {
            search.stats.states_stored += u64::from(before.is_none());
            search.visited.insert(key, visit.pack());
        }
        true
    }

    /// One thread runs, at no cost (with no budget left, only the running thread may
    /// continue): it steps the state itself, and its frame holds no successor list.
    fn run_alone(
        &mut self,
        mut state: M::State,
        thread: ThreadId,
        budget: u32,
        unstored: u32,
    ) -> Result<BoundedEntry<M::State>, End<M::Violation>> {
        if let Err(violation) = self.search.step_in_place(&mut state, thread) {
            let mut schedule = self.schedule();
            schedule.push(Choice::new(thread, 0));
            return Err((Verdict::Violation, Some((violation, schedule))));
        }
        self.stack.push(BoundedFrame { successors: Vec::new(), next: 0, chosen: Some(Choice::new(thread, 0)) });
        self.search.stats.depth_max = self.search.stats.depth_max.max(self.stack.len() as u64);
        Ok(BoundedEntry { state, running: Some(thread), budget, unstored })
    }

    fn final_state(&mut self, state: &M::State) -> Result<(), End<M::Violation>> {
        if let Some(violation) = self.search.model.check_final(state) {
            return Err((Verdict::Violation, Some((violation, self.schedule()))));
        }
        if self.search.options.collect_final_states {
            let fingerprint = self.search.fingerprint_of(state);
            self.search.final_states.push(fingerprint);
        }
        Ok(())
    }

    /// Pushes the frame of a state's successors within the budget, the running thread's first.
    fn branch(
        &mut self,
        state: M::State,
        running: Option<ThreadId>,
        alone: Option<ThreadId>,
        budget: u32,
        unstored: u32,
    ) -> Result<(), End<M::Violation>> {
        let successors = match self.successors(state, running, alone, budget) {
            Ok(successors) => successors,
            Err((violation, choice)) => {
                let mut schedule = self.schedule();
                schedule.push(choice);
                return Err((Verdict::Violation, Some((violation, schedule))));
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
        self.stack.push(BoundedFrame { successors: choices, next: 0, chosen: None });
        self.search.stats.depth_max = self.search.stats.depth_max.max(self.stack.len() as u64);
        Ok(())
    }

    /// The successors to branch on. With no budget left only the running thread may continue
    /// (its step has several outcomes, or it would have run in place). The running thread goes
    /// first; if its step is local it alone continues: a preemption before a local step
    /// reaches what the same preemption right after it reaches, at the same cost (the thread
    /// is still enabled after it).
    fn successors(
        &mut self,
        state: M::State,
        running: Option<ThreadId>,
        alone: Option<ThreadId>,
        budget: u32,
    ) -> Result<Vec<Successor<M::State>>, ViolatingStep<M>> {
        let search = &mut self.search;
        let enabled: &[ThreadId] = match alone {
            Some(thread) if budget == 0 => {
                std::slice::from_ref(self.enabled.iter().find(|&&t| t == thread).expect("enabled"))
            }
            _ => &self.enabled,
        };
        let first = running.filter(|_| search.options.reduction);
        let kept = search.audit.keep(&state);
        let Some(r) = first else {
            return search.successors(state, enabled, 0, false, &kept);
        };
        let mut mine = search.successors(state.clone(), &[r], 0, true, &kept)?;
        if mine[0].local {
            let local = mine.iter().map(|s| (s.choice, s.state.as_ref().expect("not entered")));
            audit::check_persistent(search.model, &kept, local, enabled);
            return Ok(mine);
        }
        let others = search.successors(state, enabled, bit(r), false, &kept)?;
        mine.extend(others);
        Ok(mine)
    }
}
