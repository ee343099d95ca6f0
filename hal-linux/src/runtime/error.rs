//! Errors of the runc runtime: every variant names the path, container or command it is
//! about, and keeps the underlying error as its source.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// An error from [`RuncRuntime`](super::RuncRuntime) or the files it keeps.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A spec field the runtime cannot use (bad id, path with `:` in an overlay layer…).
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"create dir"`, `"write"`…).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Setting up or tearing down the pod's network failed (CNI plugin's message).
    #[error("{0}")]
    Network(String),
    /// A system call through nix failed (mount, umount, kill).
    #[error("{op} {path}: {source}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The path or object it was done to.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A program (runc, the shim) could not be started.
    #[error("spawn {path}: {source}")]
    Spawn {
        /// The program.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A program (runc, the shim) did not finish in time and was killed.
    #[error("{path} did not finish within {waited:?} and was killed (--runtime-request-timeout)")]
    Stuck {
        /// The program.
        path: PathBuf,
        /// How long it was given.
        waited: Duration,
    },
    /// runc ran and failed.
    #[error("runc {args} failed ({status}): {stderr}")]
    Runc {
        /// The arguments after `--root`.
        args: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The shim binary is not where the runtime looks for it.
    #[error(
        "the container shim {path} is missing: install keel-shim in the same directory as keel \
         (`cargo xtask dist` builds both)"
    )]
    ShimMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The shim reported that it could not create or start the container.
    #[error("shim for container {id}: {message}")]
    Shim {
        /// The container id.
        id: String,
        /// What the shim reported.
        message: String,
    },
    /// The pod's pause process could not be made (`keel pause --sandbox` said why).
    #[error("pause process of pod {pod_uid}: {message}")]
    Pause {
        /// The pod.
        pod_uid: String,
        /// Which step failed, on which path.
        message: String,
    },
    /// A JSON record could not be read or written.
    #[error("{path}: {source}")]
    Json {
        /// The record file.
        path: PathBuf,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The container's seccomp profile cannot be used.
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
    /// The runtime knows of no such container.
    #[error("container {0} not found")]
    NotFound(String),
    /// A container did not exit in time, even after SIGKILL.
    #[error("container {id} still running {waited:?} after SIGKILL")]
    Timeout {
        /// The container id.
        id: String,
        /// How long the runtime waited after SIGKILL.
        waited: Duration,
    },
}

impl RuntimeError {
    /// The error of running `path` for at most `waited`: [`RuntimeError::Stuck`] for a
    /// timeout, else [`RuntimeError::Spawn`].
    pub(crate) fn run(path: &std::path::Path, waited: Duration, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::TimedOut {
            RuntimeError::Stuck {
                path: path.into(),
                waited,
            }
        } else {
            RuntimeError::Spawn {
                path: path.into(),
                source,
            }
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Adds path context to `io::Result`s.
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`RuntimeError::Io`].
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| RuntimeError::Io {
            op,
            path: path.into(),
            source,
        })
    }
}
