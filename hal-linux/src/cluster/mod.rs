//! The Kubernetes API: keel's Node, its Lease and the mirror pods (SPEC 7).
//!
//! This module deals with everything keel tells an API server, given a kubeconfig
//! (`--kubeconfig`): it registers the Node ([`node`]), renews its Lease, writes the node
//! status, and keeps one mirror pod per static pod ([`mirror`]). It never stands in the
//! way of the static pods (SPEC 7.3): all of it runs on one thread of its own, fed with
//! the agent's pod snapshots (the same `Pods` answer `keel pods` gets, asked over the
//! agent's request channel), with its own backoff; an API server that is down, slow,
//! refusing or failing delays nothing but the mirrors. Where each mirror stands is shared
//! with the agent ([`mirror::States`]) for `keel pods -o wide` and `keel inspect`.
//!
//! The client is a small one over the ureq + rustls stack the registry client already
//! links ([`api`]), with serde_json values for the three kinds keel touches (Node, Lease,
//! Pod): the `kube` + `k8s-openapi` crates would add hyper, tower and tokio-rustls to the
//! static binary for the same few calls (docs/benchmarks.md has the figures).
//!
//! No watch: the node's pods are re-listed every few seconds (a node has few), and a
//! change in the agent's snapshot is acted on within [`Settings::sync_period`].
//!
//! A missing kubeconfig is waited for (kubeadm writes it before starting the kubelet, or
//! the kubelet's TLS bootstrap writes it). keel does not do the TLS bootstrap itself:
//! with `--bootstrap-kubeconfig` and no kubeconfig it says so and keeps waiting.

pub mod api;
pub mod kubeconfig;
pub mod mirror;
pub mod node;

use crate::agent::{log, Level};
use crate::wire::{Clock, PodInfo};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The key of keel's own registration taint.
pub const STATIC_ONLY_TAINT: &str = "keel.io/static-only";

/// A Node taint (`--register-with-taints`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: String,
}

impl Taint {
    /// keel's default: `keel.io/static-only:NoSchedule`, so the scheduler never places a
    /// pod keel would not run.
    pub fn static_only() -> Taint {
        Taint {
            key: STATIC_ONLY_TAINT.into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        }
    }

    fn to_json(&self) -> Value {
        let mut t = json!({ "key": self.key, "effect": self.effect });
        if !self.value.is_empty() {
            t["value"] = json!(self.value);
        }
        t
    }

    /// Parses `key[=value]:Effect[,…]` as the kubelet's `--register-with-taints`.
    pub fn parse_list(s: &str) -> Result<Vec<Taint>, String> {
        s.split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                let t = t.trim();
                let (kv, effect) = t
                    .rsplit_once(':')
                    .ok_or_else(|| format!("taint {t:?}: expected key[=value]:Effect"))?;
                if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                    return Err(format!(
                        "taint {t:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
                    ));
                }
                let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
                if key.is_empty() {
                    return Err(format!("taint {t:?}: empty key"));
                }
                Ok(Taint {
                    key: key.into(),
                    value: value.into(),
                    effect: effect.into(),
                })
            })
            .collect()
    }
}

/// How keel talks to the cluster (kubelet flags and KubeletConfiguration fields).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `--kubeconfig`.
    pub kubeconfig: PathBuf,
    /// `--bootstrap-kubeconfig` (TLS bootstrap is not done; see the module docs).
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// `--register-node` / `registerNode`: create the Node if it does not exist.
    pub register_node: bool,
    /// `--register-with-taints` / `registerWithTaints` (default keel's own).
    pub taints: Vec<Taint>,
    /// `--node-labels`.
    pub node_labels: Vec<(String, String)>,
    /// `--node-ip`.
    pub node_ip: Option<String>,
    /// `nodeStatusUpdateFrequency` (default 10 s).
    pub node_status_update_frequency: Duration,
    /// `nodeLeaseDurationSeconds` (default 40); renewed every quarter of it.
    pub lease_duration_secs: u32,
    /// How often the agent's pod snapshot is read (default 1 s).
    pub sync_period: Duration,
    /// How often the node's pods are re-listed (default 5 s).
    pub relist_period: Duration,
    /// Longest wait after failures (default 10 s: a returning server is seen within it).
    pub max_backoff: Duration,
}

impl Settings {
    /// The kubelet's defaults for kubeconfig `path`.
    pub fn new(path: PathBuf) -> Settings {
        Settings {
            kubeconfig: path,
            bootstrap_kubeconfig: None,
            register_node: true,
            taints: vec![Taint::static_only()],
            node_labels: Vec::new(),
            node_ip: None,
            node_status_update_frequency: Duration::from_secs(10),
            lease_duration_secs: 40,
            sync_period: Duration::from_secs(1),
            relist_period: Duration::from_secs(5),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// The Lease renew interval: a quarter of its duration, as the kubelet's.
    pub fn renew_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.lease_duration_secs)) / 4
    }
}

/// Failures in a row and when to try again (1 s doubling to the settings' maximum).
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    next: Option<Instant>,
}

impl Backoff {
    fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    fn fail(&mut self, now: Instant, max: Duration) {
        let d = Duration::from_secs(1 << self.failures.min(10)).min(max);
        self.failures += 1;
        self.next = Some(now + d);
    }

    fn ok(&mut self) {
        self.failures = 0;
        self.next = None;
    }
}

/// Where the agent's pod snapshots come from: `None` when the agent has gone (the thread
/// ends).
pub type Snapshot = Box<dyn FnMut() -> Option<Vec<PodInfo>> + Send>;

/// Logs `msg` when it differs from the last one logged under `last`.
fn log_change(last: &mut Option<String>, level: Level, msg: Option<String>) {
    if *last != msg {
        if let Some(m) = &msg {
            log(level, "", m);
        }
        *last = msg;
    }
}

/// The cluster thread's state.
struct Runner {
    settings: Settings,
    machine: node::Machine,
    api: Option<api::Api>,
    node_uid: String,
    lease: node::Lease,
    mirrors: mirror::Mirrors,
    status_due: Option<Instant>,
    lease_due: Option<Instant>,
    connect: Backoff,
    node_backoff: Backoff,
    lease_backoff: Backoff,
    mirror_backoff: Backoff,
    last_config_error: Option<String>,
    last_node_error: Option<String>,
    last_lease_error: Option<String>,
    last_mirror_error: Option<String>,
}

impl Runner {
    /// After a 401 the credentials are read again (a rotated certificate or token) at the
    /// next connect.
    fn forget_credentials_on_401(&mut self, e: &api::ApiError) {
        if e.code() == Some(401) {
            self.api = None;
        }
    }

    fn connect(&mut self, now: Instant) {
        if self.api.is_some() || !self.connect.ready(now) {
            return;
        }
        let path = &self.settings.kubeconfig;
        let result = if !path.exists() {
            Err(match &self.settings.bootstrap_kubeconfig {
                Some(b) => format!(
                    "kubeconfig {} does not exist; keel does not do the kubelet's TLS bootstrap with --bootstrap-kubeconfig {} (no CSR is made): it waits for the kubeconfig to appear (kubeadm init writes it; on a joining node, make the node's client certificate and kubeconfig first)",
                    path.display(),
                    b.display()
                ),
                None => format!("kubeconfig {} does not exist; waiting for it", path.display()),
            })
        } else {
            kubeconfig::Kubeconfig::load(path).map_err(|e| e.to_string())
        };
        match result {
            Ok(kc) => {
                log(
                    Level::Info,
                    "",
                    &format!(
                        "cluster: API server {} (kubeconfig {}), node {}",
                        kc.server,
                        path.display(),
                        self.machine.node
                    ),
                );
                self.api = Some(api::Api::new(&kc));
                self.last_config_error = None;
                self.connect.ok();
            }
            Err(e) => {
                log_change(&mut self.last_config_error, Level::Error, Some(e));
                // Read again after max_backoff: a file being written settles by then.
                self.connect.next = Some(now + self.settings.max_backoff);
            }
        }
    }

    fn node(&mut self, now: Instant) {
        let Some(api) = &self.api else { return };
        if !self.node_backoff.ready(now) || self.status_due.is_some_and(|t| now < t) {
            return;
        }
        let stamp = crate::timefmt::rfc3339(unix_ms_now());
        let r = if self.node_uid.is_empty() {
            node::register(api, &self.machine, &self.settings, &stamp).and_then(|uid| {
                log(
                    Level::Info,
                    "",
                    &format!("cluster: node {} registered (uid {uid})", self.machine.node),
                );
                self.node_uid = uid;
                node::update_status(api, &self.machine, &stamp)
            })
        } else {
            node::update_status(api, &self.machine, &stamp)
        };
        match r {
            Ok(uid) => {
                if !uid.is_empty() && uid != self.node_uid {
                    self.node_uid = uid;
                }
                self.node_backoff.ok();
                self.status_due = Some(now + self.settings.node_status_update_frequency);
                if self.last_node_error.take().is_some() {
                    log(Level::Info, "", "cluster: node status written again");
                }
            }
            Err(e) => {
                if e.is_not_found() {
                    // Deleted through the API: registered again at the next try.
                    self.node_uid.clear();
                }
                self.forget_credentials_on_401(&e);
                log_change(
                    &mut self.last_node_error,
                    Level::Error,
                    Some(format!("cluster: node status: {e}")),
                );
                self.node_backoff.fail(now, self.settings.max_backoff);
            }
        }
    }

    fn lease(&mut self, now: Instant) {
        let Some(api) = &self.api else { return };
        if self.node_uid.is_empty()
            || !self.lease_backoff.ready(now)
            || self.lease_due.is_some_and(|t| now < t)
        {
            return;
        }
        match self.lease.renew(
            api,
            &self.machine.node,
            &self.node_uid,
            self.settings.lease_duration_secs,
        ) {
            Ok(()) => {
                self.lease_backoff.ok();
                self.lease_due = Some(now + self.settings.renew_interval());
                if self.last_lease_error.take().is_some() {
                    log(Level::Info, "", "cluster: node lease renewed again");
                }
            }
            Err(e) => {
                self.forget_credentials_on_401(&e);
                log_change(
                    &mut self.last_lease_error,
                    Level::Error,
                    Some(format!("cluster: node lease: {e}")),
                );
                self.lease_backoff.fail(now, self.settings.max_backoff);
            }
        }
    }

    fn mirrors(&mut self, now: Instant, pods: &[PodInfo]) {
        let Some(api) = &self.api else { return };
        if !self.mirror_backoff.ready(now) {
            return;
        }
        match self.mirrors.sync(api, pods, &self.node_uid) {
            Ok(()) => {
                self.mirror_backoff.ok();
                if self.last_mirror_error.take().is_some() {
                    log(Level::Info, "", "cluster: mirror pods in sync again");
                }
            }
            Err(e) => {
                self.forget_credentials_on_401(&e);
                log_change(
                    &mut self.last_mirror_error,
                    Level::Warn,
                    Some(format!("cluster: mirror pods: {e}")),
                );
                self.mirror_backoff.fail(now, self.settings.max_backoff);
            }
        }
    }
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Starts the cluster thread: `machine` describes the node, `clock` converts the agent's
/// instants, `snapshot` gives the agent's pods, `states` receives each mirror's state.
pub fn spawn(
    settings: Settings,
    machine: node::Machine,
    clock: Clock,
    mut snapshot: Snapshot,
    states: mirror::States,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("keel-cluster".into())
        .spawn(move || {
            let mirrors = mirror::Mirrors::new(
                &machine.node,
                &machine.internal_ip,
                clock,
                settings.relist_period,
                states,
            );
            let mut r = Runner {
                machine,
                api: None,
                node_uid: String::new(),
                lease: node::Lease::default(),
                mirrors,
                status_due: None,
                lease_due: None,
                connect: Backoff::default(),
                node_backoff: Backoff::default(),
                lease_backoff: Backoff::default(),
                mirror_backoff: Backoff::default(),
                last_config_error: None,
                last_node_error: None,
                last_lease_error: None,
                last_mirror_error: None,
                settings,
            };
            loop {
                let now = Instant::now();
                r.connect(now);
                r.node(now);
                r.lease(now);
                let Some(pods) = snapshot() else { return };
                r.mirrors(Instant::now(), &pods);
                std::thread::sleep(r.settings.sync_period);
            }
        })
}
