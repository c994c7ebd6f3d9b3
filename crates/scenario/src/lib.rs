//! The mmcheck scenario language: small syscall-like programs a kernel developer reads without
//! a manual. `parse` turns text into a [`Scenario`] or a [`Diagnostic`] pointing at the
//! offending bytes; `Scenario::system` builds the model's threads for one set of parameters.
//!
//! Architecture invariant: this crate does no I/O; the CLI reads files and renders diagnostics.

mod builder;
mod lexer;
pub mod litmus;
mod parser;

pub use parser::{limits, parse, parse_all};

use mmcheck_explorer::memory::MemoryModel;
use mmcheck_model::folio::PAGE_SIZE;
use mmcheck_model::patches::Patch;
use mmcheck_model::state::FileContents;
use mmcheck_model::{KernelConfig, KernelVersion, SystemSpec, ViolationKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// An error in a scenario: a message and the byte range it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub start: usize,
    pub end: usize,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, start: usize, end: usize) -> Self {
        Diagnostic { message: message.into(), start, end, notes: Vec::new() }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// 1-based line and column of the start, for `file:line:col`.
    pub fn line_column(&self, source: &str) -> (usize, usize) {
        let before = &source[..char_start(source, self.start)];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    }
}

/// The start of the character at byte `at` (or the source's end): a span that starts inside a
/// multi-byte character (the source limit can cut one) counts from that character.
pub(crate) fn char_start(source: &str, at: usize) -> usize {
    let mut at = at.min(source.len());
    while !source.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// What a scenario expects of a kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Verified,
    Violation(#[serde(serialize_with = "kind_name")] ViolationKind),
}

fn kind_name<S: serde::Serializer>(kind: &ViolationKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.name())
}

impl Outcome {
    pub fn describe(&self) -> String {
        match self {
            Outcome::Verified => "verified".to_string(),
            Outcome::Violation(kind) => format!("violation {}", kind.name()),
        }
    }
}

/// The kernels an `expect` line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KernelRange {
    Below(KernelVersion),
    AtLeast(KernelVersion),
    Exactly(KernelVersion),
}

impl KernelRange {
    pub fn contains(self, version: KernelVersion) -> bool {
        match self {
            KernelRange::Below(v) => version < v,
            KernelRange::AtLeast(v) => version >= v,
            KernelRange::Exactly(v) => version == v,
        }
    }

    /// The versions the suite runs for this range: each side of its boundary and the newest.
    pub fn representatives(self) -> Vec<KernelVersion> {
        match self {
            KernelRange::Below(v) if v.minor > 0 => vec![KernelVersion::new(v.major, v.minor - 1)],
            KernelRange::Below(v) => vec![KernelVersion::new(v.major - 1, 19)],
            KernelRange::AtLeast(v) if v == KernelVersion::NEWEST => vec![v],
            KernelRange::AtLeast(v) => vec![v, KernelVersion::NEWEST],
            KernelRange::Exactly(v) => vec![v],
        }
    }

    pub fn describe(self) -> String {
        match self {
            KernelRange::Below(v) => format!("< {v}"),
            KernelRange::AtLeast(v) => format!(">= {v}"),
            KernelRange::Exactly(v) => format!("{v}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub kernels: KernelRange,
    /// Registered changes turned on (`+name`) or off (`-name`) for this line.
    #[serde(serialize_with = "patch_names")]
    pub patches: Vec<(Patch, bool)>,
    /// `under arm64`: the memory model the line speaks of (sequential consistency without).
    pub memory_model: MemoryModel,
    pub outcome: Outcome,
    pub line: usize,
}

fn patch_names<S: serde::Serializer>(patches: &[(Patch, bool)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer
        .collect_seq(patches.iter().map(|(patch, on)| format!("{}{}", if *on { '+' } else { '-' }, patch.info().name)))
}

impl Expectation {
    /// Whether this line speaks about `kernel`: its version is in the range and every patch
    /// the line names is set as the line says.
    pub fn covers(&self, kernel: &KernelConfig) -> bool {
        self.kernels.contains(kernel.version) && self.patches.iter().all(|(patch, on)| kernel.applies(*patch) == *on)
    }

    pub fn covers_under(&self, kernel: &KernelConfig, memory_model: MemoryModel) -> bool {
        self.memory_model == memory_model && self.covers(kernel)
    }

    /// `>= 6.8`, or `6.8 -rmap-silence-large-rmappable-warning`.
    pub fn describe_kernels(&self) -> String {
        let mut text = self.kernels.describe();
        for (patch, on) in &self.patches {
            text.push_str(&format!(" {}{}", if *on { '+' } else { '-' }, patch.info().name));
        }
        text
    }
}

/// A parsed scenario. Parameters stay symbolic until [`Scenario::system`] evaluates them.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub title: String,
    pub references: Vec<String>,
    pub tags: Vec<String>,
    pub parameters: BTreeMap<String, i64>,
    pub expectations: Vec<Expectation>,
    /// `expect reach FUNCTION: LABEL` and `expect unreached FUNCTION: LABEL` lines: what a run
    /// that finds no violation must (or must not) have reached, or its verdict is `vacuous`.
    pub reach: Vec<ReachExpectation>,
    pub(crate) ast: parser::Ast,
}

/// One `expect reach` (or `expect unreached`) line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReachExpectation {
    /// The step label, `function: label` as reports print it.
    pub function: String,
    pub label: String,
    /// `reach` (true) or `unreached` (false).
    pub reached: bool,
    pub line: usize,
}

impl ReachExpectation {
    pub fn name(&self) -> String {
        format!("{}: {}", self.function, self.label)
    }
}

impl Scenario {
    /// The expected outcome for a kernel, from the first `expect` line that covers it.
    pub fn expected(&self, kernel: &KernelConfig) -> Option<&Outcome> {
        self.expected_under(kernel, MemoryModel::Sc)
    }

    /// The expected outcome for a kernel under a memory model (lines with `under MODEL`).
    pub fn expected_under(&self, kernel: &KernelConfig, memory_model: MemoryModel) -> Option<&Outcome> {
        self.expectations.iter().find(|e| e.covers_under(kernel, memory_model)).map(|e| &e.outcome)
    }

    /// The suite's runs: [`Scenario::suite_kernels`] for each memory model the lines name.
    pub fn suite_runs(&self) -> Vec<(KernelConfig, MemoryModel)> {
        let mut runs = Vec::new();
        for model in MemoryModel::ALL {
            if self.expectations.iter().any(|e| e.memory_model == model) {
                runs.extend(self.suite_kernels_under(model).into_iter().map(|kernel| (kernel, model)));
            }
        }
        runs
    }

    /// The kernels the suite checks this scenario under: each line's representative versions
    /// with the line's patch overrides, oldest first.
    pub fn suite_kernels(&self) -> Vec<KernelConfig> {
        self.suite_kernels_under(MemoryModel::Sc)
    }

    fn suite_kernels_under(&self, memory_model: MemoryModel) -> Vec<KernelConfig> {
        let mut kernels: Vec<KernelConfig> = Vec::new();
        for expectation in self.expectations.iter().filter(|e| e.memory_model == memory_model) {
            for version in expectation.kernels.representatives() {
                let mut kernel = KernelConfig::for_version(version);
                for (patch, on) in &expectation.patches {
                    kernel.set(*patch, *on);
                }
                if !kernels.iter().any(|k| k.label() == kernel.label()) {
                    kernels.push(kernel);
                }
            }
        }
        kernels.sort_by_key(|k| (k.version, k.label()));
        kernels
    }

    /// Builds the model's system for these parameter overrides (`--set name=value`).
    pub fn system(&self, overrides: &[(String, i64)]) -> Result<SystemSpec, String> {
        let mut parameters = self.parameters.clone();
        for (name, value) in overrides {
            if !parameters.contains_key(name) {
                let known: Vec<&str> = parameters.keys().map(String::as_str).collect();
                return Err(format!(
                    "scenario {} has no parameter `{name}` (it has: {})",
                    self.name,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ));
            }
            parameters.insert(name.clone(), *value);
        }
        builder::build(&self.ast, &parameters).map_err(|diagnostic| self.located(&diagnostic, overrides))
    }

    /// A build error as text that says where: `line 3:16 (`pages * 4K`, with pages=1G): ...`.
    fn located(&self, diagnostic: &Diagnostic, overrides: &[(String, i64)]) -> String {
        let source = self.ast.source();
        let (line, column) = diagnostic.line_column(source);
        let text = source.get(diagnostic.start..diagnostic.end).unwrap_or_default();
        let mut place = format!("scenario {} line {line}:{column}", self.name);
        if !text.is_empty() && !text.contains('\n') {
            place.push_str(&format!(" `{text}`"));
        }
        if !overrides.is_empty() {
            let sets: Vec<String> = overrides.iter().map(|(name, value)| format!("{name}={value}")).collect();
            place.push_str(&format!(" with --set {}", sets.join(",")));
        }
        format!("{place}: {}", diagnostic.message)
    }

    /// The kernel configuration for a version: every registered change landed by then.
    pub fn kernel(version: KernelVersion) -> KernelConfig {
        KernelConfig::for_version(version)
    }
}

/// Bytes of a file filled with one byte (sparse: a file of any size costs nothing until
/// written).
pub(crate) fn filled_file(bytes: i64, fill: u8) -> FileContents {
    FileContents::filled((bytes as u64).div_ceil(PAGE_SIZE), fill)
}

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// A built-in scenario's text by scenario name (the file is `scenarios/NAME.mmc`).
pub fn builtin(name: &str) -> Option<&'static str> {
    let file = format!("{name}.mmc");
    BUILTIN.iter().find(|(f, _)| *f == file).map(|(_, text)| *text)
}
