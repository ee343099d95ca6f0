//! A strict in-process Kubernetes API server double for the cluster tests.
//!
//! This module deals with standing in for a v1.36 kube-apiserver with the Node authorizer
//! and the NodeRestriction admission plugin on, as far as a static-pod node uses it:
//! HTTPS on 127.0.0.1 with a CA the test makes (openssl CLI), client-certificate
//! authentication (`CN=system:node:<name>, O=system:nodes`), and these rules, each as the
//! real server answers (a `Status` object with its code and reason):
//!
//! - a node may read and write only its own Node (taints only when it creates it; a
//!   change of taints later is Forbidden), its own Node status (the `status`
//!   subresource; a main-resource update keeps the old status), and its own Lease in
//!   `kube-node-lease` (`renewTime` must be a MicroTime: six fractional digits);
//! - a node may create only mirror pods (the `kubernetes.io/config.mirror` annotation)
//!   bound to itself (`spec.nodeName`), owned by its Node alone (controller, UID
//!   matching), with no service account or API volume; anything else is Forbidden; the
//!   server assigns the UID, resourceVersion, creation time and a Pending status;
//! - a node may list pods only with `fieldSelector=spec.nodeName=<itself>`, read, delete
//!   and write the status of pods bound to itself only, and never update a pod's spec;
//! - a pod bound to a node deleted with a grace period above 0 stays Terminating
//!   (deletionTimestamp set) until deleted again with grace period 0; a delete whose UID
//!   precondition does not match, an update with a stale resourceVersion, or a status
//!   patch naming another UID is a 409 Conflict;
//! - pod status updates are validated (container statuses must name the spec's
//!   containers, IPs must parse, a terminal phase never goes back, times are RFC 3339).
//!
//! The test drives the server directly: [`ApiServer::set_down`] makes it drop every
//! connection (an API server that is down), [`ApiServer::fail_next`] makes the next
//! matching request fail with a given code (a 409 or a 500), and the admin methods
//! ([`ApiServer::delete_pod`], [`ApiServer::pod`], …) act as `kubectl` would.

use crate::registry::openssl;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Namespaces that exist (a pod in another is 404, as on a fresh cluster).
const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// One request the server saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// The answer's code.
    pub code: u16,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, Value>,
    rv: u64,
    uids: u64,
    faults: Vec<(String, String, u16)>,
    seen: Vec<Seen>,
}

/// Client certificates (DER) and the user each one authenticates.
type Users = Arc<Mutex<Vec<(Vec<u8>, String)>>>;

/// The server: its address, credentials for the test, and its state.
#[derive(Debug)]
pub struct ApiServer {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA that signed the server's and the clients' certificates (PEM).
    pub ca: PathBuf,
    dir: PathBuf,
    users: Users,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("certificate")
        .to_vec()
}

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

fn forbidden(message: String) -> (u16, Value) {
    status(403, "Forbidden", message)
}

fn not_found(resource: &str, name: &str) -> (u16, Value) {
    status(404, "NotFound", format!("{resource} \"{name}\" not found"))
}

fn conflict(resource: &str, name: &str) -> (u16, Value) {
    status(
        409,
        "Conflict",
        format!("Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
    )
}

fn invalid(kind: &str, name: &str, why: String) -> (u16, Value) {
    status(
        422,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {why}"),
    )
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn now_rfc3339() -> String {
    keel_linux::cli::client::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    )
}

/// `2026-01-02T03:04:05Z` or with a fraction (metav1.Time accepts both).
fn is_time(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s.ends_with('Z')
}

/// MicroTime: exactly six fractional digits.
fn is_micro_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| is_time(v) && s.len() == 27 && s.as_bytes()[19] == b'.')
}

impl ApiServer {
    /// Starts the server with a fresh CA in `dir`.
    pub fn start(dir: &Path) -> ApiServer {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, crt, key) = crate::registry::make_tls(dir);
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(CertificateDer::pem_file_iter(&ca).unwrap().flatten());
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let server = ApiServer {
            url,
            ca,
            dir: dir.to_path_buf(),
            users: Arc::default(),
            state: Arc::default(),
            down: Arc::default(),
        };
        let (users, state, down) = (
            server.users.clone(),
            server.state.clone(),
            server.down.clone(),
        );
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                if down.load(Ordering::SeqCst) {
                    drop(s);
                    continue;
                }
                let (cfg, users, state, down) =
                    (cfg.clone(), users.clone(), state.clone(), down.clone());
                std::thread::spawn(move || serve(cfg, s, &users, &state, &down));
            }
        });
        server
    }

    /// A kubeconfig for node `node` (a client certificate signed by the CA, inline data
    /// when `inline`, else files beside the kubeconfig named relatively).
    pub fn node_kubeconfig(&self, node: &str, inline: bool) -> PathBuf {
        let d = &self.dir;
        let key = format!("{node}.key");
        let csr = format!("{node}.csr");
        let crt = format!("{node}.crt");
        let subj = format!("/O=system:nodes/CN=system:node:{node}");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &subj,
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        std::fs::write(
            d.join("client.cnf"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        crate::registry::sign_with_ca(d, &csr, &crt, "client.cnf");
        self.users
            .lock()
            .unwrap()
            .push((pem_der(&d.join(&crt)), format!("system:node:{node}")));
        use base64::Engine;
        let b64 = |p: &str| {
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join(p)).unwrap())
        };
        let (cluster_ca, user) = if inline {
            (
                format!("certificate-authority-data: {}", b64("ca.crt")),
                format!(
                    "client-certificate-data: {}\n    client-key-data: {}",
                    b64(&crt),
                    b64(&key)
                ),
            )
        } else {
            (
                "certificate-authority: ca.crt".to_string(),
                format!("client-certificate: {crt}\n    client-key: {key}"),
            )
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    {cluster_ca}\nusers:\n- name: system:node:{node}\n  user:\n    {user}\ncontexts:\n- name: ctx\n  context:\n    cluster: test\n    user: system:node:{node}\ncurrent-context: ctx\n",
            self.url
        );
        let path = d.join(format!("{node}.kubeconfig"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Drops every connection while `down` (an API server that is not there).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The next request with `method` whose path contains `path_part` fails with `code`
    /// (409 Conflict or 500 InternalError), before it is acted on.
    pub fn fail_next(&self, method: &str, path_part: &str, code: u16) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push((method.into(), path_part.into(), code));
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// An object by key (`nodes/N`, `leases/NS/N`, `pods/NS/N`).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(key).cloned()
    }

    /// A pod.
    pub fn pod(&self, ns: &str, name: &str) -> Option<Value> {
        self.get(&format!("pods/{ns}/{name}"))
    }

    /// Every pod.
    pub fn pods(&self) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        st.objects
            .iter()
            .filter(|(k, _)| k.starts_with("pods/"))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// As `kubectl delete pod` (grace `None`: the pod's own period) by an admin.
    pub fn delete_pod(&self, ns: &str, name: &str, grace: Option<i64>) {
        let mut st = self.state.lock().unwrap();
        let opts = match grace {
            Some(g) => json!({ "gracePeriodSeconds": g }),
            None => json!({}),
        };
        let (code, body) = delete_pod(&mut st, None, ns, name, &opts);
        assert!(code < 300, "admin delete {ns}/{name}: {body}");
    }

    /// Sets an annotation of a pod, as `kubectl annotate --overwrite` by an admin.
    pub fn annotate_pod(&self, ns: &str, name: &str, key: &str, value: &str) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv.to_string();
        let pod = st
            .objects
            .get_mut(&format!("pods/{ns}/{name}"))
            .expect("pod");
        pod["metadata"]["annotations"][key] = json!(value);
        pod["metadata"]["resourceVersion"] = json!(rv);
    }
}

fn serve(
    cfg: Arc<rustls::ServerConfig>,
    s: TcpStream,
    users: &Mutex<Vec<(Vec<u8>, String)>>,
    state: &Mutex<State>,
    down: &AtomicBool,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, s);
    loop {
        let mut r = BufReader::new(&mut tls);
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut len = 0usize;
        let mut auth = None;
        let mut ctype = String::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                match k.as_str() {
                    "content-length" => len = v.parse().unwrap_or(0),
                    "authorization" => auth = Some(v),
                    "content-type" => ctype = v,
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        drop(r);
        if down.load(Ordering::SeqCst) {
            return;
        }
        let user = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| {
                users
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(der, _)| der.as_slice() == c.as_ref())
                    .map(|(_, u)| u.clone())
            });
        let (code, answer) = match user {
            None if auth.is_none() => status(401, "Unauthorized", "Unauthorized".into()),
            None => status(401, "Unauthorized", "Unauthorized".into()),
            Some(u) => {
                let mut st = state.lock().unwrap();
                let fault = st
                    .faults
                    .iter()
                    .position(|(m, p, _)| *m == method && path.contains(p.as_str()));
                let r = match fault {
                    Some(i) => {
                        let (_, _, code) = st.faults.remove(i);
                        match code {
                            409 => conflict("objects", "injected"),
                            c => status(
                                c,
                                "InternalError",
                                "Internal error occurred: injected".into(),
                            ),
                        }
                    }
                    None => {
                        let body: Value = if body.is_empty() {
                            Value::Null
                        } else {
                            match serde_json::from_slice(&body) {
                                Ok(v) => v,
                                Err(e) => {
                                    let r = status(400, "BadRequest", format!("body: {e}"));
                                    st.seen.push(Seen {
                                        method: method.clone(),
                                        path: path.clone(),
                                        code: 400,
                                    });
                                    drop(st);
                                    if respond(&mut tls, r).is_err() {
                                        return;
                                    }
                                    continue;
                                }
                            }
                        };
                        route(&mut st, &u, &method, &path, &ctype, &body)
                    }
                };
                st.seen.push(Seen {
                    method: method.clone(),
                    path: path.clone(),
                    code: r.0,
                });
                r
            }
        };
        if respond(&mut tls, (code, answer)).is_err() {
            return;
        }
    }
}

fn respond(tls: &mut impl Write, (code, body): (u16, Value)) -> std::io::Result<()> {
    let text = body.to_string();
    write!(
        tls,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )?;
    tls.flush()
}

/// The node a user is (`system:node:N`), if a node.
fn node_of(user: &str) -> Option<&str> {
    user.strip_prefix("system:node:")
}

fn split_query(path: &str) -> (&str, BTreeMap<String, String>) {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let q = q
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3D", "=").replace("%3d", "=")))
        .collect();
    (p, q)
}

fn stamp_new(st: &mut State, obj: &mut Value) {
    st.rv += 1;
    st.uids += 1;
    let m = &mut obj["metadata"];
    m["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", st.uids));
    m["resourceVersion"] = json!(st.rv.to_string());
    m["creationTimestamp"] = json!(now_rfc3339());
}

/// An update with a resourceVersion must name the stored one.
fn rv_matches(stored: &Value, new: &Value) -> bool {
    match new["metadata"]["resourceVersion"].as_str() {
        None | Some("") => true,
        Some(rv) => stored["metadata"]["resourceVersion"].as_str() == Some(rv),
    }
}

fn route(
    st: &mut State,
    user: &str,
    method: &str,
    full: &str,
    ctype: &str,
    body: &Value,
) -> (u16, Value) {
    let (path, query) = split_query(full);
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let me = node_of(user);
    match (method, seg.as_slice()) {
        ("POST", ["api", "v1", "nodes"]) => {
            let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
            if me.is_some_and(|n| n != name) {
                return forbidden(format!("nodes \"{name}\" is forbidden: node \"{}\" is not allowed to modify node \"{name}\"", me.unwrap_or("")));
            }
            let key = format!("nodes/{name}");
            if st.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("nodes \"{name}\" already exists"),
                );
            }
            let mut n = body.clone();
            stamp_new(st, &mut n);
            st.objects.insert(key, n.clone());
            (201, n)
        }
        (m, ["api", "v1", "nodes", name, rest @ ..]) => {
            if me.is_some_and(|n| n != *name) {
                return forbidden(format!("nodes \"{name}\" is forbidden: User \"{user}\" cannot {} resource \"nodes\" in API group \"\" at the cluster scope: node '{}' cannot read '{name}', only its own Node object", m.to_lowercase(), me.unwrap_or("")));
            }
            let key = format!("nodes/{name}");
            let Some(stored) = st.objects.get(&key).cloned() else {
                return not_found("nodes", name);
            };
            match (m, rest) {
                ("GET", []) => (200, stored),
                ("PUT", []) => {
                    if !rv_matches(&stored, body) {
                        return conflict("nodes", name);
                    }
                    if me.is_some() && stored["spec"]["taints"] != body["spec"]["taints"] {
                        return forbidden(format!("nodes \"{name}\" is forbidden: node \"{name}\" is not allowed to modify taints"));
                    }
                    let mut n = body.clone();
                    n["status"] = stored["status"].clone();
                    n["metadata"]["uid"] = stored["metadata"]["uid"].clone();
                    st.rv += 1;
                    n["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                    st.objects.insert(key, n.clone());
                    (200, n)
                }
                ("PUT", ["status"]) | ("PATCH", ["status"]) => {
                    let mut n = stored.clone();
                    if m == "PUT" {
                        if !rv_matches(&stored, body) {
                            return conflict("nodes", name);
                        }
                        n["status"] = body["status"].clone();
                    } else {
                        let mut patched = stored.clone();
                        merge_patch(&mut patched, body);
                        n["status"] = patched["status"].clone();
                    }
                    for c in n["status"]["conditions"].as_array().into_iter().flatten() {
                        for t in ["lastHeartbeatTime", "lastTransitionTime"] {
                            if !c[t].is_null() && !is_time(&c[t]) {
                                return invalid(
                                    "Node",
                                    name,
                                    format!("status.conditions.{t}: not a time"),
                                );
                            }
                        }
                    }
                    st.rv += 1;
                    n["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                    st.objects.insert(key, n.clone());
                    (200, n)
                }
                _ => status(405, "MethodNotAllowed", format!("{m} is not supported")),
            }
        }
        ("GET", ["api", "v1", "pods"]) | ("GET", ["api", "v1", "namespaces", _, "pods"]) => {
            let sel = query.get("fieldSelector").cloned().unwrap_or_default();
            let bound = sel.strip_prefix("spec.nodeName=").map(str::to_string);
            if let Some(n) = me {
                if bound.as_deref() != Some(n) {
                    return forbidden(format!("pods is forbidden: User \"{user}\" cannot list resource \"pods\" in API group \"\" at the cluster scope: can only list/watch pods with spec.nodeName field selector"));
                }
            }
            let ns = match seg.as_slice() {
                [_, _, "namespaces", ns, _] => Some(ns.to_string()),
                _ => None,
            };
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(k, _)| k.starts_with("pods/"))
                .map(|(_, v)| v)
                .filter(|v| bound.as_deref().is_none_or(|b| v["spec"]["nodeName"] == b))
                .filter(|v| {
                    ns.as_deref()
                        .is_none_or(|n| v["metadata"]["namespace"] == n)
                })
                .cloned()
                .collect();
            (
                200,
                json!({ "kind": "PodList", "apiVersion": "v1", "metadata": { "resourceVersion": st.rv.to_string() }, "items": items }),
            )
        }
        ("POST", ["api", "v1", "namespaces", ns, "pods"]) => create_pod(st, me, ns, body),
        (m, ["api", "v1", "namespaces", ns, "pods", name, rest @ ..]) => {
            let key = format!("pods/{ns}/{name}");
            let Some(stored) = st.objects.get(&key).cloned() else {
                return not_found("pods", name);
            };
            if let Some(n) = me {
                if stored["spec"]["nodeName"] != n {
                    return forbidden(format!("pods \"{name}\" is forbidden: User \"{user}\" cannot {} resource \"pods\" in API group \"\" in the namespace \"{ns}\": no relationship found between node '{n}' and this object", m.to_lowercase()));
                }
            }
            match (m, rest) {
                ("GET", []) => (200, stored),
                ("DELETE", []) => delete_pod(st, me, ns, name, body),
                ("PUT", []) if me.is_some() => forbidden(format!("pods \"{name}\" is forbidden: User \"{user}\" cannot update resource \"pods\" in API group \"\" in the namespace \"{ns}\"")),
                ("PATCH", ["status"]) | ("PUT", ["status"]) => {
                    let mut result = stored.clone();
                    if m == "PATCH" {
                        if ctype != "application/merge-patch+json" {
                            return status(415, "UnsupportedMediaType", format!("the double supports merge patches only, not {ctype}"));
                        }
                        merge_patch(&mut result, body);
                    } else {
                        if !rv_matches(&stored, body) {
                            return conflict("pods", name);
                        }
                        result = body.clone();
                    }
                    let (had, got) = (&stored["metadata"]["uid"], &result["metadata"]["uid"]);
                    if had != got {
                        return status(409, "Conflict", format!("Operation cannot be fulfilled on pods \"{name}\": Precondition failed: UID in precondition: {}, UID in object meta: {}", got.as_str().unwrap_or(""), had.as_str().unwrap_or("")));
                    }
                    if let Err(why) = validate_pod_status(&stored, &result["status"]) {
                        return invalid("Pod", name, why);
                    }
                    let mut p = stored.clone();
                    p["status"] = result["status"].clone();
                    st.rv += 1;
                    p["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                    st.objects.insert(key, p.clone());
                    (200, p)
                }
                _ => status(405, "MethodNotAllowed", format!("{m} is not supported")),
            }
        }
        (m, ["apis", "coordination.k8s.io", "v1", "namespaces", ns, "leases", rest @ ..]) => {
            let name = match (m, rest) {
                ("POST", []) => body["metadata"]["name"].as_str().unwrap_or("").to_string(),
                (_, [n]) => n.to_string(),
                _ => return status(405, "MethodNotAllowed", format!("{m} is not supported")),
            };
            if let Some(n) = me {
                if *ns != "kube-node-lease" || name != n {
                    return forbidden(format!("leases.coordination.k8s.io \"{name}\" is forbidden: can only access node lease with the same name as the requesting node"));
                }
            }
            let key = format!("leases/{ns}/{name}");
            let check = |l: &Value| -> Result<(), (u16, Value)> {
                let rt = &l["spec"]["renewTime"];
                if !rt.is_null() && !is_micro_time(rt) {
                    return Err(invalid(
                        "Lease",
                        &name,
                        format!("spec.renewTime: {rt} is not a MicroTime"),
                    ));
                }
                Ok(())
            };
            match m {
                "POST" => {
                    if let Err(e) = check(body) {
                        return e;
                    }
                    if st.objects.contains_key(&key) {
                        return status(
                            409,
                            "AlreadyExists",
                            format!("leases.coordination.k8s.io \"{name}\" already exists"),
                        );
                    }
                    let mut l = body.clone();
                    l["metadata"]["namespace"] = json!(ns);
                    stamp_new(st, &mut l);
                    st.objects.insert(key, l.clone());
                    (201, l)
                }
                "GET" => match st.objects.get(&key) {
                    Some(l) => (200, l.clone()),
                    None => not_found("leases.coordination.k8s.io", &name),
                },
                "PUT" => {
                    let Some(stored) = st.objects.get(&key).cloned() else {
                        return not_found("leases.coordination.k8s.io", &name);
                    };
                    if !rv_matches(&stored, body) {
                        return conflict("leases.coordination.k8s.io", &name);
                    }
                    if let Err(e) = check(body) {
                        return e;
                    }
                    let mut l = body.clone();
                    l["metadata"]["uid"] = stored["metadata"]["uid"].clone();
                    st.rv += 1;
                    l["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                    st.objects.insert(key, l.clone());
                    (200, l)
                }
                _ => status(405, "MethodNotAllowed", format!("{m} is not supported")),
            }
        }
        _ => status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({method} {path})"),
        ),
    }
}

fn create_pod(st: &mut State, me: Option<&str>, ns: &str, body: &Value) -> (u16, Value) {
    let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !NAMESPACES.contains(&ns) {
        return not_found("namespaces", ns);
    }
    if body["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| n != ns)
    {
        return status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    if let Some(n) = me {
        let f = |why: String| forbidden(format!("pods \"{name}\" is forbidden: {why}"));
        if body["metadata"]["annotations"]["kubernetes.io/config.mirror"]
            .as_str()
            .is_none()
        {
            return f(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{n}\" can only create mirror pods"));
        }
        if body["spec"]["nodeName"] != n {
            return f(format!(
                "node \"{n}\" can only create pods with spec.nodeName set to itself"
            ));
        }
        let owners = body["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if owners.len() > 1 {
            return f(format!(
                "node \"{n}\" can only create pods with a single owner reference set to itself"
            ));
        }
        if let Some(o) = owners.first() {
            let node_uid = st
                .objects
                .get(&format!("nodes/{n}"))
                .map(|x| x["metadata"]["uid"].clone());
            if o["apiVersion"] != "v1" || o["kind"] != "Node" || o["name"] != n {
                return f(format!(
                    "node \"{n}\" can only create pods with an owner reference set to itself"
                ));
            }
            if o["controller"] != true {
                return f(format!("node \"{n}\" can only create pods with a controller owner reference set to itself"));
            }
            if o["blockOwnerDeletion"] == true {
                return f(format!(
                    "node \"{n}\" must not set blockOwnerDeletion on an owner reference"
                ));
            }
            if node_uid.as_ref() != Some(&o["uid"]) {
                return f(format!(
                    "node {n} UID mismatch: {} != {}",
                    o["uid"],
                    node_uid.unwrap_or(Value::Null)
                ));
            }
        }
        if body["spec"]["serviceAccountName"].is_string() {
            return f(format!(
                "node \"{n}\" can not create pods that reference a service account"
            ));
        }
        for v in body["spec"]["volumes"].as_array().into_iter().flatten() {
            for k in [
                "secret",
                "configMap",
                "persistentVolumeClaim",
                "projected",
                "csi",
            ] {
                if !v[k].is_null() {
                    return f(format!(
                        "node \"{n}\" can not create pods that reference {k} volumes"
                    ));
                }
            }
        }
    }
    if name.is_empty()
        || body["spec"]["containers"]
            .as_array()
            .is_none_or(|c| c.is_empty())
    {
        return invalid(
            "Pod",
            &name,
            "metadata.name and spec.containers are required".into(),
        );
    }
    let key = format!("pods/{ns}/{name}");
    if st.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("pods \"{name}\" already exists"),
        );
    }
    let mut p = body.clone();
    p["metadata"]["namespace"] = json!(ns);
    stamp_new(st, &mut p);
    p["status"] = json!({ "phase": "Pending", "qosClass": "BestEffort" });
    st.objects.insert(key, p.clone());
    (201, p)
}

fn delete_pod(
    st: &mut State,
    me: Option<&str>,
    ns: &str,
    name: &str,
    opts: &Value,
) -> (u16, Value) {
    let key = format!("pods/{ns}/{name}");
    let Some(stored) = st.objects.get(&key).cloned() else {
        return not_found("pods", name);
    };
    if let Some(n) = me {
        if stored["spec"]["nodeName"] != n {
            return forbidden(format!("pods \"{name}\" is forbidden: node \"{n}\" can only delete pods with spec.nodeName set to itself"));
        }
    }
    let want = &opts["preconditions"]["uid"];
    if want.is_string() && *want != stored["metadata"]["uid"] {
        return status(409, "Conflict", format!("Operation cannot be fulfilled on Pod \"{name}\": Precondition failed: UID in precondition: {}, UID in object meta: {}", want.as_str().unwrap_or(""), stored["metadata"]["uid"].as_str().unwrap_or("")));
    }
    let grace = opts["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| stored["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    let bound = stored["spec"]["nodeName"].is_string();
    if grace > 0 && bound {
        let mut p = stored.clone();
        if p["metadata"]["deletionTimestamp"].is_null() {
            p["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            p["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            st.rv += 1;
            p["metadata"]["resourceVersion"] = json!(st.rv.to_string());
            st.objects.insert(key, p.clone());
        }
        return (200, p);
    }
    st.objects.remove(&key);
    (200, stored)
}

fn validate_pod_status(pod: &Value, status: &Value) -> Result<(), String> {
    let phases = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];
    let phase = status["phase"].as_str().unwrap_or("");
    if !phases.contains(&phase) {
        return Err(format!("status.phase: Unsupported value: {phase:?}"));
    }
    let old = pod["status"]["phase"].as_str().unwrap_or("");
    if matches!(old, "Succeeded" | "Failed") && old != phase {
        return Err(format!(
            "status.phase: Forbidden: cannot transition from terminal phase {old} to {phase}"
        ));
    }
    for (list, spec) in [
        ("containerStatuses", "containers"),
        ("initContainerStatuses", "initContainers"),
    ] {
        let names: Vec<&Value> = pod["spec"][spec]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["name"])
            .collect();
        for (i, c) in status[list].as_array().into_iter().flatten().enumerate() {
            if !names.contains(&&c["name"]) {
                return Err(format!("status.{list}[{i}].name: Not found: {}", c["name"]));
            }
            let states: Vec<&String> = c["state"]
                .as_object()
                .map(Map::keys)
                .into_iter()
                .flatten()
                .collect();
            if states.len() > 1 {
                return Err(format!(
                    "status.{list}[{i}].state: may not specify more than 1 state"
                ));
            }
            for k in ["running", "terminated"] {
                for t in ["startedAt", "finishedAt"] {
                    let v = &c["state"][k][t];
                    if !v.is_null() && !is_time(v) {
                        return Err(format!("status.{list}[{i}].state.{k}.{t}: not a time"));
                    }
                }
            }
        }
    }
    let ip = &status["podIP"];
    if !ip.is_null() {
        if ip
            .as_str()
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            .is_none()
        {
            return Err(format!("status.podIP: Invalid value: {ip}"));
        }
        if status["podIPs"][0]["ip"] != *ip {
            return Err("status.podIPs[0].ip: Invalid value: must match status.podIP".into());
        }
    }
    if !status["startTime"].is_null() && !is_time(&status["startTime"]) {
        return Err("status.startTime: not a time".into());
    }
    Ok(())
}
