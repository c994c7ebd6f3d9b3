//! kernel/: process creation.

pub mod fork;
