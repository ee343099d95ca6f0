//! `keel validate`: check manifests before they ship.
//!
//! This module deals with the command users and CI pipelines run on manifest files. It
//! decodes and validates each file exactly as the agent would, and prints compiler-style
//! diagnostics (`file:line:col: error: path: message`) or, with `-o json`, one JSON object
//! per file. Exit status: 0 all accepted, 1 any rejected, 2 usage error.

use crate::render;
use keel_core::manifest::{
    self, defaults, error::ErrorKind, model::Pool, Error, Mark, Pod, Warning,
};
use serde_json::{json, Value};
use std::io::{Read, Write};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Compiler-style lines.
    Text,
    /// One JSON object per file per line.
    Json,
}

/// The token that starts at `mark` (for "got the number 8080").
fn token_at(text: &str, mark: Mark) -> Option<&str> {
    if mark.line == 0 {
        return None;
    }
    let line = text.lines().nth(mark.line as usize - 1)?;
    let start = line
        .char_indices()
        .nth(mark.column as usize - 1)
        .map(|(i, _)| i)?;
    let rest = &line[start..];
    let end = rest
        .find([',', ']', '}', '#', ' ', '\t', '\r'])
        .unwrap_or(rest.len());
    let tok = rest[..end].trim();
    (!tok.is_empty()).then_some(tok)
}

/// The message of an error, with the offending value quoted where that helps.
pub fn message(e: &Error, text: Option<&str>) -> String {
    if let ErrorKind::Type { expected, got } = e.kind {
        let what = match got {
            manifest::error::ValueType::Integer | manifest::error::ValueType::Number => {
                "the number"
            }
            manifest::error::ValueType::Boolean => "the boolean",
            _ => "",
        };
        if let (false, Some(tok)) = (what.is_empty(), text.and_then(|t| token_at(t, e.mark))) {
            let hint = if expected == manifest::error::ValueType::String {
                "; quote it"
            } else {
                ""
            };
            return format!("expected {}, got {what} {tok}{hint}", expected.phrase());
        }
    }
    e.kind.to_string()
}

/// `file:line:col: error: path: message`.
pub fn diagnostic(file: &str, e: &Error, text: Option<&str>) -> String {
    let mut out = String::from(file);
    if e.mark.line > 0 {
        out += &format!(":{}:{}", e.mark.line, e.mark.column);
    }
    out += ": error: ";
    if !e.path.is_root() {
        out += &format!("{}: ", e.path);
    }
    out + &message(e, text)
}

fn warning_text(w: &Warning<'_>) -> (Mark, String) {
    match w {
        Warning::UnknownField { path, key, mark } => {
            let at = if path.is_root() {
                String::new()
            } else {
                format!("{path}: ")
            };
            (*mark, format!("{at}unknown field \"{key}\" is ignored"))
        }
        Warning::ExtraDocuments { count, line } => (
            Mark {
                line: *line,
                column: 1,
            },
            format!(
                "{count} further document(s) after the first are ignored (a file holds one Pod)"
            ),
        ),
    }
}

/// The result for one file.
#[derive(Debug)]
pub struct FileReport {
    /// Accepted?
    pub accepted: bool,
    /// Human lines (text mode).
    pub lines: Vec<String>,
    /// The JSON object (json mode).
    pub json: Value,
}

/// Validates one manifest's bytes as `file` on `node`.
pub fn check_file(file: &str, bytes: &[u8], node: &str, seen: &str) -> FileReport {
    let mut pod = Box::<Pod>::default();
    let mut errors: Vec<Error> = Vec::new();
    let mut warnings: Vec<(Mark, String)> = Vec::new();
    let text = manifest::text(bytes).ok();
    let decoded = manifest::check(
        bytes,
        node,
        &mut pod,
        &mut |w| warnings.push(warning_text(&w)),
        &mut |e| errors.push(e),
    );
    // The pod as written is shown whenever the file decoded, even if validation failed.
    let parsed = !errors.iter().any(|e| {
        matches!(
            e.kind,
            ErrorKind::Syntax(_)
                | ErrorKind::FileTooLarge
                | ErrorKind::NotAPod(_)
                | ErrorKind::Type { .. }
                | ErrorKind::DuplicateKey
                | ErrorKind::ApiReference(_)
                | ErrorKind::Capacity(_)
        ) || (e.kind == ErrorKind::Required
            && matches!(
                e.path.segs(),
                [manifest::path::Seg::Field(
                    manifest::path::F::Kind | manifest::path::F::ApiVersion
                )]
            ))
    }) || decoded.is_ok();
    let as_written = parsed.then(|| render::pod(&pod));
    let mut defaulted = None;
    if decoded.is_ok() {
        let mut scratch = Box::<Pool>::default();
        let ctx = defaults::Context {
            node,
            path: file,
            seen,
        };
        let r = defaults::canonicalize(&mut pod, &mut scratch)
            .and_then(|_| defaults::apply(&mut pod, &ctx));
        match r {
            Ok(_) => defaulted = Some(render::pod(&pod)),
            Err(e) => errors.push(e),
        }
    }
    let accepted = errors.is_empty();
    let mut lines = Vec::new();
    for e in &errors {
        lines.push(diagnostic(file, e, text));
    }
    for (m, w) in &warnings {
        let pos = if m.line > 0 {
            format!(":{}:{}", m.line, m.column)
        } else {
            String::new()
        };
        lines.push(format!("{file}{pos}: warning: {w}"));
    }
    let mut obj = json!({
        "file": file,
        "accepted": accepted,
        "errors": errors.iter().map(|e| json!({
            "path": if e.path.is_root() { String::new() } else { e.path.to_string() },
            "line": e.mark.line,
            "column": e.mark.column,
            "message": message(e, text),
        })).collect::<Vec<_>>(),
        "warnings": warnings.iter().map(|(m, w)| json!({
            "line": m.line, "column": m.column, "message": w,
        })).collect::<Vec<_>>(),
    });
    if let Some(p) = as_written {
        obj["pod"] = p;
    }
    if let Some(d) = defaulted {
        obj["defaulted"] = d;
    }
    FileReport {
        accepted,
        lines,
        json: obj,
    }
}

/// Runs `keel validate` with its arguments (after the subcommand). Returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let mut node: Option<String> = None;
    let mut output = Output::Text;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Option<String> {
            let v = inline.clone().or_else(|| it.next().cloned());
            if v.is_none() {
                eprintln!("keel validate: {name} needs a value");
            }
            v
        };
        match flag {
            "--node" => match value("--node") {
                Some(v) => node = Some(v),
                None => return 2,
            },
            "-o" | "--output" => match value("-o").as_deref() {
                Some("text") => output = Output::Text,
                Some("json") => output = Output::Json,
                Some(other) => {
                    eprintln!("keel validate: unknown output format {other:?} (use text or json)");
                    return 2;
                }
                None => return 2,
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            f if f.starts_with('-') && f != "-" => {
                eprintln!("keel validate: unknown flag {f}\n{USAGE}");
                return 2;
            }
            _ => files.push(a.clone()),
        }
    }
    if files.is_empty() {
        eprintln!("keel validate: no files given\n{USAGE}");
        return 2;
    }
    let node = node.unwrap_or_else(crate::node_name);
    let seen = crate::timefmt::now();
    let mut all_ok = true;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for f in &files {
        let (name, bytes) = if f == "-" {
            let mut b = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut b) {
                eprintln!("keel validate: reading standard input: {e}");
                return 2;
            }
            ("<stdin>".to_string(), b)
        } else {
            match read_limited(f) {
                Ok(b) => (f.clone(), b),
                Err(msg) => {
                    all_ok = false;
                    match output {
                        Output::Text => {
                            let _ = writeln!(out, "{f}: error: {msg}");
                        }
                        Output::Json => {
                            let _ = writeln!(
                                out,
                                "{}",
                                json!({"file": f, "accepted": false, "errors": [{"path": "", "line": 0, "column": 0, "message": msg}], "warnings": []})
                            );
                        }
                    }
                    continue;
                }
            }
        };
        let r = check_file(&name, &bytes, &node, &seen);
        all_ok &= r.accepted;
        match output {
            Output::Text => {
                for l in &r.lines {
                    let _ = writeln!(out, "{l}");
                }
                if r.accepted {
                    let _ = writeln!(out, "{name}: ok");
                }
            }
            Output::Json => {
                let _ = writeln!(out, "{}", r.json);
            }
        }
    }
    if all_ok {
        0
    } else {
        1
    }
}

/// Reads a file, refusing more than the manifest size limit (+1 byte to detect it).
fn read_limited(path: &str) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    let mut b = Vec::new();
    f.take(keel_core::config::MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut b)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(b)
}

/// Usage text.
pub const USAGE: &str =
    "usage: keel validate [--node NAME] [-o text|json] FILE... (- reads standard input)";
