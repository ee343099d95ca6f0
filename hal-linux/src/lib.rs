//! keel-linux: the Linux host of the keel static-pod agent.
//!
//! This library crate deals with everything the `keel` binary needs on Linux; the binary
//! (`src/main.rs`) stays a thin shell over it.

pub mod image;
