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

/// The clock of a search: checked every few thousand transitions so that it costs nothing.
pub(crate) struct Clock {
    started: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock { started: Instant::now() }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn out_of_time(&self, limits: &Limits) -> bool {
        self.started.elapsed().as_secs_f64() > limits.seconds_max
    }
}
