//! Mirror pods: each static pod's read-only copy in the API server.
//!
//! This module deals with what the kubelet's mirror client and status manager do for
//! static pods (SPEC 7.1, 7.2), from the agent's pod snapshots:
//!
//! - the mirror is the static pod as keel decoded and defaulted it (name `<name>-<node>`,
//!   namespace, labels, annotations, spec with `nodeName`), plus the annotation
//!   `kubernetes.io/config.mirror: <config.hash>`, an owner reference to the Node
//!   (`controller: true`), and the toleration of every `NoExecute` taint the kubelet adds
//!   to file pods;
//! - its status (phase, conditions, container statuses with states, restart counts,
//!   readiness, host and pod IPs, start times) is written with a merge patch of the
//!   `status` subresource whenever it changes, carrying the mirror's UID so a patch never
//!   lands on a newer mirror of the same name;
//! - a mirror being deleted (deletionTimestamp set, as `kubectl delete` leaves a pod bound
//!   to a node) or whose `config.mirror` is not the static pod's hash is deleted with a UID
//!   precondition and grace period 0, then created again; the containers are untouched;
//! - a mirror whose static pod is gone from the snapshot (so the pod has terminated: a
//!   terminating pod stays in the snapshot until it is removed) is deleted, once it has
//!   been absent for [`ORPHAN_GRACE`] (the agent's first snapshots may not hold every
//!   file's pod yet).
//!
//! No mirror is created for a pod that is terminating, as the kubelet does. The mirrors on
//! this node are re-listed (`fieldSelector=spec.nodeName=<node>`, the only pod list the
//! Node authorizer allows a node) every relist period and after any surprise.

use super::api::{Api, ApiError};
use crate::wire::{Clock, PodInfo};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The annotation naming the static pod a mirror stands for.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// How long a mirror's pod must be missing from the snapshots before the mirror goes.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// A mirror pod as the API server has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The server's UID.
    pub uid: String,
    /// Its `config.mirror` annotation.
    pub hash: String,
    /// deletionTimestamp is set.
    pub deleting: bool,
}

impl Observed {
    fn of(pod: &Value) -> Option<(String, Observed)> {
        let m = &pod["metadata"];
        let hash = m["annotations"][CONFIG_MIRROR].as_str()?.to_string();
        let key = format!("{}/{}", m["namespace"].as_str()?, m["name"].as_str()?);
        Some((
            key,
            Observed {
                uid: m["uid"].as_str().unwrap_or_default().to_string(),
                hash,
                deleting: !m["deletionTimestamp"].is_null(),
            },
        ))
    }
}

/// The mirror of static pod `p` on node `node` (UID `node_uid`).
pub fn mirror_object(p: &PodInfo, node: &str, node_uid: &str) -> Value {
    let mut pod: Value = serde_json::from_slice(p.pod_json.as_bytes())
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    if !pod["metadata"].is_object() {
        pod["metadata"] = json!({});
    }
    let meta = &mut pod["metadata"];
    meta["name"] = json!(p.name);
    meta["namespace"] = json!(p.namespace);
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][CONFIG_MIRROR] = json!(p.uid);
    meta["ownerReferences"] = json!([{
        "apiVersion": "v1",
        "kind": "Node",
        "name": node,
        "uid": node_uid,
        "controller": true,
    }]);
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    let spec = &mut pod["spec"];
    spec["nodeName"] = json!(node);
    // The kubelet's applyDefaults gives every file pod this toleration, so the node
    // lifecycle controller's NoExecute taints never evict its mirror.
    let tolerate_all = json!({ "operator": "Exists", "effect": "NoExecute" });
    let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    if !tolerations.contains(&tolerate_all) {
        tolerations.push(tolerate_all);
    }
    spec["tolerations"] = Value::Array(tolerations);
    pod
}

/// The mirror's `status` for static pod `p`: keel's pod status (as `keel pods -o json`
/// shows it, `podIP`/`podIPs` from the pod's CNI network included) plus `hostIP` and, for
/// a host-network pod, `podIP` (the node's address).
/// Every key keel manages is present, null when unknown, so a merge patch also clears it.
pub fn mirror_status(p: &PodInfo, clock: Clock, host_ip: &str) -> Value {
    let mut st = crate::podstatus::status_json(p, clock);
    let host_network = serde_json::from_slice::<Value>(p.pod_json.as_bytes())
        .ok()
        .is_some_and(|v| v["spec"]["hostNetwork"] == json!(true));
    st["hostIP"] = json!(host_ip);
    st["hostIPs"] = json!([{ "ip": host_ip }]);
    if host_network {
        st["podIP"] = json!(host_ip);
        st["podIPs"] = json!([{ "ip": host_ip }]);
    } else if p.pod_ips.is_empty() {
        st["podIP"] = Value::Null;
        st["podIPs"] = Value::Null;
    }
    for k in ["message", "initContainerStatuses"] {
        if st.get(k).is_none() {
            st[k] = Value::Null;
        }
    }
    st
}

/// Where one static pod's mirror stands, for `keel pods`.
pub type States = std::sync::Arc<std::sync::Mutex<BTreeMap<String, String>>>;

/// The mirror side of the cluster thread: what the server has, what was last written.
#[derive(Debug)]
pub struct Mirrors {
    node: String,
    host_ip: String,
    clock: Clock,
    relist_period: Duration,
    cache: HashMap<String, Observed>,
    listed_at: Option<Instant>,
    /// Last status written, by mirror UID.
    sent: HashMap<String, Value>,
    /// Mirrors whose pod is missing, since when.
    absent_since: HashMap<String, Instant>,
    states: States,
}

fn pod_path(key: &str) -> String {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    format!("/api/v1/namespaces/{ns}/pods/{name}")
}

fn delete_options(uid: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": { "uid": uid },
    })
}

impl Mirrors {
    /// Mirrors of node `node` (address `host_ip`), timing from `clock`.
    pub fn new(
        node: &str,
        host_ip: &str,
        clock: Clock,
        relist_period: Duration,
        states: States,
    ) -> Mirrors {
        Mirrors {
            node: node.to_string(),
            host_ip: host_ip.to_string(),
            clock,
            relist_period,
            cache: HashMap::new(),
            listed_at: None,
            sent: HashMap::new(),
            absent_since: HashMap::new(),
            states,
        }
    }

    fn set_state(&self, key: &str, s: String) {
        if let Ok(mut m) = self.states.lock() {
            m.insert(key.to_string(), s);
        }
    }

    fn list(&mut self, api: &Api) -> Result<(), ApiError> {
        let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", self.node);
        let v = api.get(&path)?;
        self.cache = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Observed::of)
            .collect();
        self.listed_at = Some(Instant::now());
        let live: std::collections::HashSet<&str> =
            self.cache.values().map(|o| o.uid.as_str()).collect();
        self.sent.retain(|uid, _| live.contains(uid.as_str()));
        Ok(())
    }

    /// Forces a re-list at the next sync.
    pub fn invalidate(&mut self) {
        self.listed_at = None;
    }

    /// Brings the server's mirrors in line with `pods` (the agent's snapshot); the Node's
    /// UID is `node_uid`. Errors on one mirror do not stop the others; the first error is
    /// returned (the caller backs off). A failed list returns at once.
    pub fn sync(&mut self, api: &Api, pods: &[PodInfo], node_uid: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        if self
            .listed_at
            .is_none_or(|t| now.duration_since(t) >= self.relist_period)
        {
            if let Err(e) = self.list(api) {
                let msg = format!("waiting: API server: {e}");
                for p in pods {
                    self.set_state(&format!("{}/{}", p.namespace, p.name), msg.clone());
                }
                return Err(e);
            }
        }
        // One pod per full name: a terminating instance yields to a live one.
        let mut desired: BTreeMap<String, &PodInfo> = BTreeMap::new();
        for p in pods {
            let key = format!("{}/{}", p.namespace, p.name);
            match desired.get(&key) {
                Some(q) if q.terminating.is_none() => {}
                _ => {
                    desired.insert(key, p);
                }
            }
        }
        let mut first_err = None;
        for (key, p) in &desired {
            self.absent_since.remove(key);
            match self.sync_one(api, key, p, node_uid) {
                Ok(state) => self.set_state(key, state),
                Err(e) => {
                    self.set_state(key, format!("error: {e}"));
                    if e.is_not_found() || e.is_conflict() {
                        self.invalidate();
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        // Mirrors whose static pod has terminated and gone.
        let orphans: Vec<String> = self
            .cache
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for key in orphans {
            let since = *self.absent_since.entry(key.clone()).or_insert(now);
            if now.duration_since(since) < ORPHAN_GRACE {
                continue;
            }
            let uid = self.cache[&key].uid.clone();
            match api.delete(&pod_path(&key), &delete_options(&uid)) {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            }
            crate::agent::log(
                crate::agent::Level::Info,
                &key,
                &format!("mirror pod deleted (uid {uid}): its static pod is gone"),
            );
            self.cache.remove(&key);
            self.sent.remove(&uid);
            self.absent_since.remove(&key);
        }
        if let Ok(mut m) = self.states.lock() {
            m.retain(|k, _| desired.contains_key(k));
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Syncs one static pod's mirror; its state line for `keel pods`.
    fn sync_one(
        &mut self,
        api: &Api,
        key: &str,
        p: &PodInfo,
        node_uid: &str,
    ) -> Result<String, ApiError> {
        if let Some(o) = self.cache.get(key).cloned() {
            if o.deleting || o.hash != p.uid {
                match api.delete(&pod_path(key), &delete_options(&o.uid)) {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() || e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
                let why = if o.deleting {
                    "it was deleted through the API"
                } else {
                    "its config.mirror is not the static pod's hash"
                };
                crate::agent::log(
                    crate::agent::Level::Info,
                    key,
                    &format!(
                        "mirror pod deleted (uid {}) to be created again: {why}",
                        o.uid
                    ),
                );
                self.cache.remove(key);
                self.sent.remove(&o.uid);
            }
        }
        if !self.cache.contains_key(key) {
            if p.terminating.is_some() {
                return Ok("no mirror (the pod is terminating)".into());
            }
            if node_uid.is_empty() {
                return Ok("waiting: the Node is not registered yet".into());
            }
            let obj = mirror_object(p, &self.node, node_uid);
            let created = api.create(&format!("/api/v1/namespaces/{}/pods", p.namespace), &obj)?;
            let (_, o) = Observed::of(&created).ok_or_else(|| ApiError::Transport {
                method: "POST",
                path: pod_path(key),
                message: "the created pod has no config.mirror annotation".into(),
            })?;
            crate::agent::log(
                crate::agent::Level::Info,
                key,
                &format!("mirror pod created (uid {})", o.uid),
            );
            self.cache.insert(key.to_string(), o);
        }
        let uid = self.cache[key].uid.clone();
        let status = mirror_status(p, self.clock, &self.host_ip);
        if self.sent.get(&uid) != Some(&status) {
            let patch = json!({ "metadata": { "uid": uid }, "status": status });
            api.merge_patch(&format!("{}/status", pod_path(key)), &patch)?;
            self.sent.insert(uid.clone(), status);
        }
        Ok(format!("synced (uid {uid})"))
    }
}
