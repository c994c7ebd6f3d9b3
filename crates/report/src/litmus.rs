//! The litmus corpus report: one row per test, the counts by status, as a table or as the JSON
//! object `{"memory_model", "tests": [...], "agree", "forbidden_shown", "allowed_missed",
//! "unsupported"}` (tests a limit stopped count with `incomplete`).

use mmcheck_explorer::memory::MemoryModel;
use mmcheck_scenario::litmus::{Status, TestRun};
use serde::Serialize;

/// One test as the report lists it.
#[derive(Clone, Debug, Serialize)]
pub struct LitmusRow {
    pub name: String,
    pub file: String,
    pub expected: Option<String>,
    pub observed: Option<String>,
    pub status: String,
    pub states: u64,
    pub elapsed_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LitmusReport {
    pub memory_model: String,
    pub tests: Vec<LitmusRow>,
    pub agree: u64,
    pub forbidden_shown: u64,
    pub allowed_missed: u64,
    pub unsupported: u64,
    pub incomplete: u64,
    pub elapsed_ms: u64,
}

impl LitmusReport {
    pub fn new(memory_model: MemoryModel) -> Self {
        LitmusReport { memory_model: memory_model.name().to_string(), ..LitmusReport::default() }
    }

    pub fn add(&mut self, file: &str, run: &TestRun) {
        match run.status {
            Status::Agree => self.agree += 1,
            Status::ForbiddenShown => self.forbidden_shown += 1,
            Status::AllowedMissed => self.allowed_missed += 1,
            Status::Unsupported(_) => self.unsupported += 1,
            Status::Incomplete(_) => self.incomplete += 1,
        }
        self.elapsed_ms += run.elapsed_ms;
        self.tests.push(LitmusRow {
            name: run.name.clone(),
            file: file.to_string(),
            expected: run.expected.clone(),
            observed: run.observed.map(|o| o.name().to_string()),
            status: run.status.describe(),
            states: run.states,
            elapsed_ms: run.elapsed_ms,
        });
    }

    /// A test that did not parse.
    pub fn add_unparsed(&mut self, file: &str, error: &str) {
        self.unsupported += 1;
        self.tests.push(LitmusRow {
            name: file.to_string(),
            file: file.to_string(),
            expected: None,
            observed: None,
            status: format!("unsupported: {error}"),
            states: 0,
            elapsed_ms: 0,
        });
    }

    /// Tests whose Result: line is Sometimes, among the supported ones, and how many the engine
    /// showed (the corpus target: at least 90%).
    pub fn sometimes_shown(&self) -> (u64, u64) {
        let supported = self.tests.iter().filter(|t| t.expected.as_deref() == Some("Sometimes") && is_run(&t.status));
        let (mut total, mut shown) = (0, 0);
        for test in supported {
            total += 1;
            shown += u64::from(test.observed.as_deref() == Some("Sometimes"));
        }
        (shown, total)
    }

    pub fn total(&self) -> u64 {
        self.tests.len() as u64
    }

    /// The table: the tests that did not agree (all with `all`), then the counts.
    pub fn table(&self, all: bool) -> String {
        let mut out = Self::header();
        out.push('\n');
        for test in self.tests.iter().filter(|t| all || t.status != "agree") {
            out.push_str(&Self::row(test));
            out.push('\n');
        }
        out.push_str(&self.summary());
        out
    }

    pub fn header() -> String {
        format!("{:<60} {:<10} {:<10} {:>8} {:>7} status", "test", "expected", "observed", "states", "ms")
    }

    pub fn row(test: &LitmusRow) -> String {
        let expected = test.expected.as_deref().unwrap_or("-");
        let observed = test.observed.as_deref().unwrap_or("-");
        format!(
            "{:<60} {expected:<10} {observed:<10} {:>8} {:>7} {}",
            test.name, test.states, test.elapsed_ms, test.status
        )
    }

    pub fn summary(&self) -> String {
        let supported = self.total() - self.unsupported;
        let (shown, sometimes) = self.sometimes_shown();
        format!(
            "{}: {} tests, {} supported ({:.1}%): {} agree, {} forbidden-shown, {} allowed-missed, {} incomplete, \
             {} unsupported; Sometimes shown {shown} of {sometimes}; {:.1} s\n",
            self.memory_model,
            self.total(),
            supported,
            percent(supported, self.total()),
            self.agree,
            self.forbidden_shown,
            self.allowed_missed,
            self.incomplete,
            self.unsupported,
            self.elapsed_ms as f64 / 1000.0,
        )
    }
}

fn is_run(status: &str) -> bool {
    !status.starts_with("unsupported") && !status.starts_with("incomplete")
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}
