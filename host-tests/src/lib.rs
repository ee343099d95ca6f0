//! keel host tests: cross-crate tests and their helpers.
//!
//! - [`bench`]: the figures every benchmark records, and docs/benchmarks.md made from them;
//! - [`apiserver`]: a strict Kubernetes API server double (Node authorizer,
//!   NodeRestriction) for the cluster tests;
//! - [`corpus`] and [`differential`]: the parser fixture corpus and the comparison against
//!   reference parsers (also used by the fuzz workspace);
//! - [`sim`]: the deterministic simulator the reconciler scenario tests, the `reconcile`
//!   property test, the fuzz target and the benchmark share;
//! - [`qemu`]: the QEMU driver of the firmware scenario tests;
//! - [`linux`]: the real node (keel binary, runc, images) of the end-to-end tests;
//! - [`conformance`]: the runtime conformance suite (keel-core's `Runtime` contract),
//!   run against the simulator's fake, the firmware task table and the Linux runtime;
//! - [`registry`]: a real `registry:2` on the loopback and locally built images for the
//!   pull tests.

pub mod apiserver;
pub mod bench;
pub mod conformance;
pub mod corpus;
pub mod differential;
pub mod linux;
pub mod qemu;
pub mod registry;
pub mod sim;
