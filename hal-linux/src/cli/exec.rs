//! `keel exec [-i] [-t] POD [-c NAME] -- CMD...`: run a command in a running container,
//! as `kubectl exec`.
//!
//! This module deals with the command people type instead of reaching into runc's
//! state. The agent names the container (over the control socket: the pod by any of its
//! names, the container by `-c`, else the pod's first app container, as kubectl picks
//! it) and the runtime that runs it; the command then runs with `runc exec` in that
//! container (its namespaces, cgroup, user, environment and security settings), with
//! this terminal's standard streams: `-i` passes standard input, `-t` gives it a
//! terminal. The exit status is the command's (126/127 and the like from runc when it
//! cannot be started).

use super::client;
use crate::wire::{Request, Response};
use std::io::Write;
use std::process::{Command, Stdio};

/// `keel exec` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  keel exec web -- ls /\n  keel exec -it web -c app -- sh")]
pub struct Args {
    /// Pass standard input to the command
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (use with -i)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The container (default: the pod's first app container)
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// The pod: full name, manifest name, NAMESPACE/NAME or UID
    #[arg(value_name = "POD")]
    pub pod: String,
    /// The command and its arguments, after --
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Connection.
    #[command(flatten)]
    pub socket: super::SocketArg,
}

/// Runs `keel exec` with parsed arguments; returns the command's exit status.
pub fn run_args(a: &Args, _out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some(mut c) = client::connect(&a.socket, "exec", err) else {
        return 1;
    };
    let req = Request::Exec {
        pod: a.pod.clone(),
        container: a.container.clone(),
    };
    let t = match c.request(&req) {
        Ok(Response::Exec(t)) => t,
        Ok(other) => {
            let _ = writeln!(
                err,
                "keel exec: unexpected answer from the agent: {other:?}"
            );
            return 1;
        }
        Err(e) => return client::fail("exec", &e, err),
    };
    if !t.defaulted_from.is_empty() {
        let _ = writeln!(
            err,
            "Defaulted container {:?} out of: {}",
            t.container,
            t.defaulted_from.join(", ")
        );
    }
    // As kubectl: a terminal is only given when standard input is one.
    let tty = a.tty && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if a.tty && !tty {
        let _ = writeln!(
            err,
            "Unable to use a TTY - input is not a terminal or the right kind of file"
        );
    }
    let mut cmd = Command::new(&t.runtime);
    cmd.arg("--root").arg(&t.root).arg("exec");
    if tty {
        cmd.arg("--tty");
    }
    cmd.arg(&t.id).args(&a.command);
    cmd.stdin(if a.stdin || a.tty {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    match cmd.status() {
        Ok(st) => {
            use std::os::unix::process::ExitStatusExt;
            st.code()
                .or_else(|| st.signal().map(|s| 128 + s))
                .unwrap_or(1)
        }
        Err(e) => {
            let _ = writeln!(err, "keel exec: running {}: {e}", t.runtime);
            1
        }
    }
}

/// Runs `keel exec ARGS...`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    super::run_sub("exec", args, out, err)
}
