//! Manifest builders: a pod described in a line of Rust, written out as YAML or JSON.
//!
//! Probes and hooks are `exec` actions whose first word names them, so
//! [`super::FakeRuntime::script_action`] can script their results by that word.

use std::fmt::Write;

/// A probe: exec `[word]` with its period and thresholds (seconds, counts).
#[derive(Clone, Debug)]
pub struct Probe {
    word: String,
    period: i64,
    failure: i64,
    success: i64,
    delay: i64,
    grace: Option<i64>,
    timeout: Option<i64>,
}

/// A container.
#[derive(Clone, Debug)]
pub struct C {
    name: String,
    image: String,
    args: Vec<String>,
    probes: [Option<Probe>; 3],
    pre_stop: Option<String>,
    post_start: Option<String>,
    sidecar: bool,
}

impl C {
    /// Container `name` running `image`.
    pub fn new(name: &str, image: &str) -> Self {
        C {
            name: name.into(),
            image: image.into(),
            args: Vec::new(),
            probes: [None, None, None],
            pre_stop: None,
            post_start: None,
            sidecar: false,
        }
    }
    /// With `args`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }
    fn probe(mut self, i: usize, word: &str, period: i64, failure: i64) -> Self {
        self.probes[i] = Some(Probe {
            word: word.into(),
            period,
            failure,
            success: 1,
            delay: 0,
            grace: None,
            timeout: None,
        });
        self
    }
    /// Liveness exec probe `[word]`, every `period` s, failing after `failure` in a row.
    pub fn liveness(self, word: &str, period: i64, failure: i64) -> Self {
        self.probe(0, word, period, failure)
    }
    /// Readiness exec probe.
    pub fn readiness(self, word: &str, period: i64, failure: i64) -> Self {
        self.probe(1, word, period, failure)
    }
    /// Startup exec probe.
    pub fn startup(self, word: &str, period: i64, failure: i64) -> Self {
        self.probe(2, word, period, failure)
    }
    /// `initialDelaySeconds` of the last probe set with index `i` (0 liveness, 1 readiness,
    /// 2 startup).
    pub fn delay(mut self, i: usize, secs: i64) -> Self {
        if let Some(p) = self.probes[i].as_mut() {
            p.delay = secs;
        }
        self
    }
    /// `timeoutSeconds` of the probe with index `i`.
    pub fn timeout(mut self, i: usize, secs: i64) -> Self {
        if let Some(p) = self.probes[i].as_mut() {
            p.timeout = Some(secs);
        }
        self
    }
    /// The probe-level `terminationGracePeriodSeconds` of the probe with index `i`.
    pub fn probe_grace(mut self, i: usize, secs: i64) -> Self {
        if let Some(p) = self.probes[i].as_mut() {
            p.grace = Some(secs);
        }
        self
    }
    /// A preStop exec hook `[word]`.
    pub fn pre_stop(mut self, word: &str) -> Self {
        self.pre_stop = Some(word.into());
        self
    }
    /// A postStart exec hook `[word]`.
    pub fn post_start(mut self, word: &str) -> Self {
        self.post_start = Some(word.into());
        self
    }
    /// `restartPolicy: Always` on the container: a sidecar when it is an init container.
    pub fn sidecar(mut self) -> Self {
        self.sidecar = true;
        self
    }
}

/// A pod.
#[derive(Clone, Debug)]
pub struct P {
    name: String,
    namespace: Option<String>,
    uid: Option<String>,
    policy: Option<String>,
    grace: Option<i64>,
    init: Vec<C>,
    containers: Vec<C>,
    labels: Vec<(String, String)>,
}

impl P {
    /// Pod `name` with one container `app` running `image`.
    pub fn new(name: &str, image: &str) -> Self {
        P::empty(name).container(C::new("app", image))
    }
    /// Pod `name` with no container yet.
    pub fn empty(name: &str) -> Self {
        P {
            name: name.into(),
            namespace: None,
            uid: None,
            policy: None,
            grace: None,
            init: Vec::new(),
            containers: Vec::new(),
            labels: Vec::new(),
        }
    }
    /// Adds an app container.
    pub fn container(mut self, c: C) -> Self {
        self.containers.push(c);
        self
    }
    /// Adds an init container.
    pub fn init(mut self, c: C) -> Self {
        self.init.push(c);
        self
    }
    /// `restartPolicy`.
    pub fn policy(mut self, p: &str) -> Self {
        self.policy = Some(p.into());
        self
    }
    /// `terminationGracePeriodSeconds`.
    pub fn grace(mut self, s: i64) -> Self {
        self.grace = Some(s);
        self
    }
    /// A fixed `metadata.uid`.
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.into());
        self
    }
    /// `metadata.namespace`.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }
    /// A label (changes the pod's content, not its containers).
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.into(), v.into()));
        self
    }

    /// As YAML (block style, with a comment so that rewrites can differ textually).
    pub fn yaml(&self) -> String {
        let mut s = String::from("# generated\napiVersion: v1\nkind: Pod\nmetadata:\n");
        writeln!(s, "  name: {}", self.name).unwrap();
        if let Some(ns) = &self.namespace {
            writeln!(s, "  namespace: {ns}").unwrap();
        }
        if let Some(uid) = &self.uid {
            writeln!(s, "  uid: \"{uid}\"").unwrap();
        }
        if !self.labels.is_empty() {
            s.push_str("  labels:\n");
            for (k, v) in &self.labels {
                writeln!(s, "    {k}: \"{v}\"").unwrap();
            }
        }
        s.push_str("spec:\n");
        if let Some(p) = &self.policy {
            writeln!(s, "  restartPolicy: {p}").unwrap();
        }
        if let Some(g) = self.grace {
            writeln!(s, "  terminationGracePeriodSeconds: {g}").unwrap();
        }
        for (key, list) in [
            ("initContainers", &self.init),
            ("containers", &self.containers),
        ] {
            if list.is_empty() {
                continue;
            }
            writeln!(s, "  {key}:").unwrap();
            for c in list {
                writeln!(s, "  - name: {}\n    image: {}", c.name, c.image).unwrap();
                if !c.args.is_empty() {
                    s.push_str("    args:\n");
                    for a in &c.args {
                        writeln!(s, "    - \"{a}\"").unwrap();
                    }
                }
                let keys = ["livenessProbe", "readinessProbe", "startupProbe"];
                for (k, p) in keys.iter().zip(c.probes.iter()) {
                    let Some(p) = p else { continue };
                    writeln!(
                        s,
                        "    {k}:\n      exec:\n        command: [\"{}\"]\n      periodSeconds: {}\n      failureThreshold: {}\n      successThreshold: {}\n      initialDelaySeconds: {}",
                        p.word, p.period, p.failure, p.success, p.delay
                    )
                    .unwrap();
                    if let Some(t) = p.timeout {
                        writeln!(s, "      timeoutSeconds: {t}").unwrap();
                    }
                    if let Some(g) = p.grace {
                        writeln!(s, "      terminationGracePeriodSeconds: {g}").unwrap();
                    }
                }
                if c.sidecar {
                    s.push_str("    restartPolicy: Always\n");
                }
                if c.pre_stop.is_some() || c.post_start.is_some() {
                    s.push_str("    lifecycle:\n");
                }
                for (k, w) in [("preStop", &c.pre_stop), ("postStart", &c.post_start)] {
                    if let Some(w) = w {
                        writeln!(s, "      {k}:\n        exec:\n          command: [\"{w}\"]")
                            .unwrap();
                    }
                }
            }
        }
        s
    }

    /// As JSON (no probes or hooks: enough for format tests).
    pub fn json(&self) -> String {
        let cs = |list: &[C]| {
            list.iter()
                .map(|c| {
                    let args: Vec<String> = c.args.iter().map(|a| format!("\"{a}\"")).collect();
                    format!(
                        "{{\"name\":\"{}\",\"image\":\"{}\",\"args\":[{}]}}",
                        c.name,
                        c.image,
                        args.join(",")
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut spec = format!("\"containers\":[{}]", cs(&self.containers));
        if !self.init.is_empty() {
            spec.push_str(&format!(",\"initContainers\":[{}]", cs(&self.init)));
        }
        if let Some(p) = &self.policy {
            spec.push_str(&format!(",\"restartPolicy\":\"{p}\""));
        }
        if let Some(g) = self.grace {
            spec.push_str(&format!(",\"terminationGracePeriodSeconds\":{g}"));
        }
        let mut meta = format!("\"name\":\"{}\"", self.name);
        if let Some(u) = &self.uid {
            meta.push_str(&format!(",\"uid\":\"{u}\""));
        }
        format!("{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{{meta}}},\"spec\":{{{spec}}}}}\n")
    }
}
