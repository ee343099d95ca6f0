//! `keel inspect POD`: everything the agent knows about one pod, as JSON.
//!
//! This module deals with printing one pod as a Kubernetes `Pod` object (metadata,
//! defaulted spec, status as in `keel pods -o json`) with a `keel` key added holding the
//! agent's own view: the manifest file, a rejected newer version, termination, and per
//! container the runtime id, log directory, waiting message and the core's full status
//! (state, backoff, probes), every time in it as RFC 3339 with how long ago or how far
//! off it is ("never" for a deadline that is not set). The pod is named by its full name,
//! its manifest name, its UID, or `NAMESPACE/NAME`.

use super::client;
use super::pods;
use crate::wire::{find_pod, Clock, PodInfo};
use serde_json::{json, Value};
use std::io::Write;

/// The pod object with the `keel` key.
pub fn inspect_json(p: &PodInfo, clock: Clock, node: &str) -> Value {
    let mut v = pods::pod_json(p, clock);
    let mut keel = serde_json::to_value(p).unwrap_or(Value::Null);
    let now = client::now_unix_ms();
    if let Some(k) = keel.as_object_mut() {
        k.remove("pod_json");
        if let Some(c) = k.remove("created_unix_ms").and_then(|c| c.as_u64()) {
            k.insert("created".into(), json!(crate::timefmt::rfc3339_ms(c)));
            k.insert("age".into(), json!(client::age(now, c)));
        }
        k.insert("node".into(), json!(node));
        k.insert(
            "agent_clock_zero".into(),
            json!(crate::timefmt::rfc3339_ms(clock.boot_unix_ms)),
        );
    }
    readable_times(&mut keel, clock, now);
    v["keel"] = keel;
    v
}

/// Rewrites every agent instant in the core's status (`*_at` fields and `since`, in
/// milliseconds since the agent's clock zero) as an RFC 3339 time, or `"never"` for
/// [`keel_core::time::Instant::NEVER`], and adds beside it how long ago or how far off it
/// is (`restart_in: "35s"`, `started_ago: "3m2s"`), so nobody reads a raw `u64::MAX` or
/// milliseconds since the agent's boot.
fn readable_times(v: &mut Value, clock: Clock, now: u64) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let is_instant = k.ends_with("_at") || k == "since";
                match m.get(&k).and_then(Value::as_u64) {
                    Some(ms) if is_instant => {
                        let stem = k.strip_suffix("_at").unwrap_or(&k).to_string();
                        if ms == keel_core::time::Instant::NEVER.millis() {
                            m.insert(k, json!("never"));
                            continue;
                        }
                        let at = clock.unix_ms(keel_core::time::Instant(ms));
                        m.insert(k, json!(crate::timefmt::rfc3339_ms(at)));
                        if at > now {
                            m.insert(format!("{stem}_in"), json!(client::age(at, now)));
                        } else {
                            m.insert(format!("{stem}_ago"), json!(client::age(now, at)));
                        }
                    }
                    _ => {
                        if let Some(x) = m.get_mut(&k) {
                            readable_times(x, clock, now);
                        }
                    }
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                readable_times(x, clock, now);
            }
        }
        _ => {}
    }
}

/// `keel inspect POD`.
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
pub struct Args {
    /// The pod: full name, manifest name, NAMESPACE/NAME or UID
    #[arg(value_name = "POD")]
    pub pod: String,
    /// Connection.
    #[command(flatten)]
    pub socket: super::SocketArg,
}

/// Runs `keel inspect` with parsed arguments.
pub fn run_args(a: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some(mut c) = client::connect(&a.socket, "inspect", err) else {
        return 1;
    };
    let all = match c.pods() {
        Ok(p) => p,
        Err(e) => return client::fail("inspect", &e, err),
    };
    let info = c.info().clone();
    match find_pod(&all, &a.pod, &info.node) {
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

/// Runs `keel inspect ARGS...`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    super::run_sub("inspect", args, out, err)
}
