//! block/: direct IO on a block device.

pub mod fops;
