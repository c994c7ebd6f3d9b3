//! What the oracles report: kernel assertions as the kernel states them, user data checks from
//! the scenario, and model invariants.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// A user load returned bytes other than the scenario expects.
    DataLoss,
    /// A scenario `assert` on a value failed.
    Assertion,
    /// BUG_ON / VM_BUG_ON* fired.
    KernelBug,
    /// WARN_ON* / VM_WARN_ON* fired.
    KernelWarning,
    /// An access to a folio that went back to the allocator.
    UseAfterFree,
    /// A model invariant the kernel guarantees did not hold.
    Invariant,
    /// No thread can run and some have not finished.
    Deadlock,
    /// Folios still allocated when every process has exited.
    Leak,
    /// A user access faulted with SIGSEGV or SIGBUS that the scenario did not expect.
    Fault,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 9] = [
        ViolationKind::DataLoss,
        ViolationKind::Assertion,
        ViolationKind::KernelBug,
        ViolationKind::KernelWarning,
        ViolationKind::UseAfterFree,
        ViolationKind::Invariant,
        ViolationKind::Deadlock,
        ViolationKind::Leak,
        ViolationKind::Fault,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::DataLoss => "data-loss",
            ViolationKind::Assertion => "assertion",
            ViolationKind::KernelBug => "kernel-bug",
            ViolationKind::KernelWarning => "kernel-warning",
            ViolationKind::UseAfterFree => "use-after-free",
            ViolationKind::Invariant => "invariant",
            ViolationKind::Deadlock => "deadlock",
            ViolationKind::Leak => "leak",
            ViolationKind::Fault => "fault",
        }
    }

    pub fn parse(name: &str) -> Option<ViolationKind> {
        ViolationKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub message: String,
    /// `dump_page`-style lines of the folios involved.
    pub dump: Vec<String>,
}

impl Violation {
    pub fn new(kind: ViolationKind, message: impl Into<String>) -> Self {
        Violation { kind, message: message.into(), dump: Vec::new() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)?;
        for line in &self.dump {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}
