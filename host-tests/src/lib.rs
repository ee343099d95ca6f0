//! Shared helpers for keel host tests.

pub mod qemu;
