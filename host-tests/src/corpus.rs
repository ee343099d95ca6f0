//! The parser fixture corpus in `host-tests/fixtures`.
//!
//! This module deals with finding fixtures and reading their expectations. `good/` holds
//! manifests keel must accept, `twins/` holds `NAME.yaml` + `NAME.json` pairs that must
//! decode to the same pod, and `bad/` holds manifests keel must reject, each with the
//! expected error on its first line (`# expect: KIND path=PATH at LINE:COL`) or, for JSON
//! (which has no comments), in a `NAME.json.expect` sidecar. `KIND` is the `Debug` form of
//! [`keel_core::manifest::ErrorKind`] without spaces, `PATH` the field path's `Display`
//! (`-` for the document root) and the position `-` when the error has none.

use keel_core::manifest::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (the workspace holding host-tests).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host-tests has a parent")
        .to_path_buf()
}

/// The `keel` binary, built once per test process into `target/keel-cli-test` (a separate
/// target directory: the outer `cargo test` may hold the main one's lock).
pub fn keel_cli() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = repo_root();
            let target = root.join("target/keel-cli-test");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-q", "-p", "keel-linux", "--bin", "keel"])
                .arg("--target-dir")
                .arg(&target)
                .current_dir(&root)
                .status()
                .expect("run cargo build");
            assert!(st.success(), "cargo build -p keel-linux failed");
            target.join("debug/keel")
        })
        .clone()
}

/// `host-tests/fixtures/<sub>`.
pub fn fixture_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(sub)
}

/// The examples users start from: `<repo root>/examples` (kubelet-style pod manifests, a
/// KubeletConfiguration, a kubelet unit, and `kubeadm/`, a kubeadm control plane).
pub fn examples_dir() -> PathBuf {
    repo_root().join("examples")
}

/// Manifest files (`.yaml`, `.yml`, `.json`) in a directory, sorted.
pub fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    v.sort();
    v
}

/// An expected error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// `Debug` of the kind, without spaces.
    pub kind: String,
    /// Field path (`-` for the root).
    pub path: String,
    /// `(line, column)`, or `None` for "no position".
    pub at: Option<(u32, u32)>,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} path={} at ", self.kind, self.path)?;
        match self.at {
            Some((l, c)) => write!(f, "{l}:{c}"),
            None => f.write_str("-"),
        }
    }
}

impl Expect {
    /// Parses `KIND path=PATH at L:C` (or `at -`).
    pub fn parse(s: &str) -> Result<Expect, String> {
        let s = s.trim();
        let (kind, rest) = s
            .split_once(" path=")
            .ok_or_else(|| format!("no ' path=' in {s:?}"))?;
        let (path, at) = rest
            .split_once(" at ")
            .ok_or_else(|| format!("no ' at ' in {s:?}"))?;
        let at = match at.trim() {
            "-" => None,
            lc => {
                let (l, c) = lc
                    .split_once(':')
                    .ok_or_else(|| format!("bad position {lc:?}"))?;
                Some((
                    l.parse().map_err(|e| format!("{e}"))?,
                    c.parse().map_err(|e| format!("{e}"))?,
                ))
            }
        };
        Ok(Expect {
            kind: kind.trim().to_string(),
            path: path.trim().to_string(),
            at,
        })
    }

    /// The expectation of a bad fixture (first-line comment or `.expect` sidecar).
    pub fn of_fixture(path: &Path) -> Result<Expect, String> {
        let sidecar = PathBuf::from(format!("{}.expect", path.display()));
        if sidecar.exists() {
            let t = std::fs::read_to_string(&sidecar).map_err(|e| e.to_string())?;
            return Expect::parse(&t);
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = String::from_utf8_lossy(first);
        let e = first
            .strip_prefix("# expect: ")
            .ok_or_else(|| format!("{}: first line is not '# expect: ...'", path.display()))?;
        Expect::parse(e)
    }

    /// The same description of an actual error.
    pub fn of_error(e: &Error) -> Expect {
        Expect {
            kind: kind_text(&e.kind),
            path: if e.path.is_root() {
                "-".into()
            } else {
                e.path.to_string()
            },
            at: (e.mark.line > 0).then_some((e.mark.line, e.mark.column)),
        }
    }
}

/// `Debug` of a kind without spaces (`Type{expected:String,got:Integer}`).
pub fn kind_text(k: &ErrorKind) -> String {
    format!("{k:?}")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}
