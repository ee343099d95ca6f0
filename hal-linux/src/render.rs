//! Pods as Kubernetes JSON.
//!
//! This module deals with rendering keel-core's [`Pod`] model as the JSON Kubernetes
//! tools expect (field names as in the API, absent fields omitted), for `keel validate -o
//! json`, `keel pods -o json` and `keel inspect`.

use keel_core::manifest::model::*;
use serde_json::{json, Map, Value};

fn s(pod: &Pod, x: Str) -> Value {
    Value::String(pod.s(x).to_string())
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v);
    }
}

fn strs(pod: &Pod, v: &[Str]) -> Option<Value> {
    (!v.is_empty()).then(|| Value::Array(v.iter().map(|x| s(pod, *x)).collect()))
}

fn kvs(pod: &Pod, v: &[KeyValue]) -> Option<Value> {
    (!v.is_empty()).then(|| {
        Value::Object(
            v.iter()
                .map(|kv| (pod.s(kv.key).to_string(), s(pod, kv.value)))
                .collect(),
        )
    })
}

fn quantity(pod: &Pod, q: &Option<Quantity>) -> Option<Value> {
    q.as_ref().map(|q| s(pod, q.text))
}

fn int_or_str(pod: &Pod, p: &IntOrStr) -> Value {
    match p {
        IntOrStr::Int(i) => json!(i),
        IntOrStr::Str(x) => s(pod, *x),
    }
}

fn action(pod: &Pod, a: &Action, m: &mut Map<String, Value>) {
    match a {
        Action::Exec(cmd) => {
            m.insert(
                "exec".into(),
                json!({ "command": strs(pod, cmd).unwrap_or(json!([])) }),
            );
        }
        Action::HttpGet {
            path,
            port,
            host,
            scheme,
            headers,
        } => {
            let mut h = Map::new();
            put(&mut h, "path", path.map(|x| s(pod, x)));
            h.insert("port".into(), int_or_str(pod, port));
            put(&mut h, "host", host.map(|x| s(pod, x)));
            put(&mut h, "scheme", scheme.map(|x| json!(x.as_str())));
            if !headers.is_empty() {
                let hs = headers
                    .iter()
                    .map(|kv| json!({ "name": s(pod, kv.key), "value": s(pod, kv.value) }))
                    .collect();
                h.insert("httpHeaders".into(), Value::Array(hs));
            }
            m.insert("httpGet".into(), Value::Object(h));
        }
        Action::TcpSocket { port, host } => {
            let mut h = Map::new();
            h.insert("port".into(), int_or_str(pod, port));
            put(&mut h, "host", host.map(|x| s(pod, x)));
            m.insert("tcpSocket".into(), Value::Object(h));
        }
        Action::Grpc { port, service } => {
            let mut h = Map::new();
            h.insert("port".into(), json!(port));
            put(&mut h, "service", service.map(|x| s(pod, x)));
            m.insert("grpc".into(), Value::Object(h));
        }
        Action::Sleep { seconds } => {
            m.insert("sleep".into(), json!({ "seconds": seconds }));
        }
    }
}

fn probe(pod: &Pod, p: &Option<Probe>) -> Option<Value> {
    let p = p.as_ref()?;
    let mut m = Map::new();
    action(pod, &p.action, &mut m);
    put(
        &mut m,
        "initialDelaySeconds",
        p.initial_delay_seconds.map(|v| json!(v)),
    );
    put(
        &mut m,
        "timeoutSeconds",
        p.timeout_seconds.map(|v| json!(v)),
    );
    put(&mut m, "periodSeconds", p.period_seconds.map(|v| json!(v)));
    put(
        &mut m,
        "successThreshold",
        p.success_threshold.map(|v| json!(v)),
    );
    put(
        &mut m,
        "failureThreshold",
        p.failure_threshold.map(|v| json!(v)),
    );
    put(
        &mut m,
        "terminationGracePeriodSeconds",
        p.termination_grace_period_seconds.map(|v| json!(v)),
    );
    Some(Value::Object(m))
}

fn seccomp(pod: &Pod, sc: &Option<Seccomp>) -> Option<Value> {
    let sc = sc.as_ref()?;
    let mut m = Map::new();
    m.insert("type".into(), json!(sc.kind.as_str()));
    put(
        &mut m,
        "localhostProfile",
        sc.localhost_profile.map(|x| s(pod, x)),
    );
    Some(Value::Object(m))
}

fn resource_list(pod: &Pod, r: &ResourceList) -> Option<Value> {
    let mut m = Map::new();
    put(&mut m, "cpu", quantity(pod, &r.cpu));
    put(&mut m, "memory", quantity(pod, &r.memory));
    put(
        &mut m,
        "ephemeral-storage",
        quantity(pod, &r.ephemeral_storage),
    );
    for e in &r.other {
        put(&mut m, pod.s(e.name), quantity(pod, &Some(e.quantity)));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// A `fieldRef` or `resourceFieldRef`, as an object with that one key.
fn value_source(pod: &Pod, src: &EnvSource) -> Value {
    Value::Object(value_source_map(pod, src))
}

/// [`value_source`]'s object, to add a downwardAPI file's own keys to.
fn value_source_map(pod: &Pod, src: &EnvSource) -> Map<String, Value> {
    let one = |k: &str, v: Value| {
        let mut m = Map::new();
        m.insert(k.into(), v);
        m
    };
    let path = |p: String| one("fieldRef", json!({ "fieldPath": p }));
    match src {
        EnvSource::Field(f) => path(f.as_str().into()),
        EnvSource::Label(k) => path(format!("metadata.labels['{}']", pod.s(*k))),
        EnvSource::Annotation(k) => path(format!("metadata.annotations['{}']", pod.s(*k))),
        EnvSource::Labels => path("metadata.labels".into()),
        EnvSource::Annotations => path("metadata.annotations".into()),
        EnvSource::Resource {
            container,
            resource,
            divisor,
        } => {
            let mut r = Map::new();
            put(&mut r, "containerName", container.map(|x| s(pod, x)));
            r.insert("resource".into(), json!(resource.as_str()));
            put(&mut r, "divisor", quantity(pod, divisor));
            one("resourceFieldRef", Value::Object(r))
        }
    }
}

fn container(pod: &Pod, c: &Container) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), s(pod, c.name));
    m.insert("image".into(), s(pod, c.image));
    put(
        &mut m,
        "imagePullPolicy",
        c.image_pull_policy.map(|p| json!(p.as_str())),
    );
    put(&mut m, "command", strs(pod, &c.command));
    put(&mut m, "args", strs(pod, &c.args));
    put(&mut m, "workingDir", c.working_dir.map(|x| s(pod, x)));
    if !c.env.is_empty() {
        let env = c
            .env
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("name".into(), s(pod, e.name));
                put(&mut m, "value", e.value.map(|x| s(pod, x)));
                if let Some(src) = &e.value_from {
                    m.insert("valueFrom".into(), value_source(pod, src));
                }
                Value::Object(m)
            })
            .collect();
        m.insert("env".into(), Value::Array(env));
    }
    if !c.ports.is_empty() {
        let ports = c
            .ports
            .iter()
            .map(|p| {
                let mut m = Map::new();
                put(&mut m, "name", p.name.map(|x| s(pod, x)));
                m.insert("containerPort".into(), json!(p.container_port));
                put(&mut m, "hostPort", p.host_port.map(|v| json!(v)));
                put(&mut m, "protocol", p.protocol.map(|v| json!(v.as_str())));
                put(&mut m, "hostIP", p.host_ip.map(|x| s(pod, x)));
                Value::Object(m)
            })
            .collect();
        m.insert("ports".into(), Value::Array(ports));
    }
    let mut res = Map::new();
    put(
        &mut res,
        "requests",
        resource_list(pod, &c.resources.requests),
    );
    put(&mut res, "limits", resource_list(pod, &c.resources.limits));
    m.insert("resources".into(), Value::Object(res));
    if !c.volume_mounts.is_empty() {
        let mounts = c
            .volume_mounts
            .iter()
            .map(|v| {
                let mut m = Map::new();
                m.insert("name".into(), s(pod, v.name));
                m.insert("mountPath".into(), s(pod, v.mount_path));
                put(&mut m, "subPath", v.sub_path.map(|x| s(pod, x)));
                if v.read_only {
                    m.insert("readOnly".into(), json!(true));
                }
                put(
                    &mut m,
                    "mountPropagation",
                    v.propagation.map(|p| json!(p.as_str())),
                );
                Value::Object(m)
            })
            .collect();
        m.insert("volumeMounts".into(), Value::Array(mounts));
    }
    put(&mut m, "livenessProbe", probe(pod, &c.liveness_probe));
    put(&mut m, "readinessProbe", probe(pod, &c.readiness_probe));
    put(&mut m, "startupProbe", probe(pod, &c.startup_probe));
    let mut lc = Map::new();
    for (k, a) in [
        ("postStart", &c.lifecycle.post_start),
        ("preStop", &c.lifecycle.pre_stop),
    ] {
        if let Some(a) = a {
            let mut h = Map::new();
            action(pod, a, &mut h);
            lc.insert(k.into(), Value::Object(h));
        }
    }
    if !lc.is_empty() {
        m.insert("lifecycle".into(), Value::Object(lc));
    }
    if let Some(sc) = &c.security_context {
        let mut x = Map::new();
        put(&mut x, "privileged", sc.privileged.map(|v| json!(v)));
        put(&mut x, "runAsUser", sc.run_as_user.map(|v| json!(v)));
        put(&mut x, "runAsGroup", sc.run_as_group.map(|v| json!(v)));
        put(&mut x, "runAsNonRoot", sc.run_as_non_root.map(|v| json!(v)));
        put(
            &mut x,
            "readOnlyRootFilesystem",
            sc.read_only_root_filesystem.map(|v| json!(v)),
        );
        put(
            &mut x,
            "allowPrivilegeEscalation",
            sc.allow_privilege_escalation.map(|v| json!(v)),
        );
        if !sc.cap_add.is_empty() || !sc.cap_drop.is_empty() {
            let mut caps = Map::new();
            put(&mut caps, "add", strs(pod, &sc.cap_add));
            put(&mut caps, "drop", strs(pod, &sc.cap_drop));
            x.insert("capabilities".into(), Value::Object(caps));
        }
        put(&mut x, "seccompProfile", seccomp(pod, &sc.seccomp));
        m.insert("securityContext".into(), Value::Object(x));
    }
    if c.stdin {
        m.insert("stdin".into(), json!(true));
    }
    if c.tty {
        m.insert("tty".into(), json!(true));
    }
    put(
        &mut m,
        "terminationMessagePath",
        c.termination_message_path.map(|x| s(pod, x)),
    );
    put(
        &mut m,
        "terminationMessagePolicy",
        c.termination_message_policy.map(|p| json!(p.as_str())),
    );
    put(
        &mut m,
        "restartPolicy",
        c.restart_policy.map(|p| json!(p.as_str())),
    );
    Value::Object(m)
}

/// The pod's `metadata` object.
pub fn metadata(pod: &Pod) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), s(pod, pod.name));
    put(&mut meta, "namespace", pod.namespace.map(|x| s(pod, x)));
    put(&mut meta, "uid", pod.uid.map(|x| s(pod, x)));
    put(&mut meta, "labels", kvs(pod, &pod.labels));
    put(&mut meta, "annotations", kvs(pod, &pod.annotations));
    Value::Object(meta)
}

/// The pod's `spec` object.
pub fn spec(pod: &Pod) -> Value {
    let sp = &pod.spec;
    let mut spec = Map::new();
    if !sp.init_containers.is_empty() {
        spec.insert(
            "initContainers".into(),
            Value::Array(
                sp.init_containers
                    .iter()
                    .map(|c| container(pod, c))
                    .collect(),
            ),
        );
    }
    spec.insert(
        "containers".into(),
        Value::Array(sp.containers.iter().map(|c| container(pod, c)).collect()),
    );
    if !sp.volumes.is_empty() {
        let vols = sp
            .volumes
            .iter()
            .map(|v| {
                let mut m = Map::new();
                m.insert("name".into(), s(pod, v.name));
                match &v.source {
                    VolumeSource::HostPath { path, kind } => {
                        let mut h = Map::new();
                        h.insert("path".into(), s(pod, *path));
                        put(&mut h, "type", kind.map(|k| json!(k.as_str())));
                        m.insert("hostPath".into(), Value::Object(h));
                    }
                    VolumeSource::EmptyDir {
                        memory,
                        size_limit,
                        huge_pages,
                    } => {
                        let mut h = Map::new();
                        if *memory {
                            h.insert("medium".into(), json!("Memory"));
                        }
                        match huge_pages.map(|x| pod.s(x)) {
                            Some("") => h.insert("medium".into(), json!("HugePages")),
                            Some(size) => {
                                h.insert("medium".into(), json!(format!("HugePages-{size}")))
                            }
                            None => None,
                        };
                        put(&mut h, "sizeLimit", quantity(pod, size_limit));
                        m.insert("emptyDir".into(), Value::Object(h));
                    }
                    VolumeSource::DownwardApi {
                        projected,
                        default_mode,
                    } => {
                        let items: Vec<Value> = sp
                            .downward_items
                            .iter()
                            .filter(|it| {
                                Some(usize::from(it.volume))
                                    == sp.volumes.iter().position(|x| x == v)
                            })
                            .map(|it| {
                                let mut f = value_source_map(pod, &it.source);
                                f.insert("path".into(), s(pod, it.path));
                                put(&mut f, "mode", it.mode.map(|x| json!(x)));
                                Value::Object(f)
                            })
                            .collect();
                        let mut d = Map::new();
                        put(&mut d, "defaultMode", default_mode.map(|x| json!(x)));
                        if *projected {
                            let mut src = Vec::new();
                            if !items.is_empty() {
                                src.push(json!({ "downwardAPI": { "items": items } }));
                            }
                            d.insert("sources".into(), Value::Array(src));
                            m.insert("projected".into(), Value::Object(d));
                        } else {
                            if !items.is_empty() {
                                d.insert("items".into(), Value::Array(items));
                            }
                            m.insert("downwardAPI".into(), Value::Object(d));
                        }
                    }
                    VolumeSource::Image {
                        reference,
                        pull_policy,
                    } => {
                        let mut h = Map::new();
                        h.insert("reference".into(), s(pod, *reference));
                        put(&mut h, "pullPolicy", pull_policy.map(|p| json!(p.as_str())));
                        m.insert("image".into(), Value::Object(h));
                    }
                }
                Value::Object(m)
            })
            .collect();
        spec.insert("volumes".into(), Value::Array(vols));
    }
    put(
        &mut spec,
        "restartPolicy",
        sp.restart_policy.map(|p| json!(p.as_str())),
    );
    put(
        &mut spec,
        "terminationGracePeriodSeconds",
        sp.termination_grace_period_seconds.map(|v| json!(v)),
    );
    put(
        &mut spec,
        "dnsPolicy",
        sp.dns_policy.map(|p| json!(p.as_str())),
    );
    if let Some(c) = &sp.dns_config {
        let mut d = Map::new();
        put(&mut d, "nameservers", strs(pod, &c.nameservers));
        put(&mut d, "searches", strs(pod, &c.searches));
        if !c.options.is_empty() {
            let o = c
                .options
                .iter()
                .map(|o| {
                    let mut m = Map::new();
                    m.insert("name".into(), s(pod, o.name));
                    put(&mut m, "value", o.value.map(|v| s(pod, v)));
                    Value::Object(m)
                })
                .collect();
            d.insert("options".into(), Value::Array(o));
        }
        spec.insert("dnsConfig".into(), Value::Object(d));
    }
    put(&mut spec, "nodeName", sp.node_name.map(|x| s(pod, x)));
    for (k, v) in [
        ("hostNetwork", sp.host_network),
        ("hostPID", sp.host_pid),
        ("hostIPC", sp.host_ipc),
    ] {
        if v {
            spec.insert(k.into(), json!(true));
        }
    }
    put(&mut spec, "hostname", sp.hostname.map(|x| s(pod, x)));
    if !sp.host_aliases.is_empty() {
        let a = sp
            .host_aliases
            .iter()
            .map(|a| json!({ "ip": s(pod, a.ip), "hostnames": strs(pod, &a.hostnames).unwrap_or(json!([])) }))
            .collect();
        spec.insert("hostAliases".into(), Value::Array(a));
    }
    put(
        &mut spec,
        "priorityClassName",
        sp.priority_class_name.map(|x| s(pod, x)),
    );
    put(&mut spec, "priority", sp.priority.map(|v| json!(v)));
    let psc = &sp.security_context;
    let mut x = Map::new();
    put(&mut x, "runAsUser", psc.run_as_user.map(|v| json!(v)));
    put(&mut x, "runAsGroup", psc.run_as_group.map(|v| json!(v)));
    put(
        &mut x,
        "runAsNonRoot",
        psc.run_as_non_root.map(|v| json!(v)),
    );
    put(&mut x, "fsGroup", psc.fs_group.map(|v| json!(v)));
    if !psc.supplemental_groups.is_empty() {
        x.insert(
            "supplementalGroups".into(),
            json!(psc.supplemental_groups.as_slice()),
        );
    }
    put(&mut x, "seccompProfile", seccomp(pod, &psc.seccomp));
    if !x.is_empty() {
        spec.insert("securityContext".into(), Value::Object(x));
    }
    if !sp.tolerations.is_empty() {
        let t = sp
            .tolerations
            .iter()
            .map(|t| {
                let mut m = Map::new();
                put(&mut m, "key", t.key.map(|x| s(pod, x)));
                put(&mut m, "operator", t.operator.map(|x| s(pod, x)));
                put(&mut m, "value", t.value.map(|x| s(pod, x)));
                put(&mut m, "effect", t.effect.map(|x| s(pod, x)));
                put(
                    &mut m,
                    "tolerationSeconds",
                    t.toleration_seconds.map(|v| json!(v)),
                );
                Value::Object(m)
            })
            .collect();
        spec.insert("tolerations".into(), Value::Array(t));
    }
    Value::Object(spec)
}

/// The whole Pod object (`apiVersion`, `kind`, `metadata`, `spec`).
pub fn pod(pod: &Pod) -> Value {
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata(pod), "spec": spec(pod) })
}
