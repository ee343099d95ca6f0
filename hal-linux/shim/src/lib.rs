//! keel's container shim: the small process that stays beside each running container.
//!
//! The agent starts `keel-shim` (a binary of its own, installed next to `keel`) for every
//! container; the shim runs the OCI runtime, copies the container's stdout and stderr
//! into its CRI log with rotation ([`crilog`]), reaps the container's init and records
//! how it ended ([`record`]). It outlives the agent that started it, so an agent killed
//! or upgraded finds its containers still logged and their exits recorded.
//!
//! The library holds what the agent shares with the shim: the command line
//! ([`ShimArgs`]), the log format, the record files and the small host helpers
//! ([`sys`]). The binary ([`main`]) uses nothing else, so it stays small: one per
//! container, each under 512 KiB resident (host-tests/tests/linux_shim.rs).

pub mod crilog;
pub mod record;
mod run;
pub mod sys;

pub use run::{main, shim_record_path, ShimArgs};
