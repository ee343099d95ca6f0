//! keel-linux: the agent and CLI for Linux.
//!
//! Minimal wiring of the modules that exist so far (render, timefmt, `keel validate`);
//! the agent proper lands with its own issue.

pub mod cli {
    //! Subcommands.
    pub mod validate;
}
pub mod render;
pub mod timefmt;

/// This node's name: the host name, trimmed and lower-cased (SPEC 2.4).
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_ascii_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
