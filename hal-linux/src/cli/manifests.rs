//! `keel manifests`: every file of the manifest source and what became of it.
//!
//! This module deals with showing the core's verdict on each file ([`FileState`]): the
//! pod it runs, a rejection with its position and field path (and whether the last good
//! version keeps running, SPEC 3.2), why a file is ignored (SPEC 1.4–1.6, 1.10), which
//! pod a duplicate collides with (SPEC 3.6), a wait for an older instance, or no capacity.
//! For a file whose pod runs, STATE is the pod's real status (a pod waiting in
//! `ErrImageNeverPull` is not "Running"). As a table (FILE, STATE, POD, MESSAGE) or,
//! with `-o json`/`-o yaml`, a list of objects.

use super::client;
use crate::wire::{Clock, ManifestInfo, PodInfo};
use keel_core::status::FileState;
use serde_json::{json, Value};
use std::io::Write;

/// The pod a file runs, as the agent reports it, with the clock to read its times.
#[derive(Clone, Copy, Debug)]
pub struct PodView<'a> {
    /// Every pod of the agent.
    pub pods: &'a [PodInfo],
    /// The agent's clock.
    pub clock: Clock,
}

impl PodView<'_> {
    fn of(&self, m: &ManifestInfo) -> Option<&PodInfo> {
        // The agent names the pod `NAMESPACE/NAME` (or just the full name).
        let name = m.pod.as_deref()?;
        self.pods.iter().find(|p| {
            p.name == name
                || name
                    .split_once('/')
                    .is_some_and(|(ns, n)| ns == p.namespace && n == p.name)
        })
    }
}

/// The STATE column: for a file whose pod runs, the pod's real status as `keel pods`
/// shows it (`Running`, `ErrImageNeverPull`, `CrashLoopBackOff`, `Completed`…; `Unknown`
/// if the agent no longer lists the pod); otherwise one word per core verdict.
pub fn state_text(m: &ManifestInfo, view: PodView<'_>) -> String {
    match (&m.state, view.of(m)) {
        (FileState::Pod(_), Some(p)) => {
            super::pods::summary(p, view.clock, client::now_unix_ms()).status
        }
        (FileState::Pod(_), None) => "Unknown".into(),
        (s, _) => state_word(s).into(),
    }
}

/// The word for a core verdict (a pod's own status is [`state_text`]).
pub fn state_word(s: &FileState) -> &'static str {
    match s {
        FileState::New => "New",
        FileState::Pod(_) => "Pod",
        FileState::Rejected { kept: Some(_), .. } => "Rejected(kept)",
        FileState::Rejected { kept: None, .. } => "Rejected",
        FileState::NoCapacity => "NoCapacity",
        FileState::Duplicate(_) => "Duplicate",
        FileState::Waiting => "Waiting",
        FileState::Ignored(_) => "Ignored",
        FileState::Unreadable { .. } => "Unreadable",
    }
}

/// The MESSAGE column: the agent's line, or one made from the state when it sent none;
/// for a pod that is not running, what it waits for.
pub fn message(m: &ManifestInfo, view: PodView<'_>) -> String {
    if let (FileState::Pod(_), Some(p)) = (&m.state, view.of(m)) {
        let status = state_text(m, view);
        if status != "Running" {
            let why = p
                .containers
                .iter()
                .find_map(|c| c.message.as_deref().map(|w| format!(" ({}: {w})", c.name)))
                .unwrap_or_default();
            return format!("pod {} is {status}{why}", p.name);
        }
    }
    if !m.message.is_empty() {
        return m.message.clone();
    }
    match &m.state {
        FileState::New => "not read yet".into(),
        FileState::Pod(_) => format!("running pod {}", m.pod.as_deref().unwrap_or("?")),
        FileState::Rejected { error, kept } => {
            let kept = if kept.is_some() {
                "; the last good version keeps running"
            } else {
                ""
            };
            format!("{error}{kept}")
        }
        FileState::NoCapacity => "rejected: every pod slot is in use".into(),
        FileState::Duplicate(_) => format!(
            "duplicate of the pod {} of a file that sorts first",
            m.pod.as_deref().unwrap_or("?")
        ),
        FileState::Waiting => "waiting for the older instance of its pod to terminate".into(),
        FileState::Ignored(r) => r.message().into(),
        FileState::Unreadable { kind, kept } => {
            let kept = if kept.is_some() {
                "; its pod keeps running"
            } else {
                ""
            };
            format!("cannot be read ({kind:?}){kept}")
        }
    }
}

/// One file as JSON: `file`, `state`, `pod`, `message`, and for a rejection an `error`
/// object with `line`, `column`, `path` and `message`.
pub fn manifest_json(m: &ManifestInfo, view: PodView<'_>) -> Value {
    let mut v = json!({
        "file": m.file,
        "state": state_text(m, view),
        "pod": m.pod,
        "message": message(m, view),
    });
    match &m.state {
        FileState::Rejected { error, kept } => {
            v["error"] = json!({
                "line": error.mark.line,
                "column": error.mark.column,
                "path": if error.path.is_root() { String::new() } else { error.path.to_string() },
                "message": crate::diag::message(error, None),
            });
            v["keptRunning"] = json!(kept.is_some());
        }
        FileState::Ignored(r) => v["reason"] = json!(format!("{r:?}")),
        _ => {}
    }
    v
}

/// The table.
pub fn table(files: &[ManifestInfo], view: PodView<'_>) -> String {
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|m| {
            vec![
                m.file.clone(),
                state_text(m, view),
                m.pod.clone().unwrap_or_else(|| "-".into()),
                message(m, view),
            ]
        })
        .collect();
    client::table(&["FILE", "STATE", "POD", "MESSAGE"], &rows)
}

/// `keel manifests -o FORMAT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// `{"items": [...]}`, one object per file
    Json,
    /// The same as YAML
    Yaml,
}

/// `keel manifests [-o json|yaml]`.
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
pub struct Args {
    /// Output format (default: a table)
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<Output>,
    /// Connection.
    #[command(flatten)]
    pub socket: super::SocketArg,
}

/// Runs `keel manifests` with parsed arguments.
pub fn run_args(a: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some(mut c) = client::connect(&a.socket, "manifests", err) else {
        return 1;
    };
    let files = match c.manifests() {
        Ok(f) => f,
        Err(e) => return client::fail("manifests", &e, err),
    };
    let pods = match c.pods() {
        Ok(p) => p,
        Err(e) => return client::fail("manifests", &e, err),
    };
    let view = PodView {
        pods: &pods,
        clock: c.info().clock,
    };
    let v = || json!({ "items": files.iter().map(|m| manifest_json(m, view)).collect::<Vec<_>>() });
    match a.output {
        Some(Output::Json) => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v()).unwrap_or_default()
            );
        }
        Some(Output::Yaml) => {
            let _ = out.write_all(super::pods::to_yaml(&v()).as_bytes());
        }
        None if files.is_empty() => {
            let _ = writeln!(err, "No manifest files found.");
        }
        None => {
            let _ = out.write_all(table(&files, view).as_bytes());
        }
    }
    0
}

/// Runs `keel manifests ARGS...`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    super::run_sub("manifests", args, out, err)
}
