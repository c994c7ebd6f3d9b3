//! The footprint audit (debug builds only): partial-order reduction is sound only if every
//! step's footprint names every shared object it reads or writes, and nothing else checks a
//! model's footprints. Where the search treats two steps of different threads as independent
//! (a thread put to sleep for a sibling, a persistent set of one local thread), the audit runs
//! both orders from the frame's state and asserts that they commute; after every step of an
//! audited frame it asserts that every object the step changed
//! ([`Model::changed_objects`]) is written in its footprint.
//!
//! Release builds get the empty functions at the bottom of this file: the audit keeps no state
//! clone and runs no step there.

#[cfg(debug_assertions)]
pub(crate) use checks::*;
#[cfg(not(debug_assertions))]
pub(crate) use disabled::*;

#[cfg(debug_assertions)]
mod checks {
    use crate::{fingerprint, Choice, Footprint, Model, StepEffects, ThreadId};

    /// Every frame among the first this many is audited: small models (the tests' deliberately
    /// wrong ones) are audited everywhere.
    pub(crate) const AUDIT_FRAMES_ALL: u64 = 1_000;

    /// Beyond the first frames, one frame in this many is audited (the count of frames created,
    /// so the sample is deterministic). An audited frame costs a state clone, three steps per
    /// pair of outcomes and a fingerprint per order: this keeps the debug test suite within a
    /// few minutes on 2 cores.
    pub(crate) const AUDIT_EVERY: u64 = 64;

    /// At most this many outcomes of the other thread's step are paired with each audited
    /// step; a step with more is sampled evenly, its first and last outcome included.
    pub(crate) const OUTCOMES_AUDITED_MAX: u32 = 4;

    /// The frame's state, kept when the frame is audited (the search drops it otherwise once
    /// its successors exist).
    pub(crate) type Kept<S> = Option<S>;

    /// Which frames are audited.
    #[derive(Default)]
    pub(crate) struct Audit {
        frames: u64,
    }

    impl Audit {
        /// Decides whether the frame about to be expanded from `state` is audited, and keeps a
        /// clone of its state if so.
        pub(crate) fn keep<S: Clone>(&mut self, state: &S) -> Kept<S> {
            self.frames += 1;
            let due = self.frames <= AUDIT_FRAMES_ALL || self.frames.is_multiple_of(AUDIT_EVERY);
            due.then(|| state.clone())
        }
    }

    /// Asserts that every object the step of `choice` changed from `before` to `after` is
    /// written in its `footprint`.
    pub(crate) fn check_writes<M: Model>(
        model: &M,
        kept: &Kept<M::State>,
        after: &M::State,
        choice: Choice,
        footprint: &Footprint,
    ) {
        let Some(before) = kept else { return };
        let mut changed = Vec::new();
        model.changed_objects(before, after, choice.thread, &mut changed);
        if let Some(&object) = changed.iter().find(|&&object| !footprint.writes(object)) {
            let accesses: Vec<String> =
                footprint.accesses().iter().map(|a| format!("{:?} {}", a.kind, model.object_name(a.object))).collect();
            panic!(
                "step {choice} changed {} but its footprint does not write it: the footprint misses an access \
                 (footprint: [{}])",
                model.object_name(object),
                accesses.join(", ")
            );
        }
    }

    /// The threads a successor's sleep set keeps were treated as independent of its step:
    /// each must commute with it from the frame's state.
    pub(crate) fn check_sleep<M: Model>(
        model: &M,
        kept: &Kept<M::State>,
        choice: Choice,
        successor: &M::State,
        asleep: u32,
    ) {
        let Some(state) = kept else { return };
        for other in (0..32).filter(|&t| asleep & (1 << t) != 0 && t != choice.thread) {
            check_commute(model, state, choice, successor, other);
        }
    }

    /// A persistent set of one local thread treats every outcome of its step as independent
    /// of every other enabled thread's step. `local` holds that thread's successors.
    pub(crate) fn check_persistent<'s, M: Model>(
        model: &M,
        kept: &Kept<M::State>,
        local: impl Iterator<Item = (Choice, &'s M::State)>,
        enabled: &[ThreadId],
    ) where
        M::State: 's,
    {
        let Some(state) = kept else { return };
        for (choice, successor) in local {
            for &other in enabled.iter().filter(|&&t| t != choice.thread) {
                check_commute(model, state, choice, successor, other);
            }
        }
    }

    /// The outcomes of a step with `outcomes` of them that the audit pairs.
    fn sampled(outcomes: u32) -> impl Iterator<Item = u32> {
        let count = outcomes.min(OUTCOMES_AUDITED_MAX);
        (0..count).map(move |i| if count == outcomes { i } else { i * (outcomes - 1) / (count - 1) })
    }

    /// Steps `choice` on a clone of `state`; returns the successor and its footprint (a
    /// violation is the search's business, not the audit's).
    fn run<M: Model>(model: &M, state: &M::State, choice: Choice) -> (M::State, Footprint) {
        let mut next = state.clone();
        let mut effects = StepEffects::new(false);
        model.step(&mut next, choice, &mut effects);
        (next, effects.footprint)
    }

    fn state_fingerprint<M: Model>(model: &M, state: &M::State) -> u128 {
        let mut bytes = Vec::new();
        model.encode(state, &mut bytes);
        fingerprint(&bytes)
    }

    fn enabled<M: Model>(model: &M, state: &M::State, thread: ThreadId) -> bool {
        let mut threads = Vec::new();
        model.enabled_threads(state, &mut threads);
        threads.contains(&thread)
    }

    /// Asserts that `first` (whose successor from `state` is `after_first`) and every sampled
    /// outcome of `other`'s step commute from `state`: each stays enabled after the other with
    /// the same number of outcomes, and both orders reach the same fingerprint.
    fn check_commute<M: Model>(model: &M, state: &M::State, first: Choice, after_first: &M::State, other: ThreadId) {
        let independent = |second: Choice| format!("steps {first} and {second} were treated as independent but");
        assert!(enabled(model, state, other), "{} thread {other} is not enabled", independent(Choice::from(other)));
        let (first_outcomes, other_outcomes) = (model.outcomes(state, first.thread), model.outcomes(state, other));
        assert!(
            enabled(model, after_first, other) && model.outcomes(after_first, other) == other_outcomes,
            "{} step {first} disables the other or changes its number of outcomes: a footprint misses an access",
            independent(Choice::from(other))
        );
        for outcome in sampled(other_outcomes) {
            let second = Choice::new(other, outcome);
            let (after_second, second_footprint) = run(model, state, second);
            assert!(
                enabled(model, &after_second, first.thread)
                    && model.outcomes(&after_second, first.thread) == first_outcomes,
                "{} step {second} disables the other or changes its number of outcomes: a footprint misses an access",
                independent(second)
            );
            let (first_then_second, _) = run(model, after_first, second);
            let (second_then_first, _) = run(model, &after_second, first);
            if state_fingerprint(model, &first_then_second) != state_fingerprint(model, &second_then_first) {
                let first_footprint = run(model, state, first).1;
                let blame = blame(
                    model,
                    &first_then_second,
                    &second_then_first,
                    [(first, &first_footprint), (second, &second_footprint)],
                );
                panic!("{} do not commute: a footprint misses an access ({blame})", independent(second));
            }
        }
    }

    /// Names the objects on which the two orders disagree, and the steps whose footprint does
    /// not access them (one of those footprints misses the access).
    fn blame<M: Model>(model: &M, one: &M::State, other: &M::State, steps: [(Choice, &Footprint); 2]) -> String {
        let mut differ = Vec::new();
        // No thread's data is local here: a thread's own data that differs is named too.
        model.changed_objects(one, other, ThreadId::MAX, &mut differ);
        if differ.is_empty() {
            return "the orders differ in no object the model's changed_objects() names".to_string();
        }
        let named: Vec<String> = differ
            .iter()
            .map(|&object| {
                let missing: Vec<String> = steps
                    .iter()
                    .filter(|(_, footprint)| !footprint.accesses().iter().any(|a| a.object == object))
                    .map(|(choice, _)| choice.to_string())
                    .collect();
                format!(
                    "{} differs, not in the footprint of step(s) [{}]",
                    model.object_name(object),
                    missing.join(", ")
                )
            })
            .collect();
        named.join("; ")
    }
}

#[cfg(not(debug_assertions))]
mod disabled {
    use crate::{Choice, Footprint, Model, ThreadId};
    use std::marker::PhantomData;

    pub(crate) type Kept<S> = PhantomData<S>;

    #[derive(Default)]
    pub(crate) struct Audit;

    impl Audit {
        #[inline(always)]
        pub(crate) fn keep<S>(&mut self, _state: &S) -> Kept<S> {
            PhantomData
        }
    }

    #[inline(always)]
    pub(crate) fn check_writes<M: Model>(_: &M, _: &Kept<M::State>, _: &M::State, _: Choice, _: &Footprint) {}

    #[inline(always)]
    pub(crate) fn check_sleep<M: Model>(_: &M, _: &Kept<M::State>, _: Choice, _: &M::State, _: u32) {}

    /// The local steps are any iterator here: release builds never read them.
    #[inline(always)]
    pub(crate) fn check_persistent<M: Model, Local>(_: &M, _: &Kept<M::State>, _: Local, _: &[ThreadId]) {}
}
