//! An executable model of the Linux mm core, split into atomic steps.
//!
//! The layout mirrors the kernel's: `mm/rmap.rs` holds mm/rmap.c's functions, `mm/gup.rs`
//! mm/gup.c's, and so on, with the kernel's function names. Shared state is in [`state`];
//! kernel code touches it only through [`access::Ctx`], which records every access with its
//! memory ordering. [`system::System`] implements the explorer's `Model` trait.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of files, terminals,
//! JSON or the order in which the explorer visits states.

pub mod access;
pub mod arch;
pub mod audit;
pub mod block;
pub mod drivers;
pub mod folio;
pub mod fs;
pub mod kernel;
pub mod mm;
pub mod patches;
pub mod pgtable;
pub mod program;
pub mod shared;
pub mod state;
pub mod system;
pub mod thread;
pub mod violation;

pub use access::Event;
pub use patches::{KernelConfig, KernelVersion, Patch, PATCHES};
pub use system::{System, SystemSpec, ThreadSpec, SCENARIO_ERROR};
pub use violation::{Violation, ViolationKind};
