//! Verdicts, traces, replay tokens, tables and JSON: what mmcheck tells its user. No file or
//! terminal I/O here; the CLI prints what these functions return.

pub mod check;
pub mod format;
pub mod litmus;
pub mod token;

pub use check::{check, replay, CheckOptions, CheckReport};
pub use token::ReplayToken;
