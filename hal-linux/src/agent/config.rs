//! `keel agent` configuration: kubelet-style flags and a KubeletConfiguration file.
//!
//! This module deals with reading the agent's settings the way the kubelet reads its own,
//! so the ExecStart line of a kubelet unit starts keel unchanged: `--config FILE` (a
//! KubeletConfiguration: `staticPodPath`, `fileCheckFrequency`, `podLogsDir`,
//! `containerLogMaxSize`, `containerLogMaxFiles`), flags that win over the file, and
//! every other kubelet flag accepted with one warning each.

use std::path::PathBuf;
use std::time::Duration;

/// The agent's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Manifest directory or file.
    pub manifest_path: Option<PathBuf>,
    /// Full re-list period.
    pub file_check_frequency: Duration,
    /// Node name override.
    pub hostname_override: Option<String>,
    /// Log verbosity (kubelet `--v`).
    pub verbosity: u32,
    /// Images, pod state, runc state.
    pub root_dir: PathBuf,
    /// CRI logs.
    pub pod_logs_dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// Log rotation size.
    pub log_max_size: u64,
    /// Log files kept.
    pub log_max_files: u32,
    /// runc binary (found on PATH when unset).
    pub runc: Option<PathBuf>,
    /// Read manifests writable by others than root (SPEC 1.10).
    pub allow_insecure: bool,
    /// Pod slots.
    pub max_pods: usize,
    /// Absolute cgroup parent.
    pub cgroup_parent: String,
    /// CNI configuration and plugin directories (`--cni-conf-dir`, `--cni-bin-dir`).
    pub cni: crate::cni::CniConfig,
    /// On SIGTERM/SIGINT, terminate every pod gracefully before exiting.
    pub drain_on_exit: bool,
    /// Kubelet flags accepted but not implemented (warned about).
    pub ignored_flags: Vec<String>,
    /// How log lines are written (`--log-format`, or the kubelet's `--logging-format`).
    pub log_format: super::log::Format,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            manifest_path: None,
            file_check_frequency: Duration::from_secs(20),
            hostname_override: None,
            verbosity: 0,
            root_dir: PathBuf::from("/var/lib/keel"),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            socket: PathBuf::from("/run/keel/keel.sock"),
            log_max_size: 10 * 1024 * 1024,
            log_max_files: 5,
            runc: None,
            allow_insecure: false,
            max_pods: 110,
            cgroup_parent: "/keel".into(),
            cni: crate::cni::CniConfig::default(),
            drain_on_exit: false,
            ignored_flags: Vec::new(),
            log_format: super::log::Format::Text,
        }
    }
}

/// Parses a Go duration (`20s`, `1m30s`, `500ms`, `1h`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += Duration::from_secs_f64(n * mult);
    }
    Some(total)
}

/// Parses a size (`10Mi`, `500K`, `1048576`).
pub fn parse_size(s: &str) -> Option<u64> {
    let (m, e) = keel_core::manifest::quantity::parse(s.trim())?;
    let mut v = m as i128;
    let mut e = e as i32;
    while e > 0 {
        v *= 10;
        e -= 1;
    }
    while e < 0 {
        v /= 10;
        e += 1;
    }
    u64::try_from(v).ok()
}

/// A configuration error, for people.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn apply_kubelet_config(cfg: &mut AgentConfig, path: &std::path::Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "KubeletConfiguration" {
        return Err(ConfigError(format!(
            "--config {}: kind must be KubeletConfiguration, got {kind:?}",
            path.display()
        )));
    }
    if let Some(p) = v.get("staticPodPath").and_then(|x| x.as_str()) {
        cfg.manifest_path = Some(PathBuf::from(p));
    }
    if let Some(d) = v.get("fileCheckFrequency").and_then(|x| x.as_str()) {
        cfg.file_check_frequency = parse_duration(d).ok_or_else(|| {
            ConfigError(format!(
                "--config {}: fileCheckFrequency {d:?} is not a duration",
                path.display()
            ))
        })?;
    }
    if let Some(p) = v.get("podLogsDir").and_then(|x| x.as_str()) {
        cfg.pod_logs_dir = PathBuf::from(p);
    }
    if let Some(s) = v.get("containerLogMaxSize").and_then(|x| x.as_str()) {
        cfg.log_max_size = parse_size(s).ok_or_else(|| {
            ConfigError(format!(
                "--config {}: containerLogMaxSize {s:?} is not a size",
                path.display()
            ))
        })?;
    }
    if let Some(n) = v.get("containerLogMaxFiles").and_then(|x| x.as_u64()) {
        cfg.log_max_files = n.clamp(1, 1000) as u32;
    }
    Ok(())
}

/// Flags `keel agent` takes (besides kubelet flags it ignores).
pub const USAGE: &str = "\
usage: keel agent [flags]

  --pod-manifest-path PATH     directory (or single file) of static pod manifests
  --config FILE                a KubeletConfiguration (staticPodPath, fileCheckFrequency,
                               podLogsDir, containerLogMaxSize, containerLogMaxFiles);
                               flags win over it
  --file-check-frequency DUR   full re-list period (default 20s; inotify reacts at once)
  --hostname-override NAME     node name (default: the host name)
  --root-dir DIR               images, pod state, runc state (default /var/lib/keel)
  --pod-logs-dir DIR           container logs (default /var/log/pods)
  --socket PATH                control socket (default /run/keel/keel.sock)
  --container-log-max-size Q   rotate logs at this size (default 10Mi)
  --container-log-max-files N  log files kept per container (default 5)
  --runc PATH                  runc binary (default: found on PATH)
  --max-pods N                 pod capacity (default 110)
  --cgroup-parent PATH         absolute cgroup all pods go under (default /keel)
  --cni-conf-dir DIR           CNI networks: the first .conflist/.conf/.json file is used;
                               keel writes its default network there when there is none
                               (default /etc/cni/net.d)
  --cni-bin-dir DIRS           CNI plugin directories, ':'-separated, searched in order
                               (default /opt/cni/bin:/usr/lib/cni)
  --allow-insecure-manifests   read manifests writable by users other than root
  --drain-on-exit              on SIGTERM/SIGINT stop every pod gracefully, then exit
                               (default: exit and leave pods running for the next agent)
  --log-format text|json       log lines for people (text, the default) or one JSON object
                               per line (time, level, pod, container, event, message);
                               the kubelet's --logging-format is the same flag
  -v, --v N                    log verbosity, as the kubelet's: 0 shows errors, warnings
                               and events; 1 adds the effective settings
Other kubelet flags are accepted and ignored with a warning.";

/// Parses `keel agent` arguments.
pub fn parse(args: &[String]) -> Result<AgentConfig, ConfigError> {
    let mut cfg = AgentConfig::default();
    let mut config_file: Option<PathBuf> = None;
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(ConfigError(format!("unexpected argument {a:?}\n\n{USAGE}")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let is_bool = matches!(
            name.as_str(),
            "allow-insecure-manifests" | "drain-on-exit" | "help" | "h"
        );
        let value = if inline.is_some() || is_bool {
            inline
        } else if i < args.len() && !args[i].starts_with('-') {
            i += 1;
            Some(args[i - 1].clone())
        } else {
            None
        };
        flags.push((name, value));
    }
    for (name, value) in &flags {
        if name == "config" {
            config_file =
                Some(PathBuf::from(value.clone().ok_or_else(|| {
                    ConfigError("--config needs a file".into())
                })?));
        }
    }
    if let Some(f) = &config_file {
        apply_kubelet_config(&mut cfg, f)?;
    }
    for (name, value) in flags {
        let need =
            |v: Option<String>| v.ok_or_else(|| ConfigError(format!("--{name} needs a value")));
        match name.as_str() {
            "config" => {}
            "help" | "h" => return Err(ConfigError(USAGE.to_string())),
            "pod-manifest-path" => cfg.manifest_path = Some(PathBuf::from(need(value)?)),
            "file-check-frequency" => {
                let v = need(value)?;
                cfg.file_check_frequency = parse_duration(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "--file-check-frequency {v:?} is not a duration (like 20s)"
                    ))
                })?;
            }
            "hostname-override" => cfg.hostname_override = Some(need(value)?),
            "v" => {
                let v = need(value)?;
                cfg.verbosity = v
                    .parse()
                    .map_err(|_| ConfigError(format!("--v {v:?} is not a number")))?;
            }
            "root-dir" => cfg.root_dir = PathBuf::from(need(value)?),
            "pod-logs-dir" => cfg.pod_logs_dir = PathBuf::from(need(value)?),
            "socket" => cfg.socket = PathBuf::from(need(value)?),
            "runc" => cfg.runc = Some(PathBuf::from(need(value)?)),
            "container-log-max-size" => {
                let v = need(value)?;
                cfg.log_max_size = parse_size(&v).ok_or_else(|| {
                    ConfigError(format!("--container-log-max-size {v:?} is not a size"))
                })?;
            }
            "container-log-max-files" => {
                let v = need(value)?;
                cfg.log_max_files = v.parse().map_err(|_| {
                    ConfigError(format!("--container-log-max-files {v:?} is not a number"))
                })?;
            }
            "cgroup-parent" => {
                let v = need(value)?;
                if !v.starts_with('/') {
                    return Err(ConfigError(format!(
                        "--cgroup-parent {v:?} must be an absolute cgroup path"
                    )));
                }
                cfg.cgroup_parent = v;
            }
            "cni-conf-dir" => cfg.cni.conf_dir = PathBuf::from(need(value)?),
            "cni-bin-dir" => {
                // The kubelet's and containerd's flag takes a ':'-separated list.
                let v = need(value)?;
                cfg.cni.bin_dirs = std::env::split_paths(&v).collect();
                if cfg.cni.bin_dirs.is_empty() {
                    return Err(ConfigError("--cni-bin-dir needs a directory".into()));
                }
            }
            "max-pods" => {
                let v = need(value)?;
                cfg.max_pods = v
                    .parse()
                    .map_err(|_| ConfigError(format!("--max-pods {v:?} is not a number")))?;
            }
            "log-format" | "logging-format" => {
                let v = need(value)?;
                cfg.log_format = super::log::Format::parse(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "--{name} {v:?} is not a log format: use text or json"
                    ))
                })?;
            }
            "allow-insecure-manifests" => cfg.allow_insecure = value.is_none_or(|v| v != "false"),
            "drain-on-exit" => cfg.drain_on_exit = value.is_none_or(|v| v != "false"),
            other => cfg.ignored_flags.push(format!("--{other}")),
        }
    }
    // A zero period means "the default", as the kubelet's defaulting reads it (kubeadm
    // writes `fileCheckFrequency: 0s`); taken literally it would re-list without pause.
    if cfg.file_check_frequency.is_zero() {
        cfg.file_check_frequency = AgentConfig::default().file_check_frequency;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("20s"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_size("10Mi"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("1000"), Some(1000));
    }

    #[test]
    fn the_kubelet_unit_line_parses_with_warnings_for_unknown_flags() {
        let cfg = parse(&args(&[
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
            "--pod-manifest-path=/etc/kubernetes/manifests",
            "--kubeconfig=/var/lib/kubelet/kubeconfig",
            "--network-plugin=cni",
            "--register-node=true",
            "--v=2",
        ]))
        .unwrap();
        assert_eq!(
            cfg.manifest_path,
            Some(PathBuf::from("/etc/kubernetes/manifests"))
        );
        assert_eq!(cfg.verbosity, 2);
        assert_eq!(
            cfg.ignored_flags,
            [
                "--container-runtime",
                "--container-runtime-endpoint",
                "--kubeconfig",
                "--network-plugin",
                "--register-node"
            ]
        );
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let f = std::env::temp_dir().join(format!("keel-kc-{}.yaml", std::process::id()));
        std::fs::write(
            &f,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /from/file\nfileCheckFrequency: 5s\npodLogsDir: /logs\ncontainerLogMaxSize: 1Mi\ncontainerLogMaxFiles: 3\n",
        )
        .unwrap();
        let cfg = parse(&args(&[
            "--config",
            f.to_str().unwrap(),
            "--pod-manifest-path",
            "/from/flag",
        ]))
        .unwrap();
        assert_eq!(cfg.manifest_path, Some(PathBuf::from("/from/flag")));
        assert_eq!(cfg.file_check_frequency, Duration::from_secs(5));
        assert_eq!(cfg.pod_logs_dir, PathBuf::from("/logs"));
        assert_eq!(cfg.log_max_size, 1024 * 1024);
        assert_eq!(cfg.log_max_files, 3);
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn log_format_and_verbosity() {
        let cfg = parse(&args(&["--log-format", "json", "-v", "3"])).unwrap();
        assert_eq!(cfg.log_format, super::super::log::Format::Json);
        assert_eq!(cfg.verbosity, 3);
        let cfg = parse(&args(&["--logging-format=json", "--v=1"])).unwrap();
        assert_eq!(cfg.log_format, super::super::log::Format::Json);
        let e = parse(&args(&["--log-format=logfmt"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use text or json"), "{e}");
    }

    #[test]
    fn a_zero_file_check_frequency_means_the_default() {
        let cfg = parse(&args(&["--file-check-frequency=0s"])).unwrap();
        assert_eq!(cfg.file_check_frequency, Duration::from_secs(20));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse(&args(&["--file-check-frequency", "soon"])).is_err());
        assert!(parse(&args(&["stray"])).is_err());
        assert!(parse(&args(&["--max-pods"])).is_err());
    }
}
