//! Every search is bounded: states, depth, time and memory. A search that hits a limit stops and
//! says which one, with the statistics of what it covered.

use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    States,
    Depth,
    Time,
    Memory,
    Schedules,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::States => "states",
            Limit::Depth => "depth",
            Limit::Time => "time",
            Limit::Memory => "memory",
            Limit::Schedules => "schedules",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub states_max: u64,
    pub depth_max: u64,
    pub seconds_max: f64,
    pub memory_bytes_max: u64,
    /// Sampling strategies: how many schedules to run.
    pub schedules_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            states_max: 50_000_000,
            depth_max: 100_000,
            seconds_max: 600.0,
            memory_bytes_max: 8 << 30,
            schedules_max: 10_000,
        }
    }
}

/// How often the periodic checks of a search (memory, progress) run: every this many states,
/// and at least every [`CHECK_INTERVAL_SECONDS`].
pub(crate) const CHECK_EVERY: u64 = 4096;
pub(crate) const CHECK_INTERVAL_SECONDS: f64 = 0.1;

/// The clock of a search: read at every state (a few nanoseconds), so that a search of slow
/// steps stops on time too; the costlier checks run when [`Clock::check_due`] says.
pub(crate) struct Clock {
    started: Instant,
    next_check_seconds: f64,
}

impl Clock {
    pub fn start() -> Self {
        Clock { started: Instant::now(), next_check_seconds: CHECK_INTERVAL_SECONDS }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn out_of_time(&self, limits: &Limits) -> bool {
        self.started.elapsed().as_secs_f64() > limits.seconds_max
    }

    /// Whether the periodic checks are due after `count` states: every [`CHECK_EVERY`], or
    /// once [`CHECK_INTERVAL_SECONDS`] passed since the last.
    pub fn check_due(&mut self, count: u64) -> bool {
        let elapsed = self.started.elapsed().as_secs_f64();
        if count.is_multiple_of(CHECK_EVERY) || elapsed >= self.next_check_seconds {
            self.next_check_seconds = elapsed + CHECK_INTERVAL_SECONDS;
            return true;
        }
        false
    }
}
