//! fs/proc: per-process files.

pub mod task_mmu;
