//! mm/: one file per kernel file, functions named as the kernel names them.

pub mod filemap;
pub mod gup;
pub mod huge_memory;
pub mod madvise;
pub mod memory;
pub mod migrate;
pub mod mmap;
pub mod mremap;
pub mod pagewalk;
pub mod readahead;
pub mod rmap;
pub mod swap;
pub mod swap_state;
pub mod swapfile;
pub mod truncate;
pub mod userfaultfd;
pub mod vmscan;
