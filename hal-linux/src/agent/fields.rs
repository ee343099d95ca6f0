//! What the Linux agent does with each field of keel's Pod model (SPEC 2.10: nothing
//! modelled is silently ignored).
//!
//! This module deals with one table, [`VERDICTS`]: for every field of
//! [`keel_core::manifest::model::Pod`], by its place in the model (`spec.containers.image`,
//! Rust field names, enum variants as written by serde), its Kubernetes name and whether
//! the agent applies it or warns that it does not. [`report`] walks a decoded pod through
//! its serde form (so the walk follows the model itself, not a list kept beside it) and
//! gives, for every field the manifest sets, its Kubernetes path and verdict; a field of
//! the model the table does not know is reported as warned ("keel has no verdict"), never
//! dropped. `keel validate` prints the report and the agent logs the warned fields of
//! each pod it adds; the host tests walk a manifest that sets every field of the model
//! and check that each one has a verdict.

use keel_core::manifest::model::Pod;
use serde_json::Value;

/// What the agent does with a field.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    /// A structure: its fields have the verdicts.
    Node,
    /// Applied as Kubernetes does.
    Applied,
    /// Not applied; the message says what happens instead.
    Warned(&'static str),
    /// Applied or not depending on the value around it: the function gets the field's
    /// parent object (and the pod, for its text) and returns the warning when it is not
    /// applied.
    Depends(fn(&Value, &Pod) -> Option<&'static str>),
    /// keel's own bookkeeping, not a Kubernetes field (the string pool).
    Internal,
}

use Verdict::*;

/// Warned when a disk emptyDir has a sizeLimit.
fn empty_dir_size(parent: &Value, _: &Pod) -> Option<&'static str> {
    (parent["memory"] != Value::Bool(true)).then_some(
        "not enforced on disk: the kubelet never evicts static pods (they are critical pods) and keel does not either; with medium: Memory it is the tmpfs size",
    )
}

/// Warned unless the propagation is `None` (keel mounts volumes private).
fn propagation(parent: &Value, _: &Pod) -> Option<&'static str> {
    (parent["propagation"] != Value::String("None".into())).then_some(
        "volumes are mounted private (as None): HostToContainer and Bidirectional propagation are not applied",
    )
}

/// The text of a [`keel_core::manifest::model::Str`] in its serde form.
fn text<'p>(v: &Value, pod: &'p Pod) -> Option<&'p str> {
    serde_json::from_value(v.clone()).ok().map(|s| pod.s(s))
}

/// Warned when the message file is not the default one: nothing reads it.
fn termination_path(parent: &Value, pod: &Pod) -> Option<&'static str> {
    let path = text(&parent["termination_message_path"], pod);
    (path != Some("/dev/termination-log")).then_some(NO_TERMINATION_MESSAGE)
}

/// Warned for FallbackToLogsOnError: nothing reads the logs into a message.
fn termination_policy(parent: &Value, _: &Pod) -> Option<&'static str> {
    (parent["termination_message_policy"] == "FallbackToLogsOnError")
        .then_some(NO_TERMINATION_MESSAGE)
}

/// Warned when the pod has a toleration besides the `{operator: Exists, effect: NoExecute}`
/// one the kubelet's defaults give every static pod (that one is keel's own default too,
/// so it alone says nothing about the manifest).
fn tolerations(_: &Value, pod: &Pod) -> Option<&'static str> {
    pod.spec
        .tolerations
        .iter()
        .any(|t| !keel_core::manifest::defaults::is_static_pod_toleration(pod, t))
        .then_some(NO_TOLERATIONS)
}

const NO_STDIN: &str =
    "keel attaches no standard input or terminal to containers (use keel exec -it)";
const NO_TERMINATION_MESSAGE: &str =
    "keel does not read termination messages (the default /dev/termination-log with policy File is what it assumes): a terminated container's message stays empty";
const NOT_PROVIDED: &str =
    "accepted as the kubelet accepts it, but keel cannot provide it (no device plugins or hugepages pool): the container waits in CreateContainerConfigError";
const NO_TOLERATIONS: &str =
    "tolerations have no effect on a static pod: it is not scheduled and keel evicts nothing";

/// `(place in the model, Kubernetes name, verdict)`. An empty Kubernetes name is a step of
/// the model that has none (an enum's wrapper).
pub const VERDICTS: &[(&str, &str, Verdict)] = &[
    ("", "", Node),
    ("name", "metadata.name", Applied),
    ("namespace", "metadata.namespace", Applied),
    ("uid", "metadata.uid", Applied),
    ("labels", "metadata.labels", Applied),
    ("annotations", "metadata.annotations", Applied),
    ("pool", "", Internal),
    ("spec", "spec", Node),
    ("spec.init_containers", "initContainers", Node),
    ("spec.containers", "containers", Node),
    ("spec.volumes", "volumes", Node),
    ("spec.volumes.name", "name", Applied),
    ("spec.volumes.source", "", Node),
    ("spec.volumes.source.HostPath", "hostPath", Node),
    ("spec.volumes.source.HostPath.path", "path", Applied),
    ("spec.volumes.source.HostPath.kind", "type", Applied),
    ("spec.volumes.source.EmptyDir", "emptyDir", Node),
    ("spec.volumes.source.EmptyDir.memory", "medium", Applied),
    (
        "spec.volumes.source.EmptyDir.size_limit",
        "sizeLimit",
        Depends(empty_dir_size),
    ),
    (
        "spec.volumes.source.EmptyDir.huge_pages",
        "medium",
        Warned("HugePages media are not backed by hugetlbfs: the volume is a plain directory"),
    ),
    ("spec.volumes.source.DownwardApi", "downwardAPI", Node),
    (
        "spec.volumes.source.DownwardApi.projected",
        "projected",
        Applied,
    ),
    (
        "spec.volumes.source.DownwardApi.default_mode",
        "defaultMode",
        Applied,
    ),
    // Mounted read-only from keel's image store, pulled by its pullPolicy (subPath into
    // one is refused at start, with a message).
    ("spec.volumes.source.Image", "image", Applied),
    ("spec.downward_items", "items", Applied),
    ("spec.restart_policy", "restartPolicy", Applied),
    (
        "spec.termination_grace_period_seconds",
        "terminationGracePeriodSeconds",
        Applied,
    ),
    ("spec.host_network", "hostNetwork", Applied),
    ("spec.host_pid", "hostPID", Applied),
    ("spec.host_ipc", "hostIPC", Applied),
    // Without cluster DNS, as a kubelet without clusterDNS: None from dnsConfig alone,
    // the others from the node's resolver (agent/dns.rs).
    ("spec.dns_policy", "dnsPolicy", Applied),
    ("spec.dns_config", "dnsConfig", Node),
    ("spec.dns_config.nameservers", "nameservers", Applied),
    ("spec.dns_config.searches", "searches", Applied),
    ("spec.dns_config.options", "options", Node),
    ("spec.dns_config.options.name", "name", Applied),
    ("spec.dns_config.options.value", "value", Applied),
    ("spec.hostname", "hostname", Applied),
    // Written to the pod's /etc/hosts (runtime::hosts_file).
    ("spec.host_aliases", "hostAliases", Applied),
    ("spec.priority_class_name", "priorityClassName", Applied),
    (
        "spec.priority",
        "priority",
        Warned("no effect: keel neither preempts nor evicts; priorityClassName sets the OOM score"),
    ),
    ("spec.security_context", "securityContext", Node),
    ("spec.security_context.run_as_user", "runAsUser", Applied),
    ("spec.security_context.run_as_group", "runAsGroup", Applied),
    (
        "spec.security_context.run_as_non_root",
        "runAsNonRoot",
        Applied,
    ),
    (
        "spec.security_context.fs_group",
        "fsGroup",
        Warned(
            "added to every container's supplementary groups, but volume ownership is not changed",
        ),
    ),
    (
        "spec.security_context.supplemental_groups",
        "supplementalGroups",
        Applied,
    ),
    ("spec.security_context.seccomp", "seccompProfile", Node),
    ("spec.security_context.seccomp.kind", "type", Applied),
    (
        "spec.security_context.seccomp.localhost_profile",
        "localhostProfile",
        Applied,
    ),
    ("spec.tolerations", "tolerations", Depends(tolerations)),
    ("spec.node_name", "nodeName", Applied),
    // Containers (app and init alike).
    ("C.name", "name", Applied),
    ("C.image", "image", Applied),
    ("C.image_pull_policy", "imagePullPolicy", Applied),
    // Whether imagePullPolicy was written or defaulted (SPEC 2.3a offline rule).
    ("C.pull_policy_defaulted", "imagePullPolicy", Internal),
    ("C.restart_policy", "restartPolicy", Applied),
    ("C.command", "command", Applied),
    ("C.args", "args", Applied),
    ("C.working_dir", "workingDir", Applied),
    ("C.env", "env", Node),
    ("C.env.name", "name", Applied),
    ("C.env.value", "value", Applied),
    ("C.env.value_from", "valueFrom", Node),
    ("C.env.value_from.Field", "fieldRef", Applied),
    ("C.env.value_from.Label", "fieldRef", Applied),
    ("C.env.value_from.Annotation", "fieldRef", Applied),
    ("C.env.value_from.Resource", "resourceFieldRef", Node),
    (
        "C.env.value_from.Resource.container",
        "containerName",
        Applied,
    ),
    ("C.env.value_from.Resource.resource", "resource", Applied),
    ("C.env.value_from.Resource.divisor", "divisor", Applied),
    ("C.ports", "ports", Node),
    ("C.ports.name", "name", Applied),
    ("C.ports.container_port", "containerPort", Applied),
    // Mapped by the network's portmap plugin (its portMappings capability, hostIP
    // included), as containerd does; with hostNetwork it equals containerPort.
    ("C.ports.host_port", "hostPort", Applied),
    ("C.ports.protocol", "protocol", Applied),
    ("C.ports.host_ip", "hostIP", Applied),
    ("C.resources", "resources", Node),
    ("C.resources.requests", "requests", Node),
    ("C.resources.requests.cpu", "cpu", Applied),
    ("C.resources.requests.memory", "memory", Applied),
    (
        "C.resources.requests.ephemeral_storage",
        "ephemeral-storage",
        Warned("not enforced: the kubelet never evicts static pods, and keel does not either"),
    ),
    ("C.resources.limits", "limits", Node),
    ("C.resources.limits.cpu", "cpu", Applied),
    ("C.resources.limits.other", "limits", Warned(NOT_PROVIDED)),
    (
        "C.resources.requests.other",
        "requests",
        Warned(NOT_PROVIDED),
    ),
    ("C.resources.limits.memory", "memory", Applied),
    (
        "C.resources.limits.ephemeral_storage",
        "ephemeral-storage",
        Warned("not enforced: the kubelet never evicts static pods, and keel does not either"),
    ),
    ("C.volume_mounts", "volumeMounts", Node),
    ("C.volume_mounts.name", "name", Applied),
    ("C.volume_mounts.mount_path", "mountPath", Applied),
    ("C.volume_mounts.sub_path", "subPath", Applied),
    ("C.volume_mounts.read_only", "readOnly", Applied),
    (
        "C.volume_mounts.propagation",
        "mountPropagation",
        Depends(propagation),
    ),
    ("C.liveness_probe", "livenessProbe", Node),
    ("C.readiness_probe", "readinessProbe", Node),
    ("C.startup_probe", "startupProbe", Node),
    ("C.lifecycle", "lifecycle", Node),
    ("C.lifecycle.post_start", "postStart", Node),
    ("C.lifecycle.pre_stop", "preStop", Node),
    ("C.security_context", "securityContext", Node),
    ("C.security_context.privileged", "privileged", Applied),
    ("C.security_context.run_as_user", "runAsUser", Applied),
    ("C.security_context.run_as_group", "runAsGroup", Applied),
    (
        "C.security_context.run_as_non_root",
        "runAsNonRoot",
        Applied,
    ),
    (
        "C.security_context.read_only_root_filesystem",
        "readOnlyRootFilesystem",
        Applied,
    ),
    (
        "C.security_context.allow_privilege_escalation",
        "allowPrivilegeEscalation",
        Applied,
    ),
    ("C.security_context.cap_add", "capabilities.add", Applied),
    ("C.security_context.cap_drop", "capabilities.drop", Applied),
    ("C.security_context.seccomp", "seccompProfile", Node),
    ("C.security_context.seccomp.kind", "type", Applied),
    (
        "C.security_context.seccomp.localhost_profile",
        "localhostProfile",
        Applied,
    ),
    ("C.stdin", "stdin", Warned(NO_STDIN)),
    ("C.tty", "tty", Warned(NO_STDIN)),
    (
        "C.termination_message_path",
        "terminationMessagePath",
        Depends(termination_path),
    ),
    (
        "C.termination_message_policy",
        "terminationMessagePolicy",
        Depends(termination_policy),
    ),
    // Probes and hooks (their actions).
    ("P.action", "", Node),
    ("P.initial_delay_seconds", "initialDelaySeconds", Applied),
    ("P.timeout_seconds", "timeoutSeconds", Applied),
    ("P.period_seconds", "periodSeconds", Applied),
    ("P.success_threshold", "successThreshold", Applied),
    ("P.failure_threshold", "failureThreshold", Applied),
    (
        "P.termination_grace_period_seconds",
        "terminationGracePeriodSeconds",
        Applied,
    ),
    ("A.Exec", "exec.command", Applied),
    ("A.HttpGet", "httpGet", Node),
    ("A.HttpGet.path", "path", Applied),
    ("A.HttpGet.port", "port", Applied),
    ("A.HttpGet.host", "host", Applied),
    ("A.HttpGet.scheme", "scheme", Applied),
    ("A.HttpGet.headers", "httpHeaders", Applied),
    ("A.TcpSocket", "tcpSocket", Node),
    ("A.TcpSocket.port", "port", Applied),
    ("A.TcpSocket.host", "host", Applied),
    ("A.Grpc", "grpc", Node),
    ("A.Grpc.port", "port", Applied),
    ("A.Grpc.service", "service", Applied),
    ("A.Sleep", "sleep", Node),
    ("A.Sleep.seconds", "seconds", Applied),
];

/// The table key of a place in the model: containers of both kinds share `C.`, probes
/// `P.`, a probe's or hook's action `A.`.
fn table_key(path: &[&str]) -> String {
    let mut key = String::new();
    let mut i = 0;
    while i < path.len() {
        let seg = path[i];
        let container = key.is_empty()
            && path.len() > i + 1
            && path[i] == "spec"
            && matches!(path[i + 1], "containers" | "init_containers");
        if container && path.len() > i + 2 {
            key = "C".into();
            i += 2;
            continue;
        }
        let probe = key == "C"
            && matches!(seg, "liveness_probe" | "readiness_probe" | "startup_probe")
            && path.len() > i + 1;
        if probe {
            key = "P".into();
            i += 1;
            continue;
        }
        let action = (key == "P" && seg == "action")
            || (key == "C.lifecycle" && matches!(seg, "post_start" | "pre_stop"));
        if action && path.len() > i + 1 {
            key = "A".into();
            i += 1;
            continue;
        }
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(seg);
        i += 1;
    }
    key
}

fn verdict(key: &str) -> Option<(&'static str, Verdict)> {
    VERDICTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, name, v)| (*name, *v))
}

/// A field a manifest sets, and what the agent does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldReport {
    /// Kubernetes path (`spec.containers[0].livenessProbe.httpGet.port`).
    pub path: String,
    /// Place in keel's model (`C.liveness_probe...` keys of [`VERDICTS`]).
    pub model: String,
    /// `None` when applied; the warning otherwise.
    pub warning: Option<String>,
}

/// Whether a leaf value is set (written in the manifest, or defaulted).
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

fn walk(
    v: &Value,
    parent: &Value,
    pod: &Pod,
    path: &mut Vec<String>,
    shown: &str,
    out: &mut Vec<FieldReport>,
) {
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    let key = table_key(&segs);
    let found = verdict(&key);
    let here = match found {
        Some((name, _)) if !name.is_empty() && shown.is_empty() => name.to_string(),
        Some((name, _)) if !name.is_empty() => format!("{shown}.{name}"),
        _ => shown.to_string(),
    };
    let report = |warning: Option<String>, out: &mut Vec<FieldReport>| {
        out.push(FieldReport {
            path: here.clone(),
            model: key.clone(),
            warning,
        })
    };
    match found {
        Some((_, Internal)) => {}
        Some((_, Applied)) if is_set(v) => report(None, out),
        Some((_, Warned(m))) if is_set(v) => report(Some(m.to_string()), out),
        Some((_, Depends(f))) if is_set(v) => report(f(parent, pod).map(str::to_string), out),
        Some((_, Applied | Warned(_) | Depends(_))) => {}
        Some((_, Node)) => match v {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, v, pod, path, &here, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                // Each element is an object of the same place: its fields, under `[i]`.
                for (i, item) in items.iter().enumerate() {
                    let shown = format!("{here}[{i}]");
                    if let Value::Object(m) = item {
                        for (k, child) in m {
                            path.push(k.clone());
                            walk(child, item, pod, path, &shown, out);
                            path.pop();
                        }
                    }
                }
            }
            _ => {}
        },
        None if is_set(v) => report(
            Some(format!(
                "keel has no verdict for this field of its model ({key}): treat it as not applied"
            )),
            out,
        ),
        None => {}
    }
}

/// Every field `pod` sets (leaves of the model), with its Kubernetes path and whether the
/// agent applies it, in model order.
pub fn report(pod: &Pod) -> Vec<FieldReport> {
    let mut out = Vec::new();
    let v = serde_json::to_value(pod).unwrap_or(Value::Null);
    walk(&v, &Value::Null, pod, &mut Vec::new(), "", &mut out);
    out
}

/// A place in the model a pod reaches, for the tests that check [`VERDICTS`] covers the
/// model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The [`VERDICTS`] key.
    pub key: String,
    /// [`VERDICTS`] has it.
    pub known: bool,
    /// A field with a verdict of its own (not a structure, not keel's bookkeeping).
    pub leaf: bool,
    /// The pod sets it.
    pub set: bool,
}

/// Every place in the model `pod` reaches, set or not (structures are entered only
/// where the pod has them).
pub fn model_places(pod: &Pod) -> Vec<Place> {
    fn go(v: &Value, path: &mut Vec<String>, out: &mut Vec<Place>) {
        let segs: Vec<&str> = path.iter().map(String::as_str).collect();
        let key = table_key(&segs);
        let found = verdict(&key);
        out.push(Place {
            key,
            known: found.is_some(),
            leaf: matches!(found, Some((_, Applied | Warned(_) | Depends(_)))),
            set: is_set(v),
        });
        if let Some((_, Node)) = found {
            match v {
                Value::Object(m) => {
                    for (k, child) in m {
                        path.push(k.clone());
                        go(child, path, out);
                        path.pop();
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        go(item, path, out);
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    let v = serde_json::to_value(pod).unwrap_or(Value::Null);
    go(&v, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keys_fold_containers_probes_and_actions() {
        assert_eq!(table_key(&["spec", "containers", "image"]), "C.image");
        assert_eq!(table_key(&["spec", "init_containers", "image"]), "C.image");
        assert_eq!(table_key(&["spec", "containers"]), "spec.containers");
        assert_eq!(
            table_key(&[
                "spec",
                "containers",
                "liveness_probe",
                "action",
                "HttpGet",
                "port"
            ]),
            "A.HttpGet.port"
        );
        assert_eq!(
            table_key(&["spec", "containers", "lifecycle", "pre_stop", "Sleep"]),
            "A.Sleep"
        );
        assert_eq!(
            table_key(&["spec", "containers", "startup_probe", "period_seconds"]),
            "P.period_seconds"
        );
        assert_eq!(table_key(&["spec", "volumes", "name"]), "spec.volumes.name");
    }

    #[test]
    fn every_verdict_key_is_unique() {
        for (i, (k, _, _)) in VERDICTS.iter().enumerate() {
            assert!(
                !VERDICTS[i + 1..].iter().any(|(o, _, _)| o == k),
                "{k} twice"
            );
        }
    }
}
