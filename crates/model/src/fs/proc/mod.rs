//! fs/proc: per-process files.

pub mod page;
pub mod task_mmu;
