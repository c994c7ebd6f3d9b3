//! fs/: the parts of file systems the modelled paths use.

pub mod proc;
pub mod read_write;
