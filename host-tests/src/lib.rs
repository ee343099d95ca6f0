//! keel host tests: cross-crate tests and their helpers.
//!
//! [`sim`] is the deterministic simulator the reconciler scenario tests, the `reconcile`
//! property test, the fuzz target and the benchmark share.

pub mod sim;
