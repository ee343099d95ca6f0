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

/// True if `s` is an annotation key: a qualified name once lower-cased (`ValidateAnnotations`
/// lower-cases the key first, so `Example.com/Key` is accepted).
pub fn is_annotation_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            let b = prefix.as_bytes();
            !b.is_empty()
                && b.len() <= 253
                && prefix.split('.').all(|l| {
                    let l = l.as_bytes();
                    !l.is_empty()
                        && l.len() <= 63
                        && l.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                        && l[0] != b'-'
                        && l[l.len() - 1] != b'-'
                })
                && is_name_part(name)
        }
        None => is_name_part(s),
    }
}

/// True if `s` is an IANA service name, as port names must be (`IsValidPortName`): at most
/// 15 of `[a-z0-9-]`, with a letter, no `--`, not starting or ending with `-`.
pub fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && !b.windows(2).any(|w| w == b"--")
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// True for a relative path without `..` elements (`validateLocalDescendingPath`).
fn is_descending(s: &str) -> bool {
    !s.starts_with('/') && no_backsteps(s)
}

/// True for a path without `..` elements (`validatePathNoBacksteps`).
fn no_backsteps(s: &str) -> bool {
    !s.split('/').any(|e| e == "..")
}

#[cfg(not(feature = "small"))]
/// True for a user or group id the API accepts (`IsValidUserID`, `IsValidGroupID`).
fn id_ok(v: Option<i64>) -> bool {
    v.is_none_or(|v| (0..=i32::MAX as i64).contains(&v))
}

#[cfg(not(feature = "small"))]
/// The value of an annotation's profile: `runtime/default`, `unconfined`, `localhost/<x>`
/// (and `docker/default` for seccomp), as `ValidateSeccompProfile` and
/// `ValidateAppArmorProfileFormat` take them.
fn profile_ok(v: &str, seccomp: bool) -> bool {
    match v.strip_prefix("localhost/") {
        Some(p) => !p.is_empty() && (!seccomp || is_descending(p)),
        None => matches!(v, "runtime/default" | "unconfined") || (seccomp && v == "docker/default"),
    }
}

#[cfg(not(feature = "small"))]
/// The page size of a `hugepages-<size>` resource (`HugePageSizeFromResourceName`), in
/// bytes; `Some(None)` for a malformed or non-positive size.
fn huge_page_size(name: &str) -> Option<Option<i64>> {
    let size = name.strip_prefix("hugepages-")?;
    Some(quantity(size).filter(|&b| b > 0))
}

#[cfg(not(feature = "small"))]
/// The integer value of a quantity's text, when it is one.
fn quantity(text: &str) -> Option<i64> {
    let (m, e) = super::quantity::parse(text)?;
    let q = Quantity {
        text: Str::EMPTY,
        mantissa: m,
        exp10: e,
    };
    let v = q.scaled_ceil(0)?;
    (q.scaled_ceil(-9)? == v.checked_mul(1_000_000_000)?).then_some(v)
}

#[cfg(not(feature = "small"))]
/// Whether a quantity is a whole number.
fn is_whole(q: &Quantity) -> bool {
    q.scaled_ceil(0)
        .zip(q.scaled_ceil(-9))
        .is_some_and(|(v, n)| v.checked_mul(1_000_000_000) == Some(n))
}

#[cfg(not(feature = "small"))]
/// Compares two quantities exactly (`None` if either is beyond nano precision or range).
fn cmp(a: &Quantity, b: &Quantity) -> Option<core::cmp::Ordering> {
    Some(a.scaled_ceil(-9)?.cmp(&b.scaled_ceil(-9)?))
}

/// ValidatePodName on the name the kubelet gives the pod, `<name>-<node>`
/// (generatePodName, pkg/kubelet/config/common.go): `web-` is a valid base name. (No node
/// name, as when a source only asks whether a file parses: the name alone.)
#[cfg(not(feature = "small"))]
fn suffixed_name_ok(name: &str, node: &str) -> bool {
    let mut full: heapless::String<253> = heapless::String::new();
    let fits = full.push_str(name).is_ok()
        && (node.is_empty() || (full.push('-').is_ok() && full.push_str(node).is_ok()));
    fits && is_dns_subdomain(&full)
}

/// Firmware (`small`): the name alone (a subdomain; `web-` is refused), for flash.
#[cfg(feature = "small")]
fn suffixed_name_ok(name: &str, _node: &str) -> bool {
    is_dns_subdomain(name)
}

/// Validates `pod` as it will run on `node`; calls `report` for each problem.
/// Returns the number of problems. The rules are `ValidatePodCreate`'s
/// (pkg/apis/core/validation/validation.go), run on the pod as the kubelet defaults it
/// (pkg/apis/core/v1/defaults.go); each names the function it comes from.
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
    } else if name.len() + 1 + node.len() > 253 {
        err(inv(Invalid::SuffixedNameTooLong), meta.field(F::Name));
    } else if !suffixed_name_ok(name, node) {
        err(inv(Invalid::DnsSubdomain), meta.field(F::Name));
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
    // ValidateLabels.
    for (i, kv) in pod.labels.iter().enumerate() {
        let p = meta.field(F::Labels).push(Seg::Entry(i as u16));
        if !is_qualified_name(pod.s(kv.key)) {
            err(inv(Invalid::LabelKey), p);
        } else if !is_label_value(pod.s(kv.value)) {
            err(inv(Invalid::LabelValue), p);
        }
    }
    // ValidateAnnotations.
    for (i, kv) in pod.annotations.iter().enumerate() {
        if !is_annotation_key(pod.s(kv.key)) {
            let p = meta.field(F::Annotations).push(Seg::Entry(i as u16));
            err(inv(Invalid::LabelKey), p);
        }
    }

    let spec = FieldPath::ROOT.field(F::Spec);
    let s = &pod.spec;
    if let Some(g) = s.termination_grace_period_seconds {
        // keel (SPEC 2.7): the kubelet admits a negative grace period.
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
            let p = spec.field(F::HostAliases).index(i);
            err(ErrorKind::Required, p.field(F::Ip));
        }
    }
    dns_config(pod, spec, &mut err);
    // validateVolumes: names are DNS labels, unique; hostPath paths absolute (keel) without
    // '..'; emptyDir sizes not negative; downwardAPI files relative, modes in range.
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
        match v.source {
            #[cfg(not(feature = "small"))]
            VolumeSource::HostPath { path, .. } if !no_backsteps(pod.s(path)) => {
                err(inv(Invalid::Backsteps), p.field(F::HostPath).field(F::Path))
            }
            VolumeSource::HostPath { path, .. } => {
                let pp = p.field(F::HostPath).field(F::Path);
                let hp = pod.s(path);
                if hp.is_empty() {
                    err(ErrorKind::Required, pp);
                } else if !hp.starts_with('/') {
                    // keel (SPEC 2.7): the kubelet resolves it against its working dir.
                    err(inv(Invalid::RelativePath), pp);
                }
            }
            #[cfg(not(feature = "small"))]
            VolumeSource::EmptyDir {
                size_limit: Some(q),
                ..
            } if q.mantissa < 0 => err(
                inv(Invalid::Negative),
                p.field(F::EmptyDir).field(F::SizeLimit),
            ),
            #[cfg(not(feature = "small"))]
            VolumeSource::DownwardApi {
                default_mode,
                projected,
            } => {
                let f = if projected {
                    F::Projected
                } else {
                    F::DownwardAPI
                };
                if !default_mode.is_none_or(|m| (0..=0o777).contains(&m)) {
                    err(inv(Invalid::FileMode), p.field(f).field(F::DefaultMode));
                }
                downward_files(pod, i, p.field(f), &mut err);
            }
            // validateImageVolumeSource: the reference is required.
            #[cfg(not(feature = "small"))]
            VolumeSource::Image { reference, .. } if reference.is_empty() => {
                err(ErrorKind::Required, p.field(F::Image).field(F::Reference))
            }
            _ => {}
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
    #[cfg(not(feature = "small"))]
    pod_rules(pod, &mut err);
    n
}

/// The rules for what only the Linux agent runs (security contexts, tolerations, host
/// aliases, annotations for seccomp and AppArmor, host ports). Firmware (`small`) leaves
/// them out to stay within its flash budget: its tasks use none of these fields.
#[cfg(not(feature = "small"))]
fn pod_rules(pod: &Pod, err: &mut dyn FnMut(ErrorKind, FieldPath)) {
    let inv = ErrorKind::Invalid;
    let spec = FieldPath::ROOT.field(F::Spec);
    let s = &pod.spec;
    // ValidateSeccompPodAnnotations and ValidateAppArmorPodAnnotations
    // (ValidatePodSpecificAnnotations).
    let meta = FieldPath::ROOT.field(F::Metadata);
    for (i, kv) in pod.annotations.iter().enumerate() {
        let p = meta.field(F::Annotations).push(Seg::Entry(i as u16));
        let (k, v) = (pod.s(kv.key), pod.s(kv.value));
        if (k == "seccomp.security.alpha.kubernetes.io/pod"
            || k.starts_with("container.seccomp.security.alpha.kubernetes.io/"))
            && !profile_ok(v, true)
        {
            err(inv(Invalid::SeccompAnnotation), p);
        } else if let Some(c) = k.strip_prefix("container.apparmor.security.beta.kubernetes.io/") {
            let known = pod.all_containers().any(|(_, o)| pod.s(o.name) == c);
            if !known || !profile_ok(v, false) {
                err(inv(Invalid::AppArmorAnnotation), p);
            }
        }
    }
    // ValidatePriorityClassName.
    if let Some(pc) = pod.opt(s.priority_class_name) {
        if !pc.is_empty() && !is_dns_subdomain(pc) {
            err(inv(Invalid::NotSubdomain), spec.field(F::PriorityClassName));
        }
    }
    // validateHostAliases.
    for (i, a) in s.host_aliases.iter().enumerate() {
        let p = spec.field(F::HostAliases).index(i);
        if !a.ip.is_empty() && pod.s(a.ip).parse::<core::net::IpAddr>().is_err() {
            err(inv(Invalid::IpAddress), p.field(F::Ip));
        }
        for (j, h) in a.hostnames.iter().enumerate() {
            if !is_dns_subdomain(pod.s(*h)) {
                err(inv(Invalid::NotSubdomain), p.field(F::Hostnames).index(j));
            }
        }
    }
    // validateTolerations.
    for (i, t) in s.tolerations.iter().enumerate() {
        let p = spec.field(F::Tolerations).index(i);
        let key = pod.opt(t.key).unwrap_or("");
        let op = pod.opt(t.operator).unwrap_or("");
        let value = pod.opt(t.value).unwrap_or("");
        let effect = pod.opt(t.effect).unwrap_or("");
        if !key.is_empty() && !is_qualified_name(key) {
            err(inv(Invalid::LabelKey), p.field(F::Key));
        }
        match op {
            "Exists" if !value.is_empty() => {
                err(inv(Invalid::TolerationOperator), p.field(F::Operator))
            }
            "Exists" => {}
            "" | "Equal" if key.is_empty() => {
                err(inv(Invalid::TolerationOperator), p.field(F::Operator))
            }
            "" | "Equal" if !is_label_value(value) => {
                err(inv(Invalid::LabelValue), p.field(F::Value))
            }
            "" | "Equal" => {}
            _ => err(inv(Invalid::UnknownValue), p.field(F::Operator)),
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            err(inv(Invalid::TolerationEffect), p.field(F::Effect));
        } else if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            err(inv(Invalid::UnknownValue), p.field(F::Effect));
        }
    }
    // validatePodSecurityContext.
    let sc = &s.security_context;
    let sp = spec.field(F::SecurityContext);
    for (v, f) in [
        (sc.run_as_user, F::RunAsUser),
        (sc.run_as_group, F::RunAsGroup),
        (sc.fs_group, F::FsGroup),
    ] {
        if !id_ok(v) {
            err(inv(Invalid::IdRange), sp.field(f));
        }
    }
    for (j, g) in sc.supplemental_groups.iter().enumerate() {
        if !id_ok(Some(*g)) {
            err(
                inv(Invalid::IdRange),
                sp.field(F::SupplementalGroups).index(j),
            );
        }
    }
    seccomp_ok(pod, &sc.seccomp, sp, err);
    // AccumulateUniqueHostPorts: a hostIP/protocol/hostPort is used once among the app
    // containers (protocol TCP when unset, as defaulted).
    let ports = || {
        s.containers
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| c.ports.iter().enumerate().map(move |(pi, p)| (ci, pi, p)))
    };
    for (k, (ci, pi, p)) in ports().enumerate() {
        let host = match (p.host_port, s.host_network) {
            (Some(h), _) if h != 0 => h,
            (_, true) => p.container_port,
            _ => continue,
        };
        let same = |o: &ContainerPort| {
            let oh = match (o.host_port, s.host_network) {
                (Some(h), _) if h != 0 => h,
                (_, true) => o.container_port,
                _ => return false,
            };
            oh == host
                && o.protocol.unwrap_or(Protocol::TCP) == p.protocol.unwrap_or(Protocol::TCP)
                && pod.opt(o.host_ip).unwrap_or("") == pod.opt(p.host_ip).unwrap_or("")
        };
        if ports().take(k).any(|(_, _, o)| same(o)) {
            let pp = spec
                .field(F::Containers)
                .index(ci)
                .field(F::Ports)
                .index(pi);
            err(inv(Invalid::Duplicate), pp.field(F::HostPort));
        }
    }
}

#[cfg(not(feature = "small"))]
/// The files of downwardAPI volume `volume` (`validateDownwardAPIVolumeFile`): a relative
/// path without '..' (`validateLocalNonReservedPath`), a mode in range, a resource that
/// names its container.
fn downward_files(
    pod: &Pod,
    volume: usize,
    p: FieldPath,
    err: &mut dyn FnMut(ErrorKind, FieldPath),
) {
    let items = pod
        .spec
        .downward_items
        .iter()
        .filter(|it| it.volume as usize == volume);
    for (j, it) in items.enumerate() {
        let ip = p.field(F::Items).index(j);
        let path = pod.s(it.path);
        if path.is_empty() {
            err(ErrorKind::Required, ip.field(F::Path));
        } else if !is_descending(path) || path.starts_with("..") {
            err(ErrorKind::Invalid(Invalid::Backsteps), ip.field(F::Path));
        }
        if !it.mode.is_none_or(|m| (0..=0o777).contains(&m)) {
            err(ErrorKind::Invalid(Invalid::FileMode), ip.field(F::Mode));
        }
        if let EnvSource::Resource { container, .. } = it.source {
            let rp = ip.field(F::ResourceFieldRef);
            match pod.opt(container) {
                None | Some("") => err(ErrorKind::Required, rp.field(F::ContainerName)),
                Some(c) if !pod.all_containers().any(|(_, o)| pod.s(o.name) == c) => err(
                    ErrorKind::Invalid(Invalid::UnknownValue),
                    rp.field(F::ContainerName),
                ),
                _ => {}
            }
        }
        resource_divisor(&it.source, ip.field(F::ResourceFieldRef), err);
    }
}

#[cfg(not(feature = "small"))]
/// `validateContainerResourceDivisor`: cpu 1m or 1; memory and storage 1, 1k…1E, 1Ki…1Ei.
fn resource_divisor(src: &EnvSource, p: FieldPath, err: &mut dyn FnMut(ErrorKind, FieldPath)) {
    let EnvSource::Resource {
        resource,
        divisor: Some(d),
        ..
    } = src
    else {
        return;
    };
    let Some(nano) = d.scaled_ceil(-9).filter(|_| d.mantissa != 0) else {
        return;
    };
    let cpu = matches!(
        resource,
        ResourceName::LimitsCpu | ResourceName::RequestsCpu
    );
    let ok = if cpu {
        matches!(nano, 1_000_000 | 1_000_000_000)
    } else {
        let v = nano / 1_000_000_000;
        nano % 1_000_000_000 == 0 && (0..7).any(|k| v == 1000i64.pow(k) || v == 1024i64.pow(k))
    };
    if !ok {
        err(ErrorKind::Invalid(Invalid::Divisor), p.field(F::Divisor));
    }
}

#[cfg(not(feature = "small"))]
/// `validateSeccompProfileField`: `localhostProfile` with type Localhost only, and then a
/// relative path without '..'.
fn seccomp_ok(
    pod: &Pod,
    s: &Option<Seccomp>,
    p: FieldPath,
    err: &mut dyn FnMut(ErrorKind, FieldPath),
) {
    let Some(s) = s else { return };
    let lp = p.field(F::SeccompProfile).field(F::LocalhostProfile);
    match (s.kind, pod.opt(s.localhost_profile)) {
        (SeccompType::Localhost, None | Some("")) => err(ErrorKind::Required, lp),
        (SeccompType::Localhost, Some(v)) if !is_descending(v) => {
            err(ErrorKind::Invalid(Invalid::Backsteps), lp)
        }
        (SeccompType::Localhost, _) | (_, None) => {}
        _ => err(ErrorKind::Invalid(Invalid::LocalhostProfile), lp),
    }
}

fn probe_ok(probe: &Probe, p: FieldPath, kind: F, err: &mut dyn FnMut(ErrorKind, FieldPath)) {
    // validateProbe: timings are non-negative (zero means the default); liveness and
    // startup need successThreshold 1; a probe's own grace period is positive and not for
    // readiness.
    let checks = [
        (probe.initial_delay_seconds, F::InitialDelaySeconds),
        (probe.timeout_seconds, F::TimeoutSeconds),
        (probe.period_seconds, F::PeriodSeconds),
        (probe.success_threshold, F::SuccessThreshold),
        (probe.failure_threshold, F::FailureThreshold),
    ];
    for (v, f) in checks {
        if v.is_some_and(|v| v < 0) {
            err(ErrorKind::Invalid(Invalid::Negative), p.field(f));
        }
    }
    if kind != F::ReadinessProbe && probe.success_threshold.is_some_and(|v| v > 1) {
        err(
            ErrorKind::Invalid(Invalid::SuccessThresholdNotOne),
            p.field(F::SuccessThreshold),
        );
    }
    #[cfg(not(feature = "small"))]
    let gp = p.field(F::TerminationGracePeriodSeconds);
    #[cfg(not(feature = "small"))]
    match probe.termination_grace_period_seconds {
        Some(_) if kind == F::ReadinessProbe => {
            err(ErrorKind::Invalid(Invalid::ReadinessGrace), gp)
        }
        Some(g) if g <= 0 => err(ErrorKind::Invalid(Invalid::NotPositive), gp),
        _ => {}
    }
    action_ok(&probe.action, p, None, err);
}

/// `validateHandler`: ports 1–65535 or IANA names, header names, sleep within the grace
/// period (`validateSleepAction`, hooks only: `grace` is then the pod's).
fn action_ok(
    a: &Action,
    p: FieldPath,
    grace: Option<i64>,
    err: &mut dyn FnMut(ErrorKind, FieldPath),
) {
    let port = |port: &IntOrStr, p: FieldPath, err: &mut dyn FnMut(ErrorKind, FieldPath)| match port
    {
        IntOrStr::Int(n) if !(1..=65535).contains(n) => {
            err(ErrorKind::Invalid(Invalid::PortRange), p)
        }
        IntOrStr::Str(s) if s.is_empty() => err(ErrorKind::Invalid(Invalid::PortRange), p),
        _ => {}
    };
    match a {
        Action::Exec(cmd) if cmd.is_empty() => {
            err(ErrorKind::Required, p.field(F::Exec).field(F::Command))
        }
        Action::HttpGet {
            port: pt, headers, ..
        } => {
            let hp = p.field(F::HttpGet);
            port(pt, hp.field(F::Port), err);
            for (i, h) in headers.iter().enumerate() {
                let np = hp.field(F::HttpHeaders).index(i).field(F::Name);
                if h.key.is_empty() {
                    err(ErrorKind::Required, np);
                }
            }
        }
        Action::TcpSocket { port: pt, .. } => port(pt, p.field(F::TcpSocket).field(F::Port), err),
        Action::Grpc { port: pt, .. } => {
            port(&IntOrStr::Int(*pt), p.field(F::Grpc).field(F::Port), err)
        }
        Action::Sleep { seconds } if *seconds < 0 || *seconds > grace.unwrap_or(i64::MAX) => err(
            ErrorKind::Invalid(Invalid::SleepRange),
            p.field(F::Sleep).field(F::Seconds),
        ),
        _ => {}
    }
}

#[cfg(not(feature = "small"))]
/// The names in `IntOrStr` ports and header names need the pool: checked here.
fn action_names(pod: &Pod, a: &Action, p: FieldPath, err: &mut dyn FnMut(ErrorKind, FieldPath)) {
    let named = |port: &IntOrStr| match port {
        IntOrStr::Str(s) if !s.is_empty() => !is_port_name(pod.s(*s)),
        _ => false,
    };
    match a {
        Action::HttpGet { port, headers, .. } => {
            let hp = p.field(F::HttpGet);
            if named(port) {
                err(ErrorKind::Invalid(Invalid::PortName), hp.field(F::Port));
            }
            // validateHTTPGetAction reports a bad header name at `httpHeaders`.
            let bad = |k: &str| !k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
            if headers
                .iter()
                .any(|h| !h.key.is_empty() && bad(pod.s(h.key)))
            {
                err(
                    ErrorKind::Invalid(Invalid::HeaderName),
                    hp.field(F::HttpHeaders),
                );
            }
        }
        Action::TcpSocket { port, .. } if named(port) => err(
            ErrorKind::Invalid(Invalid::PortName),
            p.field(F::TcpSocket).field(F::Port),
        ),
        _ => {}
    }
}

#[cfg(not(feature = "small"))]
/// `ValidateResourceRequirements` for one container: names, signs, requests against
/// limits, hugepages and extended resources.
fn resources_ok(pod: &Pod, r: &Resources, p: FieldPath, err: &mut dyn FnMut(ErrorKind, FieldPath)) {
    let inv = ErrorKind::Invalid;
    let p = p.field(F::Resources);
    let std_names = [F::Cpu, F::Memory, F::EphemeralStorage];
    let mut huge = false;
    let cpu_or_memory = r.limits.cpu.is_some() || r.limits.memory.is_some();
    for (list, lf) in [(&r.limits, F::Limits), (&r.requests, F::Requests)] {
        let lp = p.field(lf);
        let std = [list.cpu, list.memory, list.ephemeral_storage];
        let entries = std_names
            .iter()
            .zip(std)
            .filter_map(|(f, q)| Some((lp.field(*f), f.name(), q?)))
            .chain(
                list.other
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (lp.push(Seg::Entry(i as u16)), pod.s(e.name), e.quantity)),
            );
        for (ep, name, q) in entries {
            // validateContainerResourceName / validateResourceName.
            let page = huge_page_size(name);
            let extended = name.contains('/')
                && !name
                    .split('/')
                    .next()
                    .is_some_and(|d| d.ends_with("kubernetes.io"))
                && !name.starts_with("requests.")
                && is_qualified_name(name);
            let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage");
            if !standard && page.is_none() && !extended {
                err(inv(Invalid::ResourceName), ep);
                continue;
            }
            // ValidateResourceQuantityValue: not negative; extended resources whole.
            if q.mantissa < 0 {
                err(inv(Invalid::Negative), ep);
            } else if extended && !is_whole(&q) {
                err(inv(Invalid::NotInteger), ep);
            }
            if let Some(page) = page {
                huge = true;
                // validateResourceQuantityHugePageValue: whole pages.
                let whole = page.zip(quantity_of(&q)).is_some_and(|(pg, v)| v % pg == 0);
                if !whole {
                    err(inv(Invalid::HugePagesMultiple), ep);
                }
            }
            if lf == F::Requests {
                let limit = r.limits.get(&pod.pool, name);
                let overcommit = standard;
                match limit {
                    None if !overcommit => err(ErrorKind::Required, p.field(F::Limits)),
                    Some(l) if !overcommit && cmp(&q, &l) != Some(core::cmp::Ordering::Equal) => {
                        err(inv(Invalid::RequestNotLimit), ep)
                    }
                    Some(l) if cmp(&q, &l) == Some(core::cmp::Ordering::Greater) => {
                        err(inv(Invalid::RequestOverLimit), ep)
                    }
                    _ => {}
                }
            }
        }
    }
    if huge && !cpu_or_memory {
        err(inv(Invalid::HugePagesAlone), p);
    }
}

#[cfg(not(feature = "small"))]
/// A quantity's integer value (hugepages amounts are bytes).
fn quantity_of(q: &Quantity) -> Option<i64> {
    is_whole(q).then(|| q.scaled_ceil(0)).flatten()
}

/// `ValidateSecurityContext` (Linux only, as [`pod_rules`]).
#[cfg(not(feature = "small"))]
fn container_security(
    pod: &Pod,
    c: &Container,
    p: FieldPath,
    privileged: bool,
    err: &mut dyn FnMut(ErrorKind, FieldPath),
) {
    let inv = ErrorKind::Invalid;
    // ValidateSecurityContext.
    if let Some(sc) = &c.security_context {
        let sp = p.field(F::SecurityContext);
        for (v, f) in [
            (sc.run_as_user, F::RunAsUser),
            (sc.run_as_group, F::RunAsGroup),
        ] {
            if !id_ok(v) {
                err(inv(Invalid::IdRange), sp.field(f));
            }
        }
        let sys_admin = sc.cap_add.iter().any(|c| pod.s(*c) == "CAP_SYS_ADMIN");
        if sc.allow_privilege_escalation == Some(false) && (privileged || sys_admin) {
            err(inv(Invalid::Escalation), sp);
        }
        seccomp_ok(pod, &sc.seccomp, sp, err);
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
        // keel (SPEC 2.7): the kubelet refuses only leading or trailing space, and then
        // fails the pull of an image with inner spaces.
        err(inv(Invalid::Image), p.field(F::Image));
    }
    // validateEnv and validateEnvVarValueFrom.
    for (i, e) in c.env.iter().enumerate() {
        let ep = p.field(F::Env).index(i);
        if !is_env_name(pod.s(e.name)) {
            err(inv(Invalid::EnvName), ep.field(F::Name));
        }
        #[cfg(not(feature = "small"))]
        if e.value_from.is_some() && pod.opt(e.value).is_some_and(|v| !v.is_empty()) {
            err(inv(Invalid::ValueAndValueFrom), ep.field(F::ValueFrom));
        }
        #[cfg(not(feature = "small"))]
        if let Some(src) = &e.value_from {
            resource_divisor(src, ep.field(F::ValueFrom).field(F::ResourceFieldRef), err);
        }
    }
    // validateContainerPorts, validateHostNetwork.
    for (i, port) in c.ports.iter().enumerate() {
        let pp = p.field(F::Ports).index(i);
        if !(1..=65535).contains(&port.container_port) {
            err(inv(Invalid::PortRange), pp.field(F::ContainerPort));
        }
        // Firmware (`small`) leaves out this and the other rules marked so below: flash.
        #[cfg(not(feature = "small"))]
        if (1..=65535).contains(&port.container_port)
            && pod.spec.host_network
            && port
                .host_port
                .is_some_and(|h| h != 0 && h != port.container_port)
        {
            err(inv(Invalid::HostNetworkPort), pp.field(F::ContainerPort));
        }
        if let Some(h) = port.host_port {
            if !(0..=65535).contains(&h) {
                err(inv(Invalid::HostPortRange), pp.field(F::HostPort));
            }
        }
        if let Some(n) = pod.opt(port.name) {
            #[cfg(not(feature = "small"))]
            if !is_port_name(n) {
                err(inv(Invalid::PortName), pp.field(F::Name));
                continue;
            }
            if c.ports[..i].iter().any(|o| pod.opt(o.name) == Some(n)) {
                err(inv(Invalid::Duplicate), pp.field(F::Name));
            }
        }
    }
    #[cfg(not(feature = "small"))]
    resources_ok(pod, &c.resources, p, err);
    #[cfg(not(feature = "small"))]
    let privileged = c
        .security_context
        .as_ref()
        .is_some_and(|sc| sc.privileged == Some(true));
    // validateVolumeMounts.
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
            if !is_descending(sp) {
                err(inv(Invalid::SubPath), mp.field(F::SubPath));
            }
        }
        // validateMountPropagation.
        #[cfg(not(feature = "small"))]
        if m.propagation == Some(MountPropagation::Bidirectional) && !privileged {
            err(inv(Invalid::Bidirectional), mp.field(F::MountPropagation));
        }
    }
    let probes = [
        (&c.liveness_probe, F::LivenessProbe),
        (&c.readiness_probe, F::ReadinessProbe),
        (&c.startup_probe, F::StartupProbe),
    ];
    // A sidecar (an init container with `restartPolicy: Always`) may have probes and
    // hooks; other init containers may not (validateInitContainers), and app containers
    // have no restartPolicy.
    let sidecar = init && c.restart_policy == Some(ContainerRestartPolicy::Always);
    if !init && c.restart_policy.is_some() {
        err(
            inv(Invalid::RestartPolicyNotInit),
            p.field(F::RestartPolicy),
        );
    }
    for (probe, f) in probes {
        if let Some(probe) = probe {
            if init && !sidecar {
                err(inv(Invalid::InitContainerField), p.field(f));
            } else {
                probe_ok(probe, p.field(f), f, err);
                #[cfg(not(feature = "small"))]
                action_names(pod, &probe.action, p.field(f), err);
            }
        }
    }
    let hooks = [
        (&c.lifecycle.post_start, F::PostStart),
        (&c.lifecycle.pre_stop, F::PreStop),
    ];
    if init && !sidecar && hooks.iter().any(|(h, _)| h.is_some()) {
        err(inv(Invalid::InitContainerLifecycle), p.field(F::Lifecycle));
    }
    let grace = pod.spec.termination_grace_period_seconds.unwrap_or(30);
    for (hook, f) in hooks {
        if let Some(a) = hook {
            let hp = p.field(F::Lifecycle).field(f);
            action_ok(a, hp, Some(grace), err);
            #[cfg(not(feature = "small"))]
            action_names(pod, a, hp, err);
        }
    }
    #[cfg(not(feature = "small"))]
    container_security(pod, c, p, privileged, err);
    if let Some(w) = pod.opt(c.working_dir) {
        // keel (SPEC 2.7): the runtime would fail on a relative one.
        if !w.is_empty() && !w.starts_with('/') {
            err(inv(Invalid::RelativePath), p.field(F::WorkingDir));
        }
    }
}

/// Kubernetes' `validatePodDNSConfig`, with the options the kubelet validates static pods
/// with (v1.36: `RelaxedDNSSearchValidation` is on): `dnsPolicy: None` needs a `dnsConfig`
/// with at least one nameserver (and nothing more is checked when it lacks either);
/// nameservers are IP addresses (at most 3: the decoder's capacity, which is Kubernetes'
/// `MaxDNSNameservers` on Linux); searches are `.` or, a trailing '.' removed, DNS-1123
/// subdomains that may hold '_' (at most 32, `MaxDNSSearchPaths`, also a capacity), of at
/// most 2048 characters together with their separating spaces (`MaxDNSSearchListChars`);
/// every option has a name (the error names the option, as Kubernetes does).
fn dns_config(pod: &Pod, spec: FieldPath, err: &mut impl FnMut(ErrorKind, FieldPath)) {
    let s = &pod.spec;
    let none = s.dns_policy == Some(DnsPolicy::None);
    #[cfg(not(feature = "small"))]
    match &s.dns_config {
        None if none => err(ErrorKind::Required, spec.field(F::DnsConfig)),
        None => {}
        Some(c) => dns_config_values(pod, c, spec.field(F::DnsConfig), none, err),
    }
    // Firmware (`small`) refuses a dnsConfig when decoding, so None cannot have one.
    #[cfg(feature = "small")]
    if none {
        err(
            ErrorKind::Invalid(Invalid::NotInFirmware),
            spec.field(F::DnsPolicy),
        );
    }
}

/// The values of a `dnsConfig` (see [`dns_config`]).
#[cfg(not(feature = "small"))]
fn dns_config_values(
    pod: &Pod,
    c: &PodDnsConfig,
    at: FieldPath,
    none: bool,
    err: &mut impl FnMut(ErrorKind, FieldPath),
) {
    if none && c.nameservers.is_empty() {
        err(ErrorKind::Required, at.field(F::Nameservers));
        return;
    }
    for (i, n) in c.nameservers.iter().enumerate() {
        if pod.s(*n).parse::<core::net::IpAddr>().is_err() {
            err(
                ErrorKind::Invalid(Invalid::IpAddress),
                at.field(F::Nameservers).index(i),
            );
        }
    }
    let chars = c.searches.iter().map(|d| pod.s(*d).len()).sum::<usize>()
        + c.searches.len().saturating_sub(1);
    if chars > MAX_DNS_SEARCH_LIST_CHARS {
        err(
            ErrorKind::Invalid(Invalid::SearchListTooLong),
            at.field(F::Searches),
        );
    }
    for (i, d) in c.searches.iter().enumerate() {
        if !is_dns_search(pod.s(*d)) {
            err(
                ErrorKind::Invalid(Invalid::DnsSearch),
                at.field(F::Searches).index(i),
            );
        }
    }
    for (i, o) in c.options.iter().enumerate() {
        if o.name.is_empty() {
            err(ErrorKind::Required, at.field(F::Options).index(i));
        }
    }
}

/// Kubernetes' `MaxDNSSearchListChars`: the search list's length, spaces included.
#[cfg(not(feature = "small"))]
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;

/// A `dnsConfig.searches` entry as relaxed DNS search validation takes it: `.` alone, or
/// (one trailing '.' removed) a DNS-1123 subdomain whose labels may also hold '_'
/// (`IsDNS1123SubdomainWithUnderscore`).
#[cfg(not(feature = "small"))]
pub fn is_dns_search(d: &str) -> bool {
    if d == "." {
        return true;
    }
    let d = d.strip_suffix('.').unwrap_or(d);
    let label = |l: &str| {
        let b = l.as_bytes();
        let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_';
        !b.is_empty()
            && b.iter().all(|c| inner(c) || *c == b'-')
            && inner(&b[0])
            && inner(&b[b.len() - 1])
    };
    !d.is_empty() && d.len() <= 253 && d.split('.').all(label)
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
