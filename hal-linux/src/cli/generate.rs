//! `keel generate pod`: write a static pod manifest without kubectl.
//!
//! This module deals with printing a Pod manifest the way `kubectl run NAME --image=IMG
//! --dry-run=client -o yaml` does (same fields, same key order, label `run: NAME` unless
//! `--labels` is given, the words after `--` as `args`, or as `command` with
//! `--command`; `--dry-run[=client]` and `-o yaml` are accepted as kubectl spells them),
//! so a static pod can be written on a node that has no kubectl. What it
//! prints is checked with the same validation `keel validate` and the agent use; a
//! manifest that would be rejected is not printed.

use keel_core::manifest::model;
use serde_json::{json, Map, Value};
use std::io::Write;

/// What to generate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodArgs {
    /// metadata.name, and the container's name.
    pub name: String,
    /// The image.
    pub image: String,
    /// Always, OnFailure or Never.
    pub restart: String,
    /// `K=V` pairs.
    pub env: Vec<(String, String)>,
    /// Container ports.
    pub ports: Vec<u16>,
    /// metadata.namespace.
    pub namespace: Option<String>,
    /// Labels (default `run: NAME`).
    pub labels: Vec<(String, String)>,
    /// imagePullPolicy.
    pub pull_policy: Option<String>,
    /// The words after `--`.
    pub words: Vec<String>,
    /// The words are the command rather than args.
    pub command: bool,
}

/// The manifest as JSON, keys in kubectl's (alphabetical) order.
pub fn manifest(a: &PodArgs) -> Value {
    let mut c = Map::new();
    if !a.words.is_empty() {
        c.insert(
            if a.command { "command" } else { "args" }.into(),
            json!(a.words),
        );
    }
    if !a.env.is_empty() {
        c.insert(
            "env".into(),
            Value::Array(
                a.env
                    .iter()
                    .map(|(k, v)| json!({ "name": k, "value": v }))
                    .collect(),
            ),
        );
    }
    c.insert("image".into(), json!(a.image));
    if let Some(p) = &a.pull_policy {
        c.insert("imagePullPolicy".into(), json!(p));
    }
    c.insert("name".into(), json!(a.name));
    if !a.ports.is_empty() {
        c.insert(
            "ports".into(),
            Value::Array(
                a.ports
                    .iter()
                    .map(|p| json!({ "containerPort": p }))
                    .collect(),
            ),
        );
    }
    c.insert("resources".into(), json!({}));
    let labels: Map<String, Value> = if a.labels.is_empty() {
        [("run".to_string(), json!(a.name))].into_iter().collect()
    } else {
        a.labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect()
    };
    let mut meta = Map::new();
    meta.insert("labels".into(), Value::Object(labels));
    meta.insert("name".into(), json!(a.name));
    if let Some(ns) = &a.namespace {
        meta.insert("namespace".into(), json!(ns));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [c],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": a.restart,
        },
        "status": {},
    })
}

/// Whether a string must be quoted to stay a string in YAML (1.1 or 1.2 readers).
fn needs_quotes(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ];
    let Some(first) = s.chars().next() else {
        return true;
    };
    WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
        || s.parse::<f64>().is_ok()
        || ["0x", "0o", "0b", "0X", "0O", "0B"]
            .iter()
            .any(|p| s.starts_with(p))
        || (first.is_ascii_digit() && !s.chars().all(|c| c.is_ascii_alphanumeric()))
        || "-?:,[]{}#&*!|>'\"%@` ".contains(first)
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(|c| c.is_control())
        || s.starts_with(".")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if needs_quotes(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::String(s) => s.clone(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// Lines of a block node, each starting at `indent` (go-yaml's layout: sequences under a
/// key are not indented further).
fn block(v: &Value, indent: usize, lines: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                let key = scalar(&Value::String(k.clone()));
                match val {
                    Value::Object(_) if is_block(val) => {
                        lines.push(format!("{pad}{key}:"));
                        block(val, indent + 2, lines);
                    }
                    Value::Array(_) if is_block(val) => {
                        lines.push(format!("{pad}{key}:"));
                        block(val, indent, lines);
                    }
                    _ => lines.push(format!("{pad}{key}: {}", scalar(val))),
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                if is_block(item) {
                    let start = lines.len();
                    block(item, indent + 2, lines);
                    if let Some(first) = lines.get_mut(start) {
                        *first = format!("{pad}- {}", &first[indent + 2..]);
                    }
                } else {
                    lines.push(format!("{pad}- {}", scalar(item)));
                }
            }
        }
        other => lines.push(format!("{pad}{}", scalar(other))),
    }
}

/// A JSON value as block YAML.
pub fn to_yaml(v: &Value) -> String {
    let mut lines = Vec::new();
    block(v, 0, &mut lines);
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// A restart policy, spelled as in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Restart {
    /// Restart whatever the exit
    #[value(name = "Always")]
    Always,
    /// Restart after a non-zero exit
    #[value(name = "OnFailure")]
    OnFailure,
    /// Never restart
    #[value(name = "Never")]
    Never,
}

/// An image pull policy, spelled as in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Always pull
    #[value(name = "Always")]
    Always,
    /// Pull when the image is not present
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    /// Never pull
    #[value(name = "Never")]
    Never,
}

/// `-o` of `keel generate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// YAML, as kubectl run -o yaml
    Yaml,
    /// JSON
    Json,
}

/// `--dry-run` as `kubectl run` spells it: keel only ever prints, so `client` (the
/// default when the flag has no value) and `none` change nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    /// Print the object (what keel generate always does)
    Client,
    /// Accepted for kubectl's spelling; the same as client
    None,
}

/// `keel generate pod NAME --image IMG [...] [-- CMD...]`.
#[derive(Debug, clap::Args)]
#[command(
    args_override_self = true,
    after_help = "Words after -- become the container's args (its command with --command). \
                        --dry-run[=client] and -o yaml are accepted as kubectl run spells them."
)]
pub struct Args {
    /// What to generate: pod (static pods are Pods)
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// The pod's name (also the container's)
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The container image
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The restart policy
    #[arg(long, value_enum, default_value = "Always", value_name = "POLICY")]
    pub restart: Restart,
    /// An environment variable (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A container port (repeatable)
    #[arg(long, value_name = "PORT")]
    pub port: Vec<String>,
    /// metadata.namespace
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Labels k=v,... (default run=NAME)
    #[arg(short = 'l', long, value_name = "K=V,...")]
    pub labels: Option<String>,
    /// imagePullPolicy
    #[arg(long, value_enum, value_name = "POLICY")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Output format
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "yaml",
        value_name = "FORMAT"
    )]
    pub output: Output,
    /// Accepted as kubectl run spells it (keel generate never creates anything)
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", value_name = "STRATEGY")]
    pub dry_run: Option<DryRun>,
    /// The words after -- are the command, not args
    #[arg(long)]
    pub command: bool,
    /// The command or args (after --)
    #[arg(last = true, value_name = "CMD")]
    pub words: Vec<String>,
}

fn pairs(flag: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{flag} takes KEY=VALUE, got {kv:?}")),
        })
        .collect()
}

impl From<Restart> for model::RestartPolicy {
    fn from(r: Restart) -> Self {
        match r {
            Restart::Always => Self::Always,
            Restart::OnFailure => Self::OnFailure,
            Restart::Never => Self::Never,
        }
    }
}

impl From<PullPolicy> for model::PullPolicy {
    fn from(p: PullPolicy) -> Self {
        match p {
            PullPolicy::Always => Self::Always,
            PullPolicy::IfNotPresent => Self::IfNotPresent,
            PullPolicy::Never => Self::Never,
        }
    }
}

/// What the parsed arguments ask for: the pod and whether to print JSON.
pub fn pod_args(a: &Args) -> Result<(PodArgs, bool), String> {
    if !matches!(a.kind.as_str(), "pod" | "pods" | "po") {
        return Err(format!(
            "only pods can be generated (static pods are Pods), not {:?}",
            a.kind
        ));
    }
    let name = a.name.clone().ok_or("NAME is required")?;
    let image = a.image.clone().ok_or("required flag --image is not set")?;
    let restart = model::RestartPolicy::from(a.restart).as_str().to_string();
    let mut env = Vec::new();
    for e in &a.env {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            _ => return Err(format!("--env takes KEY=VALUE, got {e:?}")),
        }
    }
    let mut ports = Vec::new();
    for port in &a.port {
        match port.parse::<u16>() {
            Ok(n) if n > 0 => ports.push(n),
            _ => return Err(format!("--port takes a port number 1-65535, got {port:?}")),
        }
    }
    let labels = match &a.labels {
        Some(l) => pairs("--labels", l)?,
        None => Vec::new(),
    };
    Ok((
        PodArgs {
            name,
            image,
            restart,
            env,
            ports,
            namespace: a.namespace.clone(),
            labels,
            pull_policy: a
                .image_pull_policy
                .map(|p| model::PullPolicy::from(p).as_str().to_string()),
            words: a.words.clone(),
            command: a.command,
        },
        a.output == Output::Json,
    ))
}

/// Parses `keel generate` arguments (after `generate`): `Ok(None)` for `--help`.
pub fn parse_args(args: &[String]) -> Result<Option<(PodArgs, bool)>, String> {
    #[derive(Debug, clap::Parser)]
    #[command(name = "keel generate")]
    struct Only {
        #[command(flatten)]
        args: Args,
    }
    use clap::Parser;
    let argv = std::iter::once("keel generate".to_string()).chain(args.iter().cloned());
    match Only::try_parse_from(argv) {
        Ok(o) => pod_args(&o.args).map(Some),
        Err(e) if !e.use_stderr() => Ok(None),
        Err(e) => Err(e.render().to_string()),
    }
}

/// Runs `keel generate` with parsed arguments.
pub fn run_args(a: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let (a, json) = match pod_args(a) {
        Ok(x) => x,
        Err(e) => {
            let _ = writeln!(
                err,
                "keel generate: {e}\n\nFor more information, try 'keel generate --help'."
            );
            return 2;
        }
    };
    let v = manifest(&a);
    let text = if json {
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    } else {
        to_yaml(&v)
    };
    // Print only what the agent would accept.
    let name = format!("{}.yaml", a.name);
    let report = super::validate::check_file(
        &name,
        text.as_bytes(),
        &crate::node_name(),
        &crate::timefmt::now(),
    );
    if !report.accepted {
        for l in report.lines.iter().filter(|l| l.contains(": error: ")) {
            let _ = writeln!(err, "keel generate: {l}");
        }
        return 1;
    }
    let _ = out.write_all(text.as_bytes());
    0
}

/// Runs `keel generate ARGS...`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    super::run_sub("generate", args, out, err)
}

#[cfg(test)]
mod tests {
    /// The flags' spellings are keel-core's (the one table per enum): same words, same
    /// order, and each maps to the variant it names.
    #[test]
    fn policy_flags_spell_as_the_core_tables() {
        use clap::ValueEnum;
        let names = |v: &[clap::builder::PossibleValue]| {
            v.iter()
                .map(|p| p.get_name().to_string())
                .collect::<Vec<_>>()
        };
        let restart: Vec<_> = Restart::value_variants()
            .iter()
            .map(|r| r.to_possible_value().unwrap())
            .collect();
        assert_eq!(names(&restart), model::RestartPolicy::NAMES);
        for r in Restart::value_variants() {
            let name = r.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(model::RestartPolicy::from(*r).as_str(), name);
        }
        let pull: Vec<_> = PullPolicy::value_variants()
            .iter()
            .map(|p| p.to_possible_value().unwrap())
            .collect();
        assert_eq!(names(&pull), model::PullPolicy::NAMES);
        for p in PullPolicy::value_variants() {
            let name = p.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(model::PullPolicy::from(*p).as_str(), name);
        }
    }

    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn matches_kubectl_run_dry_run_output() {
        let (a, _) = parse_args(&s(&[
            "pod", "web", "--image", "busybox", "--env", "A=1", "--port", "80", "--", "sleep",
            "3600",
        ]))
        .unwrap()
        .unwrap();
        let want = "\
apiVersion: v1
kind: Pod
metadata:
  labels:
    run: web
  name: web
spec:
  containers:
  - args:
    - sleep
    - \"3600\"
    env:
    - name: A
      value: \"1\"
    image: busybox
    name: web
    ports:
    - containerPort: 80
    resources: {}
  dnsPolicy: ClusterFirst
  restartPolicy: Always
status: {}
";
        assert_eq!(to_yaml(&manifest(&a)), want);
    }

    #[test]
    fn strings_that_read_as_other_types_are_quoted() {
        for q in [
            "3600", "true", "No", "null", "", "1.5", "-x", "a: b", "x #c", "0x1f", "12:30",
        ] {
            assert!(needs_quotes(q), "{q:?}");
        }
        for p in [
            "sleep",
            "busybox:1.36",
            "web-1",
            "a=b",
            "http://x/y",
            "echo hi",
        ] {
            assert!(!needs_quotes(p), "{p:?}");
        }
    }

    #[test]
    fn usage_errors() {
        assert!(parse_args(&s(&["pod", "x"]))
            .unwrap_err()
            .contains("--image"));
        assert!(parse_args(&s(&["deployment", "x", "--image", "i"])).is_err());
        assert!(parse_args(&s(&["pod", "x", "--image", "i", "--restart", "Sometimes"])).is_err());
        assert!(parse_args(&s(&["pod", "x", "--image", "i", "--port", "0"])).is_err());
        assert!(parse_args(&s(&["pod", "x", "--image", "i", "--env", "NOVALUE"])).is_err());
    }
}
