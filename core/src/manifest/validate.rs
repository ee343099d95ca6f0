//! Validation of a decoded Pod (SPEC 2.7) and the name rules behind it.
//!
//! This module deals with the checks the API server would make on a pod, run on the pod as
//! keel will run it (suffixed name). It reports every problem it finds through a callback,
//! each with its field path; [`super::parse`] then looks up each path's line and column.

use super::error::{Error, ErrorKind, Invalid};
use super::event::Mark;
use super::model::*;
use super::path::{FieldPath, Seg, F};

/// True if `s` is a DNS-1123 label: 1–63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// True if `s` is a DNS-1123 subdomain: ≤ 253, dot-separated DNS labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// True if `s` is a valid environment variable name (Kubernetes ≥ 1.30 rule: printable
/// ASCII without `=`).
pub fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'=')
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// True if `s` is a qualified name (`[prefix/]name`), as label and annotation keys are.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}

/// True if `s` is a valid label value (empty, or a name part).
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

/// Validates `pod` as it will run on `node`; calls `report` for each problem.
/// Returns the number of problems.
pub fn validate(pod: &Pod, node: &str, report: &mut dyn FnMut(Error)) -> usize {
    let mut n = 0;
    let mut err = |kind: ErrorKind, path: FieldPath| {
        n += 1;
        report(Error::new(kind, path, Mark::default()));
    };
    let inv = |i: Invalid| ErrorKind::Invalid(i);
    let meta = FieldPath::ROOT.field(F::Metadata);
    let name = pod.s(pod.name);
    if name.is_empty() {
        err(ErrorKind::Required, meta.field(F::Name));
    } else if !is_dns_subdomain(name) {
        err(inv(Invalid::DnsSubdomain), meta.field(F::Name));
    } else if name.len() + 1 + node.len() > 253 {
        err(inv(Invalid::SuffixedNameTooLong), meta.field(F::Name));
    }
    if let Some(ns) = pod.opt(pod.namespace) {
        if !ns.is_empty() && !is_dns_label(ns) {
            err(inv(Invalid::DnsLabel), meta.field(F::Namespace));
        }
    }
    if let Some(uid) = pod.opt(pod.uid) {
        if uid.is_empty() || uid.len() > 64 || !uid.bytes().all(|c| c.is_ascii_graphic()) {
            err(inv(Invalid::Uid), meta.field(F::Uid));
        }
    }
    for (i, kv) in pod.labels.iter().enumerate() {
        let p = meta.field(F::Labels).push(Seg::Entry(i as u16));
        if !is_qualified_name(pod.s(kv.key)) {
            err(inv(Invalid::LabelKey), p);
        } else if !is_label_value(pod.s(kv.value)) {
            err(inv(Invalid::LabelValue), p);
        }
    }
    for (i, kv) in pod.annotations.iter().enumerate() {
        if !is_qualified_name(pod.s(kv.key)) {
            err(
                inv(Invalid::LabelKey),
                meta.field(F::Annotations).push(Seg::Entry(i as u16)),
            );
        }
    }

    let spec = FieldPath::ROOT.field(F::Spec);
    let s = &pod.spec;
    if let Some(g) = s.termination_grace_period_seconds {
        if g < 0 {
            err(
                inv(Invalid::Negative),
                spec.field(F::TerminationGracePeriodSeconds),
            );
        }
    }
    if s.containers.is_empty() {
        err(ErrorKind::Required, spec.field(F::Containers));
    }
    if let Some(h) = pod.opt(s.hostname) {
        if !is_dns_label(h) {
            err(inv(Invalid::DnsLabel), spec.field(F::Hostname));
        }
    }
    for (i, a) in s.host_aliases.iter().enumerate() {
        if a.ip.is_empty() {
            err(
                ErrorKind::Required,
                spec.field(F::HostAliases).index(i).field(F::Ip),
            );
        }
    }
    // Volumes: names are DNS labels, unique; hostPath paths absolute.
    for (i, v) in s.volumes.iter().enumerate() {
        let p = spec.field(F::Volumes).index(i);
        let vname = pod.s(v.name);
        if vname.is_empty() {
            err(ErrorKind::Required, p.field(F::Name));
        } else if !is_dns_label(vname) {
            err(inv(Invalid::DnsLabel), p.field(F::Name));
        } else if s.volumes[..i].iter().any(|o| pod.s(o.name) == vname) {
            err(inv(Invalid::Duplicate), p.field(F::Name));
        }
        if let VolumeSource::HostPath { path, .. } = v.source {
            let hp = pod.s(path);
            if hp.is_empty() {
                err(ErrorKind::Required, p.field(F::HostPath).field(F::Path));
            } else if !hp.starts_with('/') {
                err(
                    inv(Invalid::RelativePath),
                    p.field(F::HostPath).field(F::Path),
                );
            }
        }
    }
    // Containers: names unique across init and app containers.
    let groups: [(&[Container], F); 2] = [
        (&s.init_containers, F::InitContainers),
        (&s.containers, F::Containers),
    ];
    let mut seen_names = 0usize;
    for (list, field) in groups {
        for (i, c) in list.iter().enumerate() {
            let p = spec.field(field).index(i);
            let cname = pod.s(c.name);
            if cname.is_empty() {
                err(ErrorKind::Required, p.field(F::Name));
            } else if !is_dns_label(cname) {
                err(inv(Invalid::DnsLabel), p.field(F::Name));
            } else if pod
                .all_containers()
                .take(seen_names)
                .any(|(_, o)| pod.s(o.name) == cname)
            {
                err(inv(Invalid::Duplicate), p.field(F::Name));
            }
            seen_names += 1;
            container(pod, c, p, field == F::InitContainers, &mut err);
        }
    }
    n
}

fn probe_ok(
    probe: &Probe,
    p: FieldPath,
    liveness_like: bool,
    err: &mut dyn FnMut(ErrorKind, FieldPath),
) {
    let checks = [
        (probe.initial_delay_seconds, F::InitialDelaySeconds, 0),
        (probe.timeout_seconds, F::TimeoutSeconds, 1),
        (probe.period_seconds, F::PeriodSeconds, 1),
        (probe.success_threshold, F::SuccessThreshold, 1),
        (probe.failure_threshold, F::FailureThreshold, 1),
    ];
    for (v, f, min) in checks {
        if let Some(v) = v {
            if v < min {
                let i = if min == 0 {
                    Invalid::Negative
                } else {
                    Invalid::NotPositive
                };
                err(ErrorKind::Invalid(i), p.field(f));
            }
        }
    }
    if liveness_like && probe.success_threshold.is_some_and(|v| v != 1) {
        err(
            ErrorKind::Invalid(Invalid::SuccessThresholdNotOne),
            p.field(F::SuccessThreshold),
        );
    }
    action_ok(&probe.action, p, err);
}

fn action_ok(a: &Action, p: FieldPath, err: &mut dyn FnMut(ErrorKind, FieldPath)) {
    let port_ok = |port: &IntOrStr| match port {
        IntOrStr::Int(n) => (1..=65535).contains(n),
        IntOrStr::Str(s) => !s.is_empty(),
    };
    match a {
        Action::Exec(cmd) if cmd.is_empty() => {
            err(ErrorKind::Required, p.field(F::Exec).field(F::Command))
        }
        Action::HttpGet { port, .. } if !port_ok(port) => err(
            ErrorKind::Invalid(Invalid::PortRange),
            p.field(F::HttpGet).field(F::Port),
        ),
        Action::HttpGet { headers, .. } if headers.iter().any(|h| h.key.is_empty()) => {
            // Kubernetes requires every header's name.
            let i = headers.iter().position(|h| h.key.is_empty()).unwrap_or(0);
            err(
                ErrorKind::Required,
                p.field(F::HttpGet)
                    .field(F::HttpHeaders)
                    .index(i)
                    .field(F::Name),
            )
        }
        Action::TcpSocket { port, .. } if !port_ok(port) => err(
            ErrorKind::Invalid(Invalid::PortRange),
            p.field(F::TcpSocket).field(F::Port),
        ),
        Action::Grpc { port, .. } if !(1..=65535).contains(port) => err(
            ErrorKind::Invalid(Invalid::PortRange),
            p.field(F::Grpc).field(F::Port),
        ),
        Action::Sleep { seconds } if *seconds < 0 => err(
            ErrorKind::Invalid(Invalid::Negative),
            p.field(F::Sleep).field(F::Seconds),
        ),
        _ => {}
    }
}

fn container(
    pod: &Pod,
    c: &Container,
    p: FieldPath,
    init: bool,
    err: &mut dyn FnMut(ErrorKind, FieldPath),
) {
    let inv = ErrorKind::Invalid;
    let image = pod.s(c.image);
    if image.is_empty() {
        err(ErrorKind::Required, p.field(F::Image));
    } else if image.bytes().any(|b| b.is_ascii_whitespace()) {
        err(inv(Invalid::Image), p.field(F::Image));
    }
    for (i, e) in c.env.iter().enumerate() {
        if !is_env_name(pod.s(e.name)) {
            err(
                inv(Invalid::EnvName),
                p.field(F::Env).index(i).field(F::Name),
            );
        }
    }
    for (i, port) in c.ports.iter().enumerate() {
        let pp = p.field(F::Ports).index(i);
        if !(1..=65535).contains(&port.container_port) {
            err(inv(Invalid::PortRange), pp.field(F::ContainerPort));
        }
        if let Some(h) = port.host_port {
            if !(0..=65535).contains(&h) {
                err(inv(Invalid::HostPortRange), pp.field(F::HostPort));
            }
        }
        if let Some(n) = pod.opt(port.name) {
            if c.ports[..i].iter().any(|o| pod.opt(o.name) == Some(n)) {
                err(inv(Invalid::Duplicate), pp.field(F::Name));
            }
        }
    }
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = p.field(F::VolumeMounts).index(i);
        let vname = pod.s(m.name);
        if vname.is_empty() {
            err(ErrorKind::Required, mp.field(F::Name));
        } else if !pod.spec.volumes.iter().any(|v| pod.s(v.name) == vname) {
            err(inv(Invalid::UndeclaredVolume), mp.field(F::Name));
        }
        let path = pod.s(m.mount_path);
        if path.is_empty() {
            err(ErrorKind::Required, mp.field(F::MountPath));
        } else if c.volume_mounts[..i]
            .iter()
            .any(|o| pod.s(o.mount_path) == path)
        {
            err(inv(Invalid::Duplicate), mp.field(F::MountPath));
        }
        if let Some(sp) = pod.opt(m.sub_path) {
            if sp.starts_with('/') || sp.split('/').any(|s| s == "..") {
                err(inv(Invalid::SubPath), mp.field(F::SubPath));
            }
        }
    }
    let probes = [
        (&c.liveness_probe, F::LivenessProbe, true),
        (&c.readiness_probe, F::ReadinessProbe, false),
        (&c.startup_probe, F::StartupProbe, true),
    ];
    // A sidecar (an init container with `restartPolicy: Always`) may have probes and
    // hooks; other init containers may not, and app containers have no restartPolicy.
    let sidecar = init && c.restart_policy == Some(ContainerRestartPolicy::Always);
    if !init && c.restart_policy.is_some() {
        err(
            inv(Invalid::RestartPolicyNotInit),
            p.field(F::RestartPolicy),
        );
    }
    if init && !sidecar && (c.lifecycle.pre_stop.is_some() || c.lifecycle.post_start.is_some()) {
        err(inv(Invalid::InitContainerLifecycle), p.field(F::Lifecycle));
    }
    for (probe, f, liveness_like) in probes {
        if let Some(probe) = probe {
            if init && !sidecar {
                // Init containers may not have probes (API server rule).
                err(inv(Invalid::UnknownValue), p.field(f));
            } else {
                probe_ok(probe, p.field(f), liveness_like, err);
            }
        }
    }
    if let Some(a) = &c.lifecycle.pre_stop {
        action_ok(a, p.field(F::Lifecycle).field(F::PreStop), err);
    }
    if let Some(a) = &c.lifecycle.post_start {
        action_ok(a, p.field(F::Lifecycle).field(F::PostStart), err);
    }
    if let Some(w) = pod.opt(c.working_dir) {
        if !w.is_empty() && !w.starts_with('/') {
            err(inv(Invalid::RelativePath), p.field(F::WorkingDir));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "etcd", "kube-apiserver", "a1", "0a", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn dns_subdomains() {
        assert!(is_dns_subdomain("kube-apiserver-node1.example"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain("Foo"));
        assert!(!is_dns_subdomain(&"a.".repeat(127)));
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("PATH"));
        assert!(is_env_name("my.var-1"));
        assert!(!is_env_name(""));
        assert!(!is_env_name("A=B"));
        assert!(!is_env_name("A\tB"));
    }

    #[test]
    fn qualified_names() {
        assert!(is_qualified_name("app"));
        assert!(is_qualified_name("kubernetes.io/config.hash"));
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(!is_qualified_name("/x"));
        assert!(!is_qualified_name("Bad_Prefix/x"));
        assert!(!is_qualified_name("-x"));
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
    }
}
