//! keel-linux: the Linux host of the keel static-pod agent.
//!
//! This library crate deals with everything the `keel` binary needs on Linux; the binary
//! (`src/main.rs`) stays a thin shell over it.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod cni;
pub mod control;
pub mod diag;
pub mod image;
pub mod podstatus;
pub mod probe;
pub mod render;
pub mod runtime;
pub mod timefmt;
pub mod tls;
pub mod wire;

/// The node name keel uses by default: the host name, trimmed and lower-cased (SPEC 2.4).
pub fn node_name() -> String {
    let raw = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string());
    keel_core::manifest::defaults::node_name(&raw).to_string()
}
