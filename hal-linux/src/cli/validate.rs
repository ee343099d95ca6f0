//! `keel validate`: check manifests before they ship.
//!
//! This module deals with the command users and CI pipelines run on manifest files. It
//! decodes and validates each file exactly as the agent would, and prints compiler-style
//! diagnostics (`file:line:col: error: path: message`) or, with `-o json`, one JSON object
//! per file. Every field the manifest sets is reported as applied by the agent or warned
//! about (`spec.priority: not applied: …`; the JSON's `fields` lists them all), from
//! [`crate::agent::fields`]. A directory is read with the agent's own rules (its directory source and
//! the core's rule for what is a manifest): what would be ignored is shown with the reason,
//! and a second file defining the same pod is rejected as a duplicate. Exit status: 0 all
//! accepted, 1 any rejected, 2 usage error.

pub use crate::diag::{diagnostic, message};
use crate::render;
use keel_core::manifest::{
    self, defaults, error::ErrorKind, model::Pool, Error, Mark, Pod, Warning,
};
use serde_json::{json, Value};
use std::io::{Read, Write};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Compiler-style lines
    Text,
    /// One JSON object per file per line
    Json,
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
    // What the agent does with each field set (SPEC 2.10): applied, or a warning.
    let fields = if decoded.is_ok() {
        crate::agent::fields::report(&pod)
    } else {
        Vec::new()
    };
    for f in &fields {
        if let Some(w) = &f.warning {
            warnings.push((Mark::default(), format!("{}: not applied: {w}", f.path)));
        }
    }
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
    if decoded.is_ok() {
        obj["fields"] = fields
            .iter()
            .map(|f| match &f.warning {
                None => json!({"path": f.path, "status": "applied"}),
                Some(w) => json!({"path": f.path, "status": "warned", "message": w}),
            })
            .collect();
    }
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

/// `keel validate [--node NAME] [-o text|json] PATH...`.
#[derive(Debug, clap::Args)]
#[command(
    args_override_self = true,
    after_help = "A directory is read with the agent's own rules: only .yaml, .yml and .json \
                        files are manifests (others are shown as ignored, with the reason), \
                        subdirectories and special files are skipped, and of two files defining \
                        the same pod the one sorting first wins. - reads standard input. \
                        Exit status: 0 all accepted, 1 any rejected, 2 usage error."
)]
pub struct Args {
    /// Manifest files, directories, or - for standard input
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
    /// The node name the pod names get as suffix (default: this host's name)
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Output format
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub output: Output,
    /// Accept files writable by users other than root, as the agent's flag does
    #[arg(long)]
    pub allow_insecure_manifests: bool,
}

/// What one entry of a directory listing is, by the agent's rules.
#[derive(Debug)]
enum Listed {
    /// A manifest to read (its path).
    Manifest(String),
    /// Not a manifest: shown with the reason.
    Ignored(String, keel_core::status::IgnoreReason),
    /// The directory could not be listed.
    Error(String, String),
}

/// Lists a manifest directory as the agent does (its [`DirSource`] and the core's
/// [`ignore_reason`]), in name order.
///
/// [`DirSource`]: crate::agent::source::DirSource
/// [`ignore_reason`]: keel_core::reconcile::ignore_reason
fn list_dir(dir: &str, allow_insecure: bool) -> Vec<Listed> {
    use keel_core::platform::ManifestSource;
    let mut src = crate::agent::source::DirSource::new(std::path::Path::new(dir), allow_insecure);
    let mut entries = Vec::new();
    let r = src.list(&mut |e| entries.push((e.name.to_string(), e.kind)));
    if let Err(e) = r {
        return vec![Listed::Error(dir.to_string(), e.message)];
    }
    crate::sort_by(&mut entries, |a, b| a.0.cmp(&b.0));
    let base = dir.trim_end_matches('/');
    entries
        .into_iter()
        .map(|(name, kind)| {
            let path = format!("{base}/{name}");
            match keel_core::reconcile::ignore_reason(&name, kind) {
                Some(r) => Listed::Ignored(path, r),
                None => Listed::Manifest(path),
            }
        })
        .collect()
}

/// Runs `keel validate` with parsed arguments.
pub fn run_args(a: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let output = a.output;
    let node = a.node.clone().unwrap_or_else(crate::node_name);
    let seen = crate::timefmt::now();
    let mut all_ok = true;
    // Namespace/name → the file that defines it first, per directory (SPEC 3.6).
    for f in &a.paths {
        let listed = if f != "-" && std::path::Path::new(f).is_dir() {
            list_dir(f, a.allow_insecure_manifests)
        } else {
            vec![Listed::Manifest(f.clone())]
        };
        let mut first: std::collections::BTreeMap<(String, String), String> = Default::default();
        for l in listed {
            let f = match l {
                Listed::Manifest(f) => f,
                Listed::Ignored(f, why) => {
                    let _ = match output {
                        Output::Text => writeln!(out, "{f}: ignored: {}", why.message()),
                        Output::Json => writeln!(
                            out,
                            "{}",
                            json!({"file": f, "accepted": false, "ignored": true, "reason": format!("{why:?}"), "message": why.message()})
                        ),
                    };
                    continue;
                }
                Listed::Error(f, msg) => {
                    all_ok = false;
                    report_unreadable(&f, &msg, output, out);
                    continue;
                }
            };
            let (name, bytes) = if f == "-" {
                let mut b = Vec::new();
                if let Err(e) = std::io::stdin().read_to_end(&mut b) {
                    let _ = writeln!(err, "keel validate: reading standard input: {e}");
                    return 2;
                }
                ("<stdin>".to_string(), b)
            } else {
                match read_limited(&f) {
                    Ok(b) => (f.clone(), b),
                    Err(msg) => {
                        all_ok = false;
                        report_unreadable(&f, &msg, output, out);
                        continue;
                    }
                }
            };
            let mut r = check_file(&name, &bytes, &node, &seen);
            if r.accepted {
                let meta = &r.json["defaulted"]["metadata"];
                let key = (
                    meta["namespace"].as_str().unwrap_or_default().to_string(),
                    meta["name"].as_str().unwrap_or_default().to_string(),
                );
                if let Some(winner) = first.get(&key) {
                    let msg = format!(
                        "duplicate of {winner}: it defines the pod {}/{} too, and the file sorting first wins",
                        key.0, key.1
                    );
                    r.accepted = false;
                    r.lines.insert(0, format!("{name}: error: {msg}"));
                    r.json["accepted"] = json!(false);
                    if let Some(errs) = r.json["errors"].as_array_mut() {
                        errs.push(json!({"path": "metadata.name", "line": 0, "column": 0, "message": msg}));
                    }
                } else {
                    first.insert(key, name.clone());
                }
            }
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
    }
    if all_ok {
        0
    } else {
        1
    }
}

fn report_unreadable(f: &str, msg: &str, output: Output, out: &mut dyn Write) {
    let _ = match output {
        Output::Text => writeln!(out, "{f}: error: {msg}"),
        Output::Json => writeln!(
            out,
            "{}",
            json!({"file": f, "accepted": false, "errors": [{"path": "", "line": 0, "column": 0, "message": msg}], "warnings": []})
        ),
    };
}

/// Runs `keel validate ARGS...`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    super::run_sub("validate", args, out, err)
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
