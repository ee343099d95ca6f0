//! Canonical form, identity and defaulting (SPEC 2.3–2.6).
//!
//! This module deals with turning a validated Pod as written into the pod keel runs:
//! - [`canonicalize`] re-lays the string pool in model order and sorts labels and
//!   annotations, so two files that differ only in comments, whitespace, key order or
//!   YAML-vs-JSON produce byte-identical postcard encodings;
//! - [`digest`] hashes that encoding (SHA-256): equal digests mean "no semantic change";
//! - [`apply`] fills the Kubernetes defaults, derives the deterministic UID from the
//!   digest, the node name and the file path (unless `metadata.uid` is set), suffixes the
//!   name with the node, and adds the `kubernetes.io/config.*` annotations.

use super::error::{Error, ErrorKind, Invalid};
use super::event::Mark;
use super::model::*;
use super::path::{FieldPath, F};
use crate::config::Limit;
use sha2::{Digest as _, Sha256};

/// A content digest (first 16 bytes of SHA-256).
pub type Digest = [u8; 16];

/// Where a pod is being defaulted: the node, the manifest path and the time first seen.
#[derive(Clone, Copy, Debug)]
pub struct Context<'x> {
    /// Node name (`--hostname-override` or the host name); trimmed and lower-cased here.
    pub node: &'x str,
    /// The manifest's path as the source names it.
    pub path: &'x str,
    /// RFC 3339 time the file was first seen (`kubernetes.io/config.seen`).
    pub seen: &'x str,
}

/// Defaulting's capacity errors have no position in the manifest.
fn cap(l: Limit) -> Error {
    Error::capacity(l, FieldPath::ROOT, Mark::default())
}

/// Calls `f` on every string handle of the pod, in model order.
pub fn for_each_str(pod: &mut Pod, f: &mut dyn FnMut(&mut Str)) {
    let Pod {
        name,
        namespace,
        uid,
        labels,
        annotations,
        spec,
        pool: _,
    } = pod;
    walk(name, namespace, uid, labels, annotations, spec, f);
}

/// [`for_each_str`] over the pod's parts, so the pool can be read meanwhile.
#[allow(clippy::too_many_arguments)]
fn walk(
    name: &mut Str,
    namespace: &mut Option<Str>,
    uid: &mut Option<Str>,
    labels: &mut heapless::Vec<KeyValue, { crate::config::MAX_LABELS }>,
    annotations: &mut heapless::Vec<KeyValue, { crate::config::MAX_LABELS }>,
    s: &mut PodSpec,
    f: &mut dyn FnMut(&mut Str),
) {
    f(name);
    o(namespace, f);
    o(uid, f);
    for kv in labels.iter_mut().chain(annotations.iter_mut()) {
        f(&mut kv.key);
        f(&mut kv.value);
    }
    for c in s.init_containers.iter_mut().chain(s.containers.iter_mut()) {
        container_strs(c, f);
    }
    for v in s.volumes.iter_mut() {
        f(&mut v.name);
        match &mut v.source {
            VolumeSource::HostPath { path, .. } => f(path),
            VolumeSource::EmptyDir {
                size_limit,
                huge_pages,
                ..
            } => {
                q(size_limit, f);
                o(huge_pages, f);
            }
            VolumeSource::DownwardApi { .. } => {}
            VolumeSource::Image { reference, .. } => f(reference),
        }
    }
    for it in s.downward_items.iter_mut() {
        f(&mut it.path);
        env_source(&mut it.source, f);
    }
    o(&mut s.hostname, f);
    for a in s.host_aliases.iter_mut() {
        f(&mut a.ip);
        a.hostnames.iter_mut().for_each(&mut *f);
    }
    // Firmware (`small`) refuses dnsConfig: there is never one.
    #[cfg(not(feature = "small"))]
    if let Some(c) = &mut s.dns_config {
        c.nameservers.iter_mut().for_each(&mut *f);
        c.searches.iter_mut().for_each(&mut *f);
        for opt in c.options.iter_mut() {
            f(&mut opt.name);
            o(&mut opt.value, f);
        }
    }
    o(&mut s.priority_class_name, f);
    seccomp(&mut s.security_context.seccomp, f);
    for t in s.tolerations.iter_mut() {
        o(&mut t.key, f);
        o(&mut t.operator, f);
        o(&mut t.value, f);
        o(&mut t.effect, f);
    }
    o(&mut s.node_name, f);
}

fn q(x: &mut Option<Quantity>, f: &mut dyn FnMut(&mut Str)) {
    if let Some(x) = x {
        f(&mut x.text)
    }
}
fn o(x: &mut Option<Str>, f: &mut dyn FnMut(&mut Str)) {
    if let Some(x) = x {
        f(x)
    }
}
fn port(p: &mut IntOrStr, f: &mut dyn FnMut(&mut Str)) {
    if let IntOrStr::Str(s) = p {
        f(s)
    }
}
fn action(a: &mut Action, f: &mut dyn FnMut(&mut Str)) {
    match a {
        Action::Exec(cmd) => cmd.iter_mut().for_each(&mut *f),
        Action::HttpGet {
            path,
            port: p,
            host,
            headers,
            ..
        } => {
            o(path, f);
            port(p, f);
            o(host, f);
            for h in headers {
                f(&mut h.key);
                f(&mut h.value);
            }
        }
        Action::TcpSocket { port: p, host } => {
            port(p, f);
            o(host, f);
        }
        Action::Grpc { service, .. } => o(service, f),
        Action::Sleep { .. } => {}
    }
}
fn env_source(s: &mut EnvSource, f: &mut dyn FnMut(&mut Str)) {
    match s {
        EnvSource::Label(k) | EnvSource::Annotation(k) => f(k),
        EnvSource::Resource {
            container, divisor, ..
        } => {
            o(container, f);
            q(divisor, f);
        }
        _ => {}
    }
}
fn seccomp(s: &mut Option<Seccomp>, f: &mut dyn FnMut(&mut Str)) {
    if let Some(s) = s {
        o(&mut s.localhost_profile, f)
    }
}

/// Calls `f` on every string handle of one container, in model order (as [`for_each_str`]).
pub fn container_strs(c: &mut Container, f: &mut dyn FnMut(&mut Str)) {
    f(&mut c.name);
    f(&mut c.image);
    c.command
        .iter_mut()
        .chain(c.args.iter_mut())
        .for_each(&mut *f);
    o(&mut c.working_dir, f);
    for e in c.env.iter_mut() {
        f(&mut e.name);
        o(&mut e.value, f);
        if let Some(src) = &mut e.value_from {
            env_source(src, f);
        }
    }
    for p in c.ports.iter_mut() {
        o(&mut p.name, f);
        o(&mut p.host_ip, f);
    }
    for r in [&mut c.resources.requests, &mut c.resources.limits] {
        q(&mut r.cpu, f);
        q(&mut r.memory, f);
        q(&mut r.ephemeral_storage, f);
        for e in r.other.iter_mut() {
            f(&mut e.name);
            f(&mut e.quantity.text);
        }
    }
    for m in c.volume_mounts.iter_mut() {
        f(&mut m.name);
        f(&mut m.mount_path);
        o(&mut m.sub_path, f);
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        action(&mut p.action, f);
    }
    for a in [&mut c.lifecycle.post_start, &mut c.lifecycle.pre_stop]
        .into_iter()
        .flatten()
    {
        action(a, f);
    }
    if let Some(sc) = &mut c.security_context {
        sc.cap_add
            .iter_mut()
            .chain(sc.cap_drop.iter_mut())
            .for_each(&mut *f);
        seccomp(&mut sc.seccomp, f);
    }
    o(&mut c.termination_message_path, f);
}

/// Insertion sort by key text. Labels and annotations are few (at most `MAX_LABELS`) and
/// their keys unique (duplicates are rejected when decoding), so the result is the one any
/// sort gives; this keeps core's generic sort (~2.4 KiB) out of the firmware.
fn sort_by_key_text(kvs: &mut [KeyValue], pool: &Pool) {
    insertion_sort(kvs, |a, b| pool.get(a.key) > pool.get(b.key));
}

/// Sorts `v` so that no element is `after` its successor.
fn insertion_sort<T>(v: &mut [T], after: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && after(&v[j - 1], &v[j]) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Sorts labels and annotations by key and re-lays the pool in model order, so the
/// encoding depends only on content. `scratch` is a second pool used as the copy target.
pub fn canonicalize(pod: &mut Pod, scratch: &mut Pool) -> Result<(), Error> {
    {
        let pool = &pod.pool;
        sort_by_key_text(&mut pod.labels, pool);
        sort_by_key_text(&mut pod.annotations, pool);
        let s = &mut pod.spec;
        for c in s.init_containers.iter_mut().chain(s.containers.iter_mut()) {
            for r in [&mut c.resources.requests, &mut c.resources.limits] {
                insertion_sort(&mut r.other, |a, b| pool.get(a.name) > pool.get(b.name));
            }
        }
    }
    scratch.clear();
    // Copy every string into `scratch` in model order, then copy the result back: two
    // copies of the bytes in use, instead of moving whole fixed-size pools around.
    let mut full = false;
    {
        let Pod {
            name,
            namespace,
            uid,
            labels,
            annotations,
            spec,
            pool,
        } = pod;
        walk(
            name,
            namespace,
            uid,
            labels,
            annotations,
            spec,
            &mut |s| match scratch.add(pool.get(*s)) {
                Ok(n) => *s = n,
                Err(_) => full = true,
            },
        );
    }
    pod.pool.copy_from(scratch);
    if full {
        return Err(cap(Limit::StringBytes));
    }
    Ok(())
}

/// The hasher fed the pod's compact encoding through a small buffer (the encoding comes
/// mostly a few bytes at a time; SHA-256 wants blocks).
fn hasher_of(pod: &Pod) -> Sha256 {
    let mut h = Sha256::new();
    let mut buf = [0u8; 128];
    let mut len = 0;
    pod.encode_for_digest(&mut |data| {
        if len + data.len() > buf.len() {
            h.update(&buf[..len]);
            len = 0;
        }
        if data.len() >= buf.len() {
            h.update(data);
        } else {
            buf[len..len + data.len()].copy_from_slice(data);
            len += data.len();
        }
        true
    });
    h.update(&buf[..len]);
    h
}

/// The content digest of a canonical pod.
pub fn digest(pod: &Pod) -> Digest {
    let out = hasher_of(pod).finalize();
    let mut d = [0u8; 16];
    d.copy_from_slice(&out[..16]);
    d
}

/// Lower-case hex of a digest.
pub fn hex(d: &Digest) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in d.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// The node name as keel uses it: trimmed, lower-cased, at most 253 bytes.
pub fn node_name(raw: &str) -> heapless::String<253> {
    let mut out = heapless::String::new();
    for c in raw.trim().chars() {
        if out.push(c.to_ascii_lowercase()).is_err() {
            break;
        }
    }
    out
}

/// The deterministic UID of a canonical pod (SPEC 2.5): 32 hex digits of
/// SHA-256(content digest ‖ node ‖ path).
pub fn uid_for(pod: &Pod, node: &str, path: &str) -> [u8; 32] {
    uid_from_digest(&digest(pod), node, path)
}

/// [`uid_for`] when the content digest is already known.
pub fn uid_from_digest(d: &Digest, node: &str, path: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(d);
    h.update([0u8]);
    h.update(node.as_bytes());
    h.update([0u8]);
    h.update(path.as_bytes());
    let out = h.finalize();
    let mut u = [0u8; 16];
    u.copy_from_slice(&out[..16]);
    hex(&u)
}

fn set_annotation(pod: &mut Pod, key: &str, value: &str) -> Result<(), Error> {
    let v = pod.pool.add(value).map_err(|_| cap(Limit::StringBytes))?;
    if let Some(i) = pod
        .annotations
        .iter()
        .position(|kv| pod.pool.get(kv.key) == key)
    {
        pod.annotations[i].value = v;
        return Ok(());
    }
    let k = pod.pool.add(key).map_err(|_| cap(Limit::StringBytes))?;
    pod.annotations
        .push(KeyValue { key: k, value: v })
        .map_err(|_| cap(Limit::Labels))
}

/// SetDefaults_Pod: a limit without a request is also the request.
#[cfg(not(feature = "small"))]
fn requests_from_limits(r: &mut Resources, pool: &Pool) -> Result<(), Error> {
    for (req, lim) in [
        (&mut r.requests.cpu, r.limits.cpu),
        (&mut r.requests.memory, r.limits.memory),
        (
            &mut r.requests.ephemeral_storage,
            r.limits.ephemeral_storage,
        ),
    ] {
        if req.is_none() {
            *req = lim;
        }
    }
    for e in r.limits.other.iter() {
        let name = pool.get(e.name);
        if !r.requests.other.iter().any(|q| pool.get(q.name) == name) {
            // A limit the requests have no room for is a capacity error, never dropped.
            r.requests
                .other
                .push(*e)
                .map_err(|_| cap(Limit::Resources))?;
        }
    }
    Ok(())
}

/// Whether `t` is the toleration the kubelet's defaults give every static pod
/// (`{operator: Exists, effect: NoExecute}`, no key or value; see `static_pod_toleration`).
/// Not gated on `small`: hal-linux's field verdicts ask it whatever core's features are,
/// and firmware that does not call it links none of it.
pub fn is_static_pod_toleration(pod: &Pod, t: &Toleration) -> bool {
    let is = |s: Option<Str>, want: &str| pod.opt(s).unwrap_or("") == want;
    is(t.key, "") && is(t.operator, "Exists") && is(t.value, "") && is(t.effect, "NoExecute")
}

#[cfg(not(feature = "small"))]
/// The kubelet's `applyDefaults` (pkg/kubelet/config/common.go) gives every static pod a
/// toleration `{operator: Exists, effect: NoExecute}` (`AddOrUpdateTolerationInPod`: not
/// added again when the pod has one with the same key, operator, value and effect; such a
/// one loses its `tolerationSeconds`), so node problems never evict it.
fn static_pod_toleration(pod: &mut Pod) -> Result<(), Error> {
    let same = pod
        .spec
        .tolerations
        .iter()
        .position(|t| is_static_pod_toleration(pod, t));
    if let Some(i) = same {
        pod.spec.tolerations[i].toleration_seconds = None;
        return Ok(());
    }
    let mut add = |s: &str| pod.pool.add(s).map_err(|_| cap(Limit::StringBytes));
    let t = Toleration {
        operator: Some(add("Exists")?),
        effect: Some(add("NoExecute")?),
        ..Toleration::default()
    };
    pod.spec
        .tolerations
        .push(t)
        .map_err(|_| cap(Limit::Tolerations))
}

/// Calls `f` on every quantity of the pod: resources, `resourceFieldRef` divisors
/// (env and downwardAPI items) and `emptyDir.sizeLimit`.
#[cfg(not(feature = "small"))]
fn for_each_quantity(s: &mut PodSpec, f: &mut dyn FnMut(&mut Quantity)) {
    fn divisor(src: &mut EnvSource) -> Option<&mut Quantity> {
        match src {
            EnvSource::Resource {
                divisor: Some(d), ..
            } => Some(d),
            _ => None,
        }
    }
    for c in s.init_containers.iter_mut().chain(s.containers.iter_mut()) {
        for r in [&mut c.resources.requests, &mut c.resources.limits] {
            for q in [&mut r.cpu, &mut r.memory, &mut r.ephemeral_storage]
                .into_iter()
                .flatten()
            {
                f(q);
            }
            for e in r.other.iter_mut() {
                f(&mut e.quantity);
            }
        }
        for e in c.env.iter_mut() {
            if let Some(d) = e.value_from.as_mut().and_then(divisor) {
                f(d);
            }
        }
    }
    for it in s.downward_items.iter_mut() {
        if let Some(d) = divisor(&mut it.source) {
            f(d);
        }
    }
    for v in s.volumes.iter_mut() {
        if let VolumeSource::EmptyDir {
            size_limit: Some(q),
            ..
        } = &mut v.source
        {
            f(q);
        }
    }
}

/// Every quantity as Kubernetes prints it once parsed ([`quantity::canonical`]:
/// `1000m` → `1`, `1024Mi` → `1Gi`), its value with it (rounded up to a nano, binary
/// amounts capped at 2^63-1, as `ParseQuantity` does). Text already canonical keeps its
/// handle; a new text is added to the pool.
///
/// [`quantity::canonical`]: super::quantity::canonical
#[cfg(not(feature = "small"))]
fn canonical_quantities(pod: &mut Pod) -> Result<(), Error> {
    use super::quantity::{canonical, parse};
    let Pod { spec, pool, .. } = pod;
    let mut full = false;
    for_each_quantity(spec, &mut |q| {
        let Some(text) = canonical(pool.get(q.text)) else {
            return;
        };
        if let Some((mantissa, exp10)) = parse(&text) {
            (q.mantissa, q.exp10) = (mantissa, exp10);
        }
        if text != pool.get(q.text) {
            match pool.add(&text) {
                Ok(t) => q.text = t,
                Err(_) => full = true,
            }
        }
    });
    if full {
        return Err(cap(Limit::StringBytes));
    }
    Ok(())
}

/// Whether `image` names the `latest` tag, written or implied (no tag, no digest): its
/// pull policy defaults to `Always` (containers and image volumes alike).
pub fn image_is_latest(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => !image.contains('@'),
    }
}

/// Fills defaults on a canonical, validated pod (SPEC 2.3–2.6). Returns the UID.
pub fn apply(pod: &mut Pod, ctx: &Context<'_>) -> Result<[u8; 32], Error> {
    let d = digest(pod);
    apply_with_digest(pod, ctx, &d)
}

/// [`apply`] when the content digest of the canonical pod is already known.
pub fn apply_with_digest(
    pod: &mut Pod,
    ctx: &Context<'_>,
    content: &Digest,
) -> Result<[u8; 32], Error> {
    let node = node_name(ctx.node);
    let uid = match pod.uid {
        Some(u) => {
            let mut out = [b'0'; 32];
            let t = pod.pool.get(u).as_bytes();
            let n = t.len().min(32);
            out[..n].copy_from_slice(&t[..n]);
            // A fixed uid is kept as written (see `Pod::uid`); this array is only its prefix.
            out
        }
        None => {
            let uid = uid_from_digest(content, &node, ctx.path);
            let s = core::str::from_utf8(&uid).unwrap_or("");
            pod.uid = Some(pod.pool.add(s).map_err(|_| cap(Limit::StringBytes))?);
            uid
        }
    };
    // Suffixed name.
    let start = pod.pool.start();
    let base = pod.name;
    let push = |pool: &mut Pool, s: &str| pool.push_str(s).map_err(|_| cap(Limit::StringBytes));
    {
        // Copy the base name through a small buffer: the pool cannot lend and grow at once.
        // A validated name is at most 251 bytes (`validate` bounds `<name>-<node>` by 253);
        // `apply` on a pod that skipped validation reports the overlong name, never cuts it.
        let mut buf: heapless::String<253> = heapless::String::new();
        buf.push_str(pod.pool.get(base)).map_err(|_| {
            Error::new(
                ErrorKind::Invalid(Invalid::SuffixedNameTooLong),
                FieldPath::ROOT.field(F::Metadata).field(F::Name),
                Mark::default(),
            )
        })?;
        push(&mut pod.pool, &buf)?;
    }
    push(&mut pod.pool, "-")?;
    push(&mut pod.pool, &node)?;
    pod.name = pod.pool.finish(start);
    if pod.namespace.is_none_or(|n| n.is_empty()) {
        pod.namespace = Some(
            pod.pool
                .add("default")
                .map_err(|_| cap(Limit::StringBytes))?,
        );
    }
    pod.spec.node_name = Some(pod.pool.add(&node).map_err(|_| cap(Limit::StringBytes))?);
    // Strings the defaults below may need, added once (the pool cannot lend and grow at
    // once inside the loops).
    let slash = pod.pool.add("/").map_err(|_| cap(Limit::StringBytes))?;
    // Firmware (`small`) leaves out the defaults only the Linux agent shows or uses (the
    // toleration, requests from limits): its flash budget.
    #[cfg(not(feature = "small"))]
    static_pod_toleration(pod)?;
    #[cfg(not(feature = "small"))]
    canonical_quantities(pod)?;
    let s = &mut pod.spec;
    s.restart_policy.get_or_insert(RestartPolicy::Always);
    s.termination_grace_period_seconds.get_or_insert(30);
    s.dns_policy.get_or_insert(DnsPolicy::ClusterFirst);
    let host_network = s.host_network;
    let pool = &pod.pool;
    let tm_path_needed = s
        .init_containers
        .iter()
        .chain(s.containers.iter())
        .any(|c| c.termination_message_path.is_none());
    for c in s.init_containers.iter_mut().chain(s.containers.iter_mut()) {
        if c.image_pull_policy.is_none() {
            c.image_pull_policy = Some(if image_is_latest(pool.get(c.image)) {
                PullPolicy::Always
            } else {
                PullPolicy::IfNotPresent
            });
            c.pull_policy_defaulted = true;
        }
        c.termination_message_policy
            .get_or_insert(TerminationMessagePolicy::File);
        // SetDefaults_Pod (pkg/apis/core/v1/defaults.go): a limit without a request is
        // also the request.
        #[cfg(not(feature = "small"))]
        requests_from_limits(&mut c.resources, pool)?;
        for p in c.ports.iter_mut() {
            p.protocol.get_or_insert(Protocol::TCP);
            // SetDefaults_Pod: with hostNetwork, an unset or zero hostPort is the port.
            if host_network && p.host_port.unwrap_or(0) == 0 {
                p.host_port = Some(p.container_port);
            }
        }
        for pr in [
            &mut c.liveness_probe,
            &mut c.readiness_probe,
            &mut c.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            // SetDefaults_Probe: unset or zero means the default (validation refused
            // negative values).
            for (v, d) in [
                (&mut pr.initial_delay_seconds, 0),
                (&mut pr.timeout_seconds, 1),
                (&mut pr.period_seconds, 10),
                (&mut pr.success_threshold, 1),
                (&mut pr.failure_threshold, 3),
            ] {
                if v.unwrap_or(0) == 0 {
                    *v = Some(d);
                }
            }
        }
        // SetDefaults_HTTPGetAction, for probes and hooks alike: path `/`, scheme HTTP.
        let hooks = [&mut c.lifecycle.post_start, &mut c.lifecycle.pre_stop];
        let probes = [
            &mut c.liveness_probe,
            &mut c.readiness_probe,
            &mut c.startup_probe,
        ];
        let actions = probes
            .into_iter()
            .flatten()
            .map(|p| &mut p.action)
            .chain(hooks.into_iter().flatten());
        for a in actions {
            if let Action::HttpGet { path, scheme, .. } = a {
                scheme.get_or_insert(Scheme::HTTP);
                if path.is_none_or(|p| p.is_empty()) {
                    *path = Some(slash);
                }
            }
        }
    }
    if tm_path_needed {
        let tm = pod
            .pool
            .add("/dev/termination-log")
            .map_err(|_| cap(Limit::StringBytes))?;
        for c in pod
            .spec
            .init_containers
            .iter_mut()
            .chain(pod.spec.containers.iter_mut())
        {
            c.termination_message_path.get_or_insert(tm);
        }
    }
    let uid_text = heapless::String::<128>::try_from(pod.pool.get(pod.uid.unwrap_or_default()))
        .unwrap_or_default();
    set_annotation(pod, "kubernetes.io/config.source", "file")?;
    set_annotation(pod, "kubernetes.io/config.hash", &uid_text)?;
    set_annotation(pod, "kubernetes.io/config.seen", ctx.seen)?;
    Ok(uid)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;

    /// A name longer than the suffix buffer (possible only when validation was skipped) is
    /// reported at `metadata.name`, not cut to fit.
    #[test]
    fn an_unvalidated_overlong_name_is_an_error_not_a_truncation() {
        let ctx = Context {
            node: "node1",
            path: "/etc/kubernetes/manifests/x.yaml",
            seen: "2026-01-01T00:00:00Z",
        };
        let mut pod = Box::<Pod>::default();
        let long = "a".repeat(300);
        pod.name = pod.pool.add(&long).unwrap();
        let e = apply(&mut pod, &ctx).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid(Invalid::SuffixedNameTooLong));
        assert_eq!(e.path, FieldPath::ROOT.field(F::Metadata).field(F::Name));

        // A name that fits is suffixed whole.
        let mut pod = Box::<Pod>::default();
        pod.name = pod.pool.add(&long[..240]).unwrap();
        apply(&mut pod, &ctx).unwrap();
        assert_eq!(
            pod.pool.get(pod.name),
            std::format!("{}-node1", &long[..240])
        );
    }
    /// SPEC 2.3a needs to know a defaulted `Always` from a written one: defaulting marks
    /// the policies it fills in; the mark survives the slot's encoding and changes no
    /// digest (a UID or container digest is the same as before the mark existed).
    #[test]
    fn a_defaulted_pull_policy_is_marked_kept_and_left_out_of_digests() {
        let ctx = Context {
            node: "node1",
            path: "/etc/kubernetes/manifests/x.yaml",
            seen: "",
        };
        let prepared = |yaml: &str| {
            let mut pod = Box::<Pod>::default();
            let mut scratch = Box::<Pool>::default();
            let p = crate::manifest::prepare(
                yaml.as_bytes(),
                &ctx,
                &mut pod,
                &mut scratch,
                &mut |_| {},
                &mut |_| {},
            )
            .unwrap();
            (pod, p)
        };
        let doc = |policy: &str| {
            std::format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: a\n    image: busybox\n{policy}  - name: b\n    image: busybox:1.36\n"
            )
        };
        let (defaulted, _) = prepared(&doc(""));
        let (written, _) = prepared(&doc("    imagePullPolicy: Always\n"));
        let c = |p: &Pod, i: usize| p.spec.containers[i].clone();
        assert_eq!(c(&defaulted, 0).image_pull_policy, Some(PullPolicy::Always));
        assert!(c(&defaulted, 0).pull_policy_defaulted);
        assert_eq!(c(&written, 0).image_pull_policy, Some(PullPolicy::Always));
        assert!(!c(&written, 0).pull_policy_defaulted);
        assert_eq!(
            c(&defaulted, 1).image_pull_policy,
            Some(PullPolicy::IfNotPresent)
        );
        assert!(c(&defaulted, 1).pull_policy_defaulted);

        // Kept through the slot's encoding.
        let mut buf = std::vec![0u8; 4096];
        let n = defaulted.encode_postcard_into(&mut buf).unwrap();
        let mut back = Box::<Pod>::default();
        assert!(back.decode_postcard(&buf[..n]));
        assert!(back.spec.containers[0].pull_policy_defaulted);

        // Out of digests: the defaulted pod hashes as the same pod without the mark.
        let input = |p: &Pod| {
            let mut v = std::vec::Vec::new();
            p.encode_for_digest(&mut |b| {
                v.extend_from_slice(b);
                true
            });
            v
        };
        let mut unmarked = defaulted.clone();
        for c in unmarked.spec.containers.iter_mut() {
            c.pull_policy_defaulted = false;
        }
        assert_eq!(input(&defaulted), input(&unmarked));
        assert_ne!(input(&defaulted).len(), n);
    }
}
