//! Weak memory: the semantics of loads, stores, read-modify-writes and fences under a memory
//! model, as choice points of the explorer (which store a load reads is a step's outcome).
//!
//! The engine knows nothing of mm or of C: a model names memory locations by opaque `u64`
//! keys, stores `u64` values, and says for each access which [`AccessOrder`] it carries. Which
//! order a kernel primitive carries on an architecture is the model's business (its one table
//! of primitives); the engine only gives each order its meaning under a [`MemoryModel`].

mod rcu;
mod views;

pub use rcu::{Rcu, RcuError};
pub use views::{AccessOrder, BrokenPromise, FenceKind, Memory, Message, ReadCandidate, Store, ThreadView, Timestamp};

use serde::{Deserialize, Serialize};
use std::fmt;

/// The memory models a search can run under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryModel {
    /// Sequential consistency: every load reads the latest store.
    #[default]
    Sc,
    /// x86-TSO: a load may be satisfied before the thread's earlier stores reach memory (store
    /// buffering) and reads its own buffered stores; nothing else reorders.
    X86,
    /// ARMv8 (other-multi-copy-atomic): loads and stores reorder unless ordered by
    /// dependencies, acquire/release or a `dmb`.
    Arm64,
    /// The Linux-kernel memory model (tools/memory-model): what the kernel promises on every
    /// architecture.
    Lkmm,
}

impl MemoryModel {
    pub const ALL: [MemoryModel; 4] = [MemoryModel::Sc, MemoryModel::X86, MemoryModel::Arm64, MemoryModel::Lkmm];

    pub fn name(self) -> &'static str {
        match self {
            MemoryModel::Sc => "sc",
            MemoryModel::X86 => "x86",
            MemoryModel::Arm64 => "arm64",
            MemoryModel::Lkmm => "lkmm",
        }
    }

    pub fn parse(text: &str) -> Option<MemoryModel> {
        MemoryModel::ALL.into_iter().find(|model| model.name() == text)
    }

    /// Whether loads may read stores other than the latest.
    pub fn is_weak(self) -> bool {
        self != MemoryModel::Sc
    }
}

impl fmt::Display for MemoryModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
