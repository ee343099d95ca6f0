//! `keel ps`: one line per container, as `docker ps` / `crictl ps` show them.
//!
//! This module deals with listing the containers of every pod: the runtime (runc) id,
//! the pod, the container name, its image, its state, restarts and age. Without `-a`,
//! only containers with a live process (creating, running, stopping) are listed.

use super::client;
use crate::wire::{Clock, ContainerInfo, PodInfo};
use keel_core::machine::State;
use std::io::Write;

/// The STATE column.
pub fn state_text(c: &ContainerInfo) -> String {
    match c.status.state {
        State::Waiting { reason, .. } => format!("Waiting ({})", reason.as_str()),
        State::Creating { .. } => "Creating".into(),
        State::PostStart { .. } => "PostStart".into(),
        State::Running { .. } => "Running".into(),
        State::Stopping { .. } => "Stopping".into(),
        State::Terminated(t) => format!("Exited ({}) {}", t.code, t.reason.as_str()),
    }
}

/// Whether the container has a live process.
pub fn is_live(c: &ContainerInfo) -> bool {
    matches!(
        c.status.state,
        State::Creating { .. }
            | State::PostStart { .. }
            | State::Running { .. }
            | State::Stopping { .. }
    )
}

/// When the current state began, Unix ms, where the status says.
fn since(c: &ContainerInfo, pod: &PodInfo, clock: Clock) -> u64 {
    match c.status.state {
        State::Creating { since } => clock.unix_ms(since),
        State::Running { started_at }
        | State::PostStart { started_at, .. }
        | State::Stopping { started_at, .. } => clock.unix_ms(started_at),
        State::Terminated(t) => clock.unix_ms(t.finished_at),
        State::Waiting { .. } => c
            .status
            .last
            .map(|l| clock.unix_ms(l.finished_at))
            .unwrap_or(pod.created_unix_ms),
    }
}

/// The table.
pub fn table(pods: &[PodInfo], clock: Clock, now_ms: u64, all: bool) -> String {
    let mut rows = Vec::new();
    for p in pods {
        for c in &p.containers {
            if !all && !is_live(c) {
                continue;
            }
            let name = if c.init {
                format!("{} (init)", c.name)
            } else {
                c.name.clone()
            };
            rows.push(vec![
                c.runtime_id.clone().unwrap_or_else(|| "-".into()),
                p.name.clone(),
                name,
                c.image.clone(),
                state_text(c),
                c.status.restart_count.to_string(),
                client::age(now_ms, since(c, p, clock)),
            ]);
        }
    }
    client::table(
        &[
            "CONTAINER ID",
            "POD",
            "NAME",
            "IMAGE",
            "STATE",
            "RESTARTS",
            "AGE",
        ],
        &rows,
    )
}

/// `keel ps [-a]`.
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
pub struct Args {
    /// Also containers without a live process (waiting, exited)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Connection.
    #[command(flatten)]
    pub socket: super::SocketArg,
}

/// Runs `keel ps` with parsed arguments.
pub fn run_args(a: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some(mut c) = client::connect(&a.socket, "ps", err) else {
        return 1;
    };
    let mut pods = match c.pods() {
        Ok(p) => p,
        Err(e) => return client::fail("ps", &e, err),
    };
    crate::sort_by(&mut pods, |a, b| {
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    let t = table(&pods, c.info().clock, client::now_unix_ms(), a.all);
    let _ = out.write_all(t.as_bytes());
    0
}

/// Runs `keel ps ARGS...`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    super::run_sub("ps", args, out, err)
}
