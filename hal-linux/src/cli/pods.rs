//! `keel pods`: the pods the agent runs, as `kubectl get pods` shows them.
//!
//! This module deals with turning the agent's [`PodInfo`] (the core's container states
//! plus names and times) into what Kubernetes users read: the table of `kubectl get
//! pods` (NAME, READY, STATUS, RESTARTS, AGE, with kubectl's rules for STATUS) and, with
//! `-o json`, a `v1` `PodList` whose items carry `metadata`, the defaulted `spec` and a
//! `status` shaped like the API's (`phase`, `conditions`, `containerStatuses` with
//! `state`, `lastState`, `ready`, `restartCount`), so jq habits carry over; `-o yaml` is
//! the same object as YAML, `-o name` prints `pod/NAME`, `-o jsonpath=…` runs a kubectl
//! template ([`super::jsonpath`]). Pods are listed by namespace, then name; `NAME`
//! arguments pick pods as `kubectl get pods NAME` does, and `-w` keeps printing pods as
//! they change.
//! The `status` object itself is [`crate::podstatus`]'s, shared with the mirror pods.

use super::client;
use crate::wire::{Clock, ContainerInfo, PodInfo};
use serde_json::{json, Value};
use std::io::Write;

pub use crate::podstatus::{container_status_json, kube_state, last_state, status_json, KubeState};

/// The pod as a Kubernetes `Pod` object: the agent's `pod_json` (metadata and defaulted
/// spec) with `creationTimestamp` and `status` added.
pub fn pod_json(p: &PodInfo, clock: Clock) -> Value {
    let mut pod = serde_json::from_slice::<Value>(p.pod_json.as_bytes())
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let obj = pod.as_object_mut().expect("an object");
    obj.entry("apiVersion").or_insert(json!("v1"));
    obj.entry("kind").or_insert(json!("Pod"));
    let meta = obj.entry("metadata").or_insert(json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("name".into(), json!(p.name));
        meta.insert("namespace".into(), json!(p.namespace));
        meta.insert("uid".into(), json!(p.uid));
        meta.insert(
            "creationTimestamp".into(),
            json!(client::rfc3339(p.created_unix_ms)),
        );
    }
    obj.entry("spec").or_insert(json!({}));
    obj.insert("status".into(), status_json(p, clock));
    pod
}

/// The `PodList` of `keel pods -o json`.
pub fn pod_list_json(pods: &[PodInfo], clock: Clock) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": { "resourceVersion": "" },
        "items": pods.iter().map(|p| pod_json(p, clock)).collect::<Vec<_>>(),
    })
}

/// The columns kubectl computes for a pod: READY, STATUS, RESTARTS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// `ready/total` app containers.
    pub ready: String,
    /// kubectl's STATUS.
    pub status: String,
    /// Restarts, with `(5m ago)` when there was one.
    pub restarts: String,
}

/// kubectl's `printPod` rules: the first unfinished init container gives `Init:…`;
/// otherwise the last app container with a waiting or terminated reason wins; a deleted
/// pod is `Terminating`; else the phase.
pub fn summary(p: &PodInfo, clock: Clock, now_ms: u64) -> Summary {
    let init: Vec<&ContainerInfo> = p.containers.iter().filter(|c| c.init).collect();
    let app: Vec<&ContainerInfo> = p.containers.iter().filter(|c| !c.init).collect();
    let mut reason = p.phase.as_str().to_string();
    let mut restarts: u64 = 0;
    let mut last_restart: Option<u64> = None;
    let mut note_restart = |c: &ContainerInfo, restarts: &mut u64| {
        *restarts += c.status.restart_count as u64;
        if let Some(l) = c.status.last {
            let at = clock.unix_ms(l.finished_at);
            last_restart = Some(last_restart.map_or(at, |x: u64| x.max(at)));
        }
    };
    let mut initializing = false;
    // Sidecars count among the containers (kubectl's restartable init containers): their
    // restarts and readiness stay in the summary after initialisation.
    let n_sidecars = init.iter().filter(|c| c.status.sidecar).count();
    let mut sidecar_ready = 0;
    for (i, c) in init.iter().enumerate() {
        note_restart(c, &mut restarts);
        let state = kube_state(&c.status.state, clock);
        if c.status.sidecar && c.status.started && matches!(state, KubeState::Running(_)) {
            sidecar_ready += usize::from(c.status.ready);
            continue;
        }
        match state {
            KubeState::Terminated { code: 0, .. } => continue,
            KubeState::Terminated { reason: r, .. } => reason = format!("Init:{r}"),
            KubeState::Waiting(r) if r != "PodInitializing" && r != "ContainerCreating" => {
                reason = format!("Init:{r}")
            }
            _ => reason = format!("Init:{i}/{}", init.len()),
        }
        initializing = true;
        break;
    }
    let mut ready = sidecar_ready;
    if !initializing {
        restarts = 0;
        last_restart = None;
        for c in init.iter().filter(|c| c.status.sidecar) {
            restarts += c.status.restart_count as u64;
            if let Some(l) = c.status.last {
                let at = clock.unix_ms(l.finished_at);
                last_restart = Some(last_restart.map_or(at, |x: u64| x.max(at)));
            }
        }
        let mut has_running = false;
        for c in app.iter().rev() {
            restarts += c.status.restart_count as u64;
            if let Some(l) = c.status.last {
                let at = clock.unix_ms(l.finished_at);
                last_restart = Some(last_restart.map_or(at, |x: u64| x.max(at)));
            }
            match kube_state(&c.status.state, clock) {
                KubeState::Waiting(r) => reason = r.to_string(),
                KubeState::Terminated { reason: r, .. } => reason = r.to_string(),
                KubeState::Running(_) => {
                    has_running = true;
                    if c.status.ready {
                        ready += 1;
                    }
                }
            }
        }
        if reason == "Completed" && has_running {
            reason = if ready == app.len() + n_sidecars {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    } else {
        ready += app.iter().filter(|c| c.status.ready).count();
    }
    if p.terminating.is_some() {
        reason = "Terminating".into();
    }
    let restarts = match last_restart {
        Some(at) if restarts > 0 => format!("{restarts} ({} ago)", client::age(now_ms, at)),
        _ => restarts.to_string(),
    };
    Summary {
        ready: format!("{ready}/{}", app.len() + n_sidecars),
        status: reason,
        restarts,
    }
}

/// The table's rows, as `kubectl get pods` (or `-o wide`) prints them.
pub fn rows(
    pods: &[PodInfo],
    clock: Clock,
    node: &str,
    now_ms: u64,
    wide: bool,
) -> Vec<Vec<String>> {
    pods.iter()
        .map(|p| {
            let s = summary(p, clock, now_ms);
            let mut row = vec![
                p.name.clone(),
                s.ready,
                s.status,
                s.restarts,
                client::age(now_ms, p.created_unix_ms),
            ];
            if wide {
                let note = match (&p.terminating, &p.rejection) {
                    (Some(t), _) => format!("terminating: {t}"),
                    (None, Some(r)) => format!("newer manifest rejected: {r}"),
                    (None, None) => "<none>".into(),
                };
                row.extend([
                    p.pod_ips
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "<none>".into()),
                    node.to_string(),
                    p.uid.clone(),
                    p.file.clone().unwrap_or_else(|| "<none>".into()),
                    note,
                ]);
                // With a kubeconfig the agent reports each mirror pod's sync state.
                if let Some(m) = &p.mirror {
                    row.push(m.clone());
                }
            }
            row
        })
        .collect()
}

/// The table, as `kubectl get pods` (or `-o wide`) prints it.
pub fn table(pods: &[PodInfo], clock: Clock, node: &str, now_ms: u64, wide: bool) -> String {
    client::table(&header(wide, pods), &rows(pods, clock, node, now_ms, wide))
}

/// `keel pods -o FORMAT`.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The table (no `-o`).
    Table,
    /// The table with IP, NODE, UID, FILE, NOTE, and MIRROR (the mirror pod's sync state)
    /// when the agent has a kubeconfig.
    Wide,
    /// A `PodList` (or one `Pod` when one NAME is given) as JSON.
    Json,
    /// The same object as YAML.
    Yaml,
    /// `pod/NAME` per pod.
    Name,
    /// A kubectl JSONPath template over the JSON object.
    JsonPath(super::jsonpath::Template),
}

/// The formats `-o` takes, for error messages and help.
pub const OUTPUTS: &str = "wide, json, yaml, name, jsonpath=TEMPLATE";

/// Parses `-o`'s value; an unknown one lists the supported ones.
pub fn parse_output(s: &str) -> Result<Output, String> {
    Ok(match s {
        "" => Output::Table,
        "wide" => Output::Wide,
        "json" => Output::Json,
        "yaml" => Output::Yaml,
        "name" => Output::Name,
        _ => match s.split_once('=') {
            Some(("jsonpath", t)) => Output::JsonPath(
                super::jsonpath::Template::parse(t).map_err(|e| format!("jsonpath: {e}"))?,
            ),
            _ => return Err(format!("unsupported output format; use one of {OUTPUTS}")),
        },
    })
}

/// `keel pods [NAME...] [-o FORMAT] [-w]`.
#[derive(Debug, clap::Args)]
#[command(
    args_override_self = true,
    after_help = "NAME is a pod's full name (web-node1), its manifest name (web), \
                        NAMESPACE/NAME or its UID. Pods are listed by namespace, then name."
)]
pub struct Args {
    /// Only these pods (kubectl get pods NAME...)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Output format: wide, json, yaml, name, jsonpath=TEMPLATE
    #[arg(short = 'o', long = "output", value_name = "FORMAT", value_parser = parse_output)]
    pub output: Option<Output>,
    /// After listing, keep watching and print each pod again when it changes
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Connection.
    #[command(flatten)]
    pub socket: super::SocketArg,
}

/// The pods named on the command line (all pods without names), in namespace-then-name
/// order, and an error line for each name that matched nothing.
pub fn select(all: &[PodInfo], names: &[String], node: &str) -> (Vec<PodInfo>, Vec<String>) {
    let mut errors = Vec::new();
    let mut picked: Vec<PodInfo> = if names.is_empty() {
        all.to_vec()
    } else {
        let mut v: Vec<PodInfo> = Vec::new();
        for n in names {
            match crate::wire::find_pod(all, n, node) {
                Ok(p) if !v.iter().any(|q| q.uid == p.uid) => v.push(p.clone()),
                Ok(_) => {}
                Err(m) => errors.push(m),
            }
        }
        v
    };
    crate::sort_by(&mut picked, |a, b| {
        (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid))
    });
    (picked, errors)
}

/// The object `-o json|yaml|jsonpath` shows: one `Pod` when exactly one NAME was asked
/// for (as kubectl does), else a `PodList`.
pub fn object(pods: &[PodInfo], clock: Clock, one: bool) -> Value {
    match pods {
        [p] if one => pod_json(p, clock),
        _ => pod_list_json(pods, clock),
    }
}

/// YAML for `-o yaml` (the same object as `-o json`).
pub fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|e| format!("# cannot write YAML: {e}\n"))
}

fn render_object(output: &Output, v: &Value) -> String {
    match output {
        Output::Yaml => to_yaml(v),
        Output::JsonPath(t) => t.render(v),
        _ => serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
    }
}

/// The columns; MIRROR (wide only) when the agent mirrors pods to an API server.
fn header(wide: bool, pods: &[PodInfo]) -> Vec<&'static str> {
    let mut h = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        h.extend(["IP", "NODE", "UID", "FILE", "NOTE"]);
        if pods.iter().any(|p| p.mirror.is_some()) {
            h.push("MIRROR");
        }
    }
    h
}

/// Runs `keel pods` with parsed arguments.
pub fn run_args(a: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let output = a.output.clone().unwrap_or(Output::Table);
    let Some(mut c) = client::connect(&a.socket, "pods", err) else {
        return 1;
    };
    let all = match c.pods() {
        Ok(p) => p,
        Err(e) => return client::fail("pods", &e, err),
    };
    let info = c.info().clone();
    let (pods, errors) = select(&all, &a.names, &info.node);
    for e in &errors {
        let _ = writeln!(err, "keel pods: {e}");
    }
    let one = a.names.len() == 1;
    let now = client::now_unix_ms();
    let mut width = None;
    match &output {
        Output::Table | Output::Wide => {
            let wide = output == Output::Wide;
            if pods.is_empty() {
                if a.names.is_empty() {
                    let _ = writeln!(err, "No pods found on node {}.", info.node);
                }
            } else {
                let rows = rows(&pods, info.clock, &info.node, now, wide);
                let h = header(wide, &pods);
                let w = client::widths(&h, &rows);
                let mut t = client::line(&h, &w);
                for r in &rows {
                    t += &client::line(r, &w);
                }
                let _ = out.write_all(t.as_bytes());
                width = Some(w);
            }
        }
        Output::Name => {
            for p in &pods {
                let _ = writeln!(out, "pod/{}", p.name);
            }
        }
        _ if pods.is_empty() && !a.names.is_empty() => {}
        _ => {
            let v = object(&pods, info.clock, one);
            let _ = out.write_all(render_object(&output, &v).as_bytes());
        }
    }
    let _ = out.flush();
    if a.watch {
        return watch(c, a, &output, pods, width, out, err);
    }
    if errors.is_empty() {
        0
    } else {
        1
    }
}

/// What makes a pod "changed" for `--watch` (not its age).
fn watch_key(p: &PodInfo, clock: Clock) -> (String, String, String) {
    let s = summary(p, clock, 0);
    let restarts: u32 = p.containers.iter().map(|c| c.status.restart_count).sum();
    (s.ready, s.status, format!("{}/{restarts}", p.uid))
}

/// How often `--watch` asks the agent.
const WATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(500);

/// `--watch`: asks the agent every [`WATCH_PERIOD`] and prints each pod whose status
/// changed (or that appeared) in the chosen format; table rows keep the first table's
/// column widths. Ends when the agent goes away (exit 1) or output is closed (exit 0).
fn watch(
    mut c: crate::control::Client,
    a: &Args,
    output: &Output,
    first: Vec<PodInfo>,
    mut width: Option<Vec<usize>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let clock = c.info().clock;
    let node = c.info().node.clone();
    let mut seen: std::collections::BTreeMap<(String, String), (String, String, String)> = first
        .iter()
        .map(|p| ((p.namespace.clone(), p.name.clone()), watch_key(p, clock)))
        .collect();
    loop {
        std::thread::sleep(WATCH_PERIOD);
        let all = match c.pods() {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(err, "keel pods: watch ended: {e}");
                return 1;
            }
        };
        let names: Vec<String> = if a.names.is_empty() {
            Vec::new()
        } else {
            // Names that match nothing yet may appear later: select quietly.
            a.names.clone()
        };
        let (pods, _) = select(&all, &names, &node);
        let now = client::now_unix_ms();
        let mut text = String::new();
        for p in &pods {
            let key = (p.namespace.clone(), p.name.clone());
            let k = watch_key(p, clock);
            if seen.get(&key) == Some(&k) {
                continue;
            }
            seen.insert(key, k);
            match output {
                Output::Table | Output::Wide => {
                    let wide = *output == Output::Wide;
                    let row = rows(std::slice::from_ref(p), clock, &node, now, wide);
                    let w = width.get_or_insert_with(|| {
                        let h = header(wide, std::slice::from_ref(p));
                        let w = client::widths(&h, &row);
                        text += &client::line(&h, &w);
                        w
                    });
                    text += &client::line(&row[0], w);
                }
                Output::Name => text += &format!("pod/{}\n", p.name),
                Output::Yaml => {
                    text += "---\n";
                    text += &render_object(output, &pod_json(p, clock));
                }
                _ => text += &render_object(output, &pod_json(p, clock)),
            }
        }
        if text.is_empty() {
            continue;
        }
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return 0;
        }
    }
}

/// Runs `keel pods ARGS...` (arguments after `pods`), writing to `out` and `err`.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    super::run_sub("pods", args, out, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::machine::{Container, State, TermReason, Termination, WaitReason};
    use keel_core::status::Phase;
    use keel_core::time::Instant;

    const CLOCK: Clock = Clock { boot_unix_ms: 0 };

    fn c(name: &str, init: bool, state: State, ready: bool) -> ContainerInfo {
        let mut status = Container::new(0, WaitReason::ContainerCreating);
        status.state = state;
        status.ready = ready;
        ContainerInfo {
            name: name.into(),
            image: "i".into(),
            init,
            status,
            runtime_id: None,
            log_dir: String::new(),
            message: None,
        }
    }

    fn pod(phase: Phase, containers: Vec<ContainerInfo>) -> PodInfo {
        PodInfo {
            name: "p-n".into(),
            namespace: "default".into(),
            uid: "u".into(),
            phase,
            containers,
            file: None,
            rejection: None,
            terminating: None,
            pod_json: String::new(),
            pod_ips: vec!["10.88.0.5".into()],
            created_unix_ms: 0,
            mirror: None,
        }
    }

    fn done(code: i32) -> State {
        State::Terminated(Termination {
            code,
            reason: TermReason::of(code, false),
            started_at: Instant(0),
            finished_at: Instant(1000),
        })
    }

    fn wait(r: WaitReason) -> State {
        State::Waiting {
            reason: r,
            restart_at: Instant::NEVER,
            error: None,
        }
    }

    const RUN: State = State::Running {
        started_at: Instant(0),
    };

    fn status(p: &PodInfo) -> String {
        summary(p, CLOCK, 10_000).status
    }

    #[test]
    fn sidecars_count_as_containers_and_as_initialised_once_started() {
        let side = |ready: bool, started: bool| {
            let mut s = c("proxy", true, RUN, ready);
            s.status.sidecar = true;
            s.status.started = started;
            s.status.init_done = started;
            s.status.restart_count = 2;
            s
        };
        // Not started yet: the pod initialises.
        let p = pod(
            Phase::Pending,
            vec![
                side(false, false),
                c("a", false, wait(WaitReason::PodInitializing), false),
            ],
        );
        assert_eq!(status(&p), "Init:0/1");
        assert_eq!(summary(&p, CLOCK, 10_000).ready, "0/2");
        // Started and ready beside a ready app: 2/2, its restarts counted.
        let p = pod(
            Phase::Running,
            vec![side(true, true), c("a", false, RUN, true)],
        );
        let s = summary(&p, CLOCK, 10_000);
        assert_eq!((s.status.as_str(), s.ready.as_str()), ("Running", "2/2"));
        assert_eq!(s.restarts, "2");
        let st = status_json(&p, CLOCK);
        assert_eq!(st["conditions"][0]["status"], "True", "Initialized");
        assert_eq!(st["conditions"][1]["status"], "True", "Ready");
        assert_eq!(st["initContainerStatuses"][0]["started"], true);
        // A sidecar that is not ready keeps the pod not ready.
        let p = pod(
            Phase::Running,
            vec![side(false, true), c("a", false, RUN, true)],
        );
        assert_eq!(status_json(&p, CLOCK)["conditions"][1]["status"], "False");
        assert_eq!(summary(&p, CLOCK, 10_000).ready, "1/2");
    }

    #[test]
    fn init_containers_give_init_statuses() {
        let app = c("a", false, wait(WaitReason::PodInitializing), false);
        let second_running = pod(
            Phase::Pending,
            vec![
                c("i1", true, done(0), false),
                c("i2", true, RUN, false),
                app.clone(),
            ],
        );
        assert_eq!(status(&second_running), "Init:1/2");
        let failed = pod(
            Phase::Pending,
            vec![c("i1", true, done(2), false), app.clone()],
        );
        assert_eq!(status(&failed), "Init:Error");
        let looping = pod(
            Phase::Pending,
            vec![
                c("i1", true, wait(WaitReason::CrashLoopBackOff), false),
                app,
            ],
        );
        assert_eq!(status(&looping), "Init:CrashLoopBackOff");
    }

    #[test]
    fn a_completed_container_beside_a_running_one_is_running_or_not_ready() {
        let ready = pod(
            Phase::Running,
            vec![c("a", false, done(0), false), c("b", false, RUN, true)],
        );
        // kubectl: Completed with a running container is NotReady unless all are ready.
        assert_eq!(status(&ready), "NotReady");
        let s = summary(&ready, CLOCK, 10_000);
        assert_eq!(s.ready, "1/2");
    }

    #[test]
    fn creating_stopping_and_terminating() {
        let creating = pod(
            Phase::Pending,
            vec![c("a", false, State::Creating { since: Instant(0) }, false)],
        );
        assert_eq!(status(&creating), "ContainerCreating");
        let mut stopping = pod(
            Phase::Running,
            vec![c(
                "a",
                false,
                State::Stopping {
                    kill_at: Instant(5),
                    signalled: true,
                    pre_stop: None,
                    restart: false,
                    started_at: Instant(0),
                },
                true,
            )],
        );
        assert_eq!(status(&stopping), "Running");
        stopping.terminating = Some("deleted".into());
        assert_eq!(status(&stopping), "Terminating");
        let failed = pod(Phase::Failed, vec![c("a", false, done(137), false)]);
        assert_eq!(status(&failed), "Error");
    }

    #[test]
    fn restarts_show_when_the_last_one_was() {
        let mut a = c("a", false, RUN, true);
        a.status.restart_count = 2;
        a.status.last = Some(Termination {
            code: 1,
            reason: TermReason::Error,
            started_at: Instant(0),
            finished_at: Instant(4_000),
        });
        let p = pod(Phase::Running, vec![a]);
        assert_eq!(summary(&p, CLOCK, 10_000).restarts, "2 (6s ago)");
    }
}
