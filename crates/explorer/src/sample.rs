//! Sampling strategies for scenarios too large to exhaust: uniform random walks and PCT
//! (probabilistic concurrency testing: random thread priorities with `depth - 1` priority change
//! points). Both are seeded and deterministic; neither can verify anything.

use crate::limits::Clock;
use crate::{run_schedule, Choice, Limit, Model, Options, Outcome, Progress, ScheduleEnd, Stats, Verdict};

/// A tiny, fixed pseudo-random generator (SplitMix64): the same sequence on every machine and
/// every version of every crate.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound` (bound > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// One sampled schedule: its violation, its choices and how it ended.
type Sampled<M> = (Option<<M as Model>::Violation>, Vec<Choice>, ScheduleEnd);

fn sample<M: Model>(
    model: &M,
    mut options: Options<'_>,
    mut run_one: impl FnMut(&M, &Options<'_>, &mut Clock, &mut Stats) -> Sampled<M>,
) -> Outcome<M::Violation> {
    let mut clock = Clock::start();
    let mut stats = Stats::default();
    let mut truncated = false;
    let end = |verdict, mut stats: Stats, clock: &Clock, violation| {
        stats.elapsed_ms = clock.elapsed_ms();
        Outcome { verdict, stats, violation, final_states: Vec::new() }
    };
    while stats.schedules < options.limits.schedules_max {
        let (violation, schedule, ended) = run_one(model, &options, &mut clock, &mut stats);
        stats.schedules += 1;
        stats.states = stats.transitions;
        if let Some(violation) = violation {
            return end(Verdict::Violation, stats, &clock, Some((violation, schedule)));
        }
        match ended {
            ScheduleEnd::Complete => {}
            ScheduleEnd::Truncated => truncated = true,
            ScheduleEnd::Limit(limit) => return end(Verdict::LimitReached { limit }, stats, &clock, None),
        }
        if let Some(progress) = options.progress.as_mut() {
            progress(&Progress {
                states: stats.states,
                transitions: stats.transitions,
                depth: stats.depth_max,
                queue: options.limits.schedules_max - stats.schedules,
                elapsed_ms: clock.elapsed_ms(),
            });
        }
        if clock.out_of_time(&options.limits) {
            return end(Verdict::LimitReached { limit: Limit::Time }, stats, &clock, None);
        }
    }
    let verdict = if truncated { Verdict::LimitReached { limit: Limit::Depth } } else { Verdict::NoViolationFound };
    end(verdict, stats, &clock, None)
}

/// Uniformly random schedules: at every step, any enabled thread, and any of its step's
/// outcomes.
pub fn explore_random<M: Model>(model: &M, options: Options<'_>, seed: u64) -> Outcome<M::Violation> {
    let random = std::cell::RefCell::new(SplitMix64::new(seed));
    sample(model, options, |model, options, clock, stats| {
        run_schedule(
            model,
            &options.limits,
            clock,
            stats,
            |enabled, _| enabled[random.borrow_mut().below(enabled.len() as u64) as usize],
            |outcomes| random.borrow_mut().below(outcomes.into()) as u32,
        )
    })
}

/// PCT (Burckhardt et al., ASPLOS 2010): each schedule gives the threads random distinct
/// priorities and picks `depth - 1` random steps at which the running thread drops to the
/// lowest priority; the highest-priority enabled thread always runs. `steps_expected` sizes the
/// range the change points are drawn from. A step's outcome is drawn uniformly: PCT's
/// priorities say which thread runs, not what its load reads.
pub fn explore_pct<M: Model>(
    model: &M,
    options: Options<'_>,
    seed: u64,
    depth: u32,
    steps_expected: u64,
) -> Outcome<M::Violation> {
    let mut random = SplitMix64::new(seed);
    // More change points than a schedule has steps change nothing more: the count is bounded
    // by the depth limit and by the range they are drawn from (and so is the memory they take).
    let change_points_max = u64::from(depth.max(1) - 1).min(options.limits.depth_max).min(steps_expected.max(1));
    sample(model, options, |model, options, clock, stats| {
        let mut priorities: Vec<u64> = (0..64).map(|_| (random.next_u64() >> 8) + 64).collect();
        let mut change_points: Vec<u64> = (0..change_points_max).map(|_| random.below(steps_expected.max(1))).collect();
        change_points.sort_unstable();
        // Outcomes draw from their own stream (seeded without drawing from the first), so a
        // model without choices samples the schedules it sampled before choices existed.
        let mut outcome_random = SplitMix64::new(priorities[0] ^ 0x6f75_7463_6f6d_6573);
        // Dropped threads take priorities below every initial one, each lower than the last.
        let mut lowest = 63u64;
        let choose_outcome = move |outcomes: u32| outcome_random.below(outcomes.into()) as u32;
        run_schedule(
            model,
            &options.limits,
            clock,
            stats,
            |enabled, step| {
                let pick = |priorities: &[u64]| {
                    *enabled.iter().max_by_key(|&&t| priorities[t as usize]).expect("enabled is not empty")
                };
                let thread = pick(&priorities);
                if change_points.binary_search(&step).is_ok() {
                    priorities[thread as usize] = lowest;
                    lowest = lowest.saturating_sub(1);
                    return pick(&priorities);
                }
                thread
            },
            choose_outcome,
        )
    })
}
