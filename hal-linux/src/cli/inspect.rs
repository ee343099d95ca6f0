//! `keel inspect POD`: everything the agent knows about one pod, as JSON.
//!
//! This module deals with printing one pod as a Kubernetes `Pod` object (metadata,
//! defaulted spec, status as in `keel pods -o json`) with a `keel` key added holding the
//! agent's own view: the manifest file, a rejected newer version, termination, and per
//! container the runtime id, log directory, waiting message and the core's full status
//! (state, backoff, probes; instants in agent milliseconds). The pod is named by its full
//! name, its manifest name, its UID, or `NAMESPACE/NAME`.

use super::client::{self, Flag, SOCKET};
use super::pods;
use crate::wire::{find_pod, Clock, PodInfo};
use serde_json::{json, Value};
use std::io::Write;

/// The pod object with the `keel` key.
pub fn inspect_json(p: &PodInfo, clock: Clock, node: &str) -> Value {
    let mut v = pods::pod_json(p, clock);
    let mut keel = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(k) = keel.as_object_mut() {
        k.remove("pod_json");
        k.insert("node".into(), json!(node));
        k.insert(
            "clock".into(),
            serde_json::to_value(clock).unwrap_or(Value::Null),
        );
    }
    v["keel"] = keel;
    v
}

const FLAGS: &[Flag] = &[SOCKET];

/// Usage text.
pub const USAGE: &str = "usage: keel inspect [--socket PATH] POD";

/// Runs `keel inspect`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let p = match client::parse(args, FLAGS) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "keel inspect: {e}\n{USAGE}");
            return 2;
        }
    };
    if p.help {
        let _ = writeln!(out, "{USAGE}");
        return 0;
    }
    let [query] = p.positional.as_slice() else {
        let _ = writeln!(err, "keel inspect: name exactly one pod\n{USAGE}");
        return 2;
    };
    let Some(mut c) = client::connect(&p, "inspect", err) else {
        return 1;
    };
    let all = match c.pods() {
        Ok(p) => p,
        Err(e) => return client::fail("inspect", &e, err),
    };
    let info = c.info().clone();
    match find_pod(&all, query, &info.node) {
        Ok(pod) => {
            let v = inspect_json(pod, info.clock, &info.node);
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            );
            0
        }
        Err(msg) => {
            let _ = writeln!(err, "keel inspect: {msg}");
            1
        }
    }
}

/// Runs `keel inspect` on standard output.
pub fn run(args: &[String]) -> i32 {
    run_with(args, &mut std::io::stdout().lock(), &mut std::io::stderr())
}
