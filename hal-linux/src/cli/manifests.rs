//! `keel manifests`: every file of the manifest source and what became of it.
//!
//! This module deals with showing the core's verdict on each file ([`FileState`]): the
//! pod it runs, a rejection with its position and field path (and whether the last good
//! version keeps running, SPEC 3.2), why a file is ignored (SPEC 1.4–1.6, 1.10), which
//! pod a duplicate collides with (SPEC 3.6), a wait for an older instance, or no capacity.
//! As a table (FILE, STATE, POD, MESSAGE) or, with `-o json`, a list of objects.

use super::client::{self, opt, Flag, SOCKET};
use crate::wire::ManifestInfo;
use keel_core::status::FileState;
use serde_json::{json, Value};
use std::io::Write;

/// The STATE column: one word per core verdict.
pub fn state_word(s: &FileState) -> &'static str {
    match s {
        FileState::New => "New",
        FileState::Pod(_) => "Running",
        FileState::Rejected { kept: Some(_), .. } => "Rejected(kept)",
        FileState::Rejected { kept: None, .. } => "Rejected",
        FileState::NoCapacity => "NoCapacity",
        FileState::Duplicate(_) => "Duplicate",
        FileState::Waiting => "Waiting",
        FileState::Ignored(_) => "Ignored",
        FileState::Unreadable { .. } => "Unreadable",
    }
}

/// The MESSAGE column: the agent's line, or one made from the state when it sent none.
pub fn message(m: &ManifestInfo) -> String {
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
pub fn manifest_json(m: &ManifestInfo) -> Value {
    let mut v = json!({
        "file": m.file,
        "state": state_word(&m.state),
        "pod": m.pod,
        "message": message(m),
    });
    match &m.state {
        FileState::Rejected { error, kept } => {
            v["error"] = json!({
                "line": error.mark.line,
                "column": error.mark.column,
                "path": if error.path.is_root() { String::new() } else { error.path.to_string() },
                "message": super::validate::message(error, None),
            });
            v["keptRunning"] = json!(kept.is_some());
        }
        FileState::Ignored(r) => v["reason"] = json!(format!("{r:?}")),
        _ => {}
    }
    v
}

/// The table.
pub fn table(files: &[ManifestInfo]) -> String {
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|m| {
            vec![
                m.file.clone(),
                state_word(&m.state).to_string(),
                m.pod.clone().unwrap_or_else(|| "-".into()),
                message(m),
            ]
        })
        .collect();
    client::table(&["FILE", "STATE", "POD", "MESSAGE"], &rows)
}

const FLAGS: &[Flag] = &[opt(&["--output", "-o"]), SOCKET];

/// Usage text.
pub const USAGE: &str = "usage: keel manifests [-o json] [--socket PATH]";

/// Runs `keel manifests`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let p = match client::parse(args, FLAGS) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "keel manifests: {e}\n{USAGE}");
            return 2;
        }
    };
    if p.help {
        let _ = writeln!(out, "{USAGE}");
        return 0;
    }
    if let Some(x) = p.positional.first() {
        let _ = writeln!(err, "keel manifests: unexpected argument {x:?}\n{USAGE}");
        return 2;
    }
    let output = p.value("--output").unwrap_or("");
    if !matches!(output, "" | "json") {
        let _ = writeln!(
            err,
            "keel manifests: unknown output format {output:?} (use json)"
        );
        return 2;
    }
    let Some(mut c) = client::connect(&p, "manifests", err) else {
        return 1;
    };
    let files = match c.manifests() {
        Ok(f) => f,
        Err(e) => return client::fail("manifests", &e, err),
    };
    if output == "json" {
        let v = json!({ "items": files.iter().map(manifest_json).collect::<Vec<_>>() });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        );
    } else if files.is_empty() {
        let _ = writeln!(err, "No manifest files found.");
    } else {
        let _ = out.write_all(table(&files).as_bytes());
    }
    0
}

/// Runs `keel manifests` on standard output.
pub fn run(args: &[String]) -> i32 {
    run_with(args, &mut std::io::stdout().lock(), &mut std::io::stderr())
}
