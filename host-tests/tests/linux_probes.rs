//! End-to-end tests of probes: the real `keel agent`, real runc, busybox containers, and
//! servers the tests run themselves (HTTPS with a self-signed certificate, gRPC health
//! over HTTP/2). The servers listen on loopback only and pods that probe them use the
//! host's network; each server stops by itself when its test ends. They need root, runc,
//! busybox and the openssl command (CI runs as root).

use keel_host_tests::linux::Node;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn pod_yaml(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n{spec}")
}

/// Whether the container reports ready.
fn ready(n: &Node, pod: &str, c: &str) -> bool {
    n.container(pod, c)
        .is_some_and(|c| c["ready"].as_bool() == Some(true))
}

/// Stops a test server's threads when the test ends (dropped), however it ends.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A loopback listener whose accept loop gives `f` each connection (on a thread of its
/// own) until the returned guard is dropped.
fn serve(f: impl Fn(TcpStream) + Send + Sync + 'static) -> (u16, Stop) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let f = Arc::new(f);
    let done = stop.clone();
    std::thread::spawn(move || {
        while !done.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let f = f.clone();
                    std::thread::spawn(move || f(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, Stop(stop))
}

/// A self-signed certificate and key (PEM), made with the openssl command.
fn self_signed(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    keel_host_tests::registry::openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=probe.test",
            "-keyout",
            "tls.key",
            "-out",
            "tls.crt",
        ],
    );
    (
        std::fs::read(dir.join("tls.crt")).unwrap(),
        std::fs::read(dir.join("tls.key")).unwrap(),
    )
}

fn tls_server_config(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = self_signed(dir);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

/// Answers one HTTPS request with `code`, counting it.
fn answer_tls(cfg: &Arc<rustls::ServerConfig>, s: TcpStream, code: u16, hits: &AtomicU64) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, s);
    let mut r = BufReader::new(&mut tls);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let _ = write!(
        tls,
        "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

#[test]
fn httpd_failing_its_liveness_probe_is_restarted() {
    let mut n = Node::new("httpd");
    n.start();
    // Healthy for 3 s after each start, then /healthz is gone (404).
    let script = "mkdir -p /www && echo ok > /www/healthz; (sleep 3; rm /www/healthz) & exec httpd -f -p 8080 -h /www";
    let spec = format!(
        "  containers:\n  - name: web\n    image: busybox\n    command: [\"sh\", \"-c\", {script:?}]\n    ports:\n    - name: http\n      containerPort: 8080\n    livenessProbe:\n      httpGet:\n        path: /healthz?from=keel\n        port: http\n      periodSeconds: 1\n      failureThreshold: 2\n"
    );
    n.write("httpd.yaml", &pod_yaml("httpd", &spec));
    n.wait_running("httpd", "web");
    let started = Instant::now();
    // Healthy at first: no restart for the first 2.5 s.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(n.restarts("httpd", "web"), Some(0), "{}", n.agent_log());
    // Failing from 3 s: killed after 2 failures 1 s apart, plus the 2 s grace (httpd
    // stops on SIGTERM at once), then restarted.
    n.wait(
        "a restart after failed liveness probes",
        Duration::from_secs(15),
        |n| n.restarts("httpd", "web").unwrap_or(0) >= 1,
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3 + 2 + 2 + 3), "{took:?}");
    assert!(
        n.agent_log()
            .contains("container web: Liveness probe failed"),
        "{}",
        n.agent_log()
    );
}

#[test]
fn https_readiness_follows_the_server_status() {
    let mut n = Node::new("https");
    let cfg = tls_server_config(&n.dir);
    let code = Arc::new(AtomicU16::new(500));
    let hits = Arc::new(AtomicU64::new(0));
    let (c, h) = (code.clone(), hits.clone());
    let (port, _stop) = serve(move |s| answer_tls(&cfg, s, c.load(Ordering::SeqCst), &h));
    n.start();
    let spec = format!(
        "  hostNetwork: true\n  containers:\n  - name: app\n    image: busybox\n    command: [\"sleep\", \"1000\"]\n    readinessProbe:\n      httpGet:\n        scheme: HTTPS\n        host: 127.0.0.1\n        port: {port}\n        path: /readyz\n      periodSeconds: 1\n"
    );
    n.write("https.yaml", &pod_yaml("https", &spec));
    n.wait_running("https", "app");
    n.wait("HTTPS probes", Duration::from_secs(10), |_| {
        hits.load(Ordering::SeqCst) >= 2
    });
    assert!(!ready(&n, "https", "app"), "500 must not be ready");
    code.store(200, Ordering::SeqCst);
    n.wait("ready on 200", Duration::from_secs(10), |n| {
        ready(n, "https", "app")
    });
    code.store(500, Ordering::SeqCst);
    n.wait("not ready on 500", Duration::from_secs(10), |n| {
        !ready(n, "https", "app")
    });
    assert_eq!(
        n.restarts("https", "app"),
        Some(0),
        "readiness never restarts"
    );
}

#[test]
fn a_server_that_accepts_but_never_answers_fails_its_https_liveness_probe() {
    // The kubeadm case: a hung kube-apiserver still accepts connections.
    let mut n = Node::new("hung");
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accepted = Arc::new(AtomicU64::new(0));
    let (h, a) = (held.clone(), accepted.clone());
    let (port, _stop) = serve(move |s| {
        a.fetch_add(1, Ordering::SeqCst);
        h.lock().unwrap().push(s);
    });
    n.start();
    let spec = format!(
        "  hostNetwork: true\n  containers:\n  - name: apiserver\n    image: busybox\n    command: [\"sleep\", \"1000\"]\n    livenessProbe:\n      httpGet:\n        scheme: HTTPS\n        host: 127.0.0.1\n        port: {port}\n        path: /livez\n      periodSeconds: 1\n      timeoutSeconds: 1\n      failureThreshold: 2\n"
    );
    n.write("hung.yaml", &pod_yaml("hung", &spec));
    n.wait_running("hung", "apiserver");
    n.wait(
        "a restart of the hung server's container",
        Duration::from_secs(20),
        |n| n.restarts("hung", "apiserver").unwrap_or(0) >= 1,
    );
    assert!(accepted.load(Ordering::SeqCst) >= 2);
    assert!(
        n.agent_log().contains("Liveness probe failed"),
        "{}",
        n.agent_log()
    );
    held.lock().unwrap().clear();
}

/// A gRPC health server (grpc.health.v1.Health/Check over h2c) reporting `status` for
/// service "keel.test" and NOT_FOUND for any other; records the services asked for.
fn grpc_health(status: Arc<AtomicU64>, asked: Arc<Mutex<Vec<String>>>) -> (u16, Stop) {
    serve(move |s| {
        let (status, asked) = (status.clone(), asked.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            s.set_nonblocking(true).unwrap();
            let s = tokio::net::TcpStream::from_std(s).unwrap();
            let Ok(mut conn) = h2::server::handshake(s).await else {
                return;
            };
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                assert_eq!(req.headers()["content-type"], "application/grpc");
                let mut body = req.into_body();
                let mut msg = Vec::new();
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    msg.extend_from_slice(&chunk);
                }
                // 5-byte gRPC prefix, then field 1 (service), length-delimited.
                let service = match msg.get(5..) {
                    Some([0x0a, n, rest @ ..]) => {
                        String::from_utf8_lossy(&rest[..*n as usize]).into_owned()
                    }
                    _ => String::new(),
                };
                asked.lock().unwrap().push(service.clone());
                let head = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let mut trailers = http::HeaderMap::new();
                if service == "keel.test" {
                    let Ok(mut send) = respond.send_response(head, false) else {
                        return;
                    };
                    let st = status.load(Ordering::SeqCst) as u8;
                    let _ =
                        send.send_data(bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, st]), false);
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let _ = send.send_trailers(trailers);
                } else {
                    // Trailers-only: NOT_FOUND.
                    let head = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "5")
                        .body(())
                        .unwrap();
                    let _ = respond.send_response(head, true);
                }
            }
        });
    })
}

#[test]
fn grpc_readiness_follows_serving_and_not_serving() {
    let mut n = Node::new("grpc");
    let status = Arc::new(AtomicU64::new(2)); // NOT_SERVING
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (port, _stop) = grpc_health(status.clone(), asked.clone());
    n.start();
    let probe = |name: &str, service: &str| {
        format!(
            "  - name: {name}\n    image: busybox\n    command: [\"sleep\", \"1000\"]\n    readinessProbe:\n      grpc:\n        port: {port}\n        service: {service}\n      periodSeconds: 1\n"
        )
    };
    let spec = format!(
        "  hostNetwork: true\n  containers:\n{}{}",
        probe("known", "keel.test"),
        probe("unknown", "other.service")
    );
    n.write("grpc.yaml", &pod_yaml("grpc", &spec));
    n.wait_running("grpc", "known");
    n.wait("both services asked for", Duration::from_secs(10), |_| {
        let a = asked.lock().unwrap();
        a.iter().any(|s| s == "keel.test") && a.iter().any(|s| s == "other.service")
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!ready(&n, "grpc", "known"), "NOT_SERVING must not be ready");
    status.store(1, Ordering::SeqCst); // SERVING
    n.wait("ready when SERVING", Duration::from_secs(10), |n| {
        ready(n, "grpc", "known")
    });
    assert!(
        !ready(&n, "grpc", "unknown"),
        "an unknown service is not ready"
    );
    status.store(2, Ordering::SeqCst);
    n.wait("not ready when NOT_SERVING", Duration::from_secs(10), |n| {
        !ready(n, "grpc", "known")
    });
}

/// Host processes whose command line is exactly `cmd`.
fn processes_running(cmd: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cl = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            String::from_utf8_lossy(&cl).replace('\0', " ").trim_end() == cmd && !zombie
        })
        .count()
}

#[test]
fn a_hanging_exec_probe_is_killed_at_its_timeout() {
    let mut n = Node::new("exechang");
    n.start();
    // Each probe leaves a marker, then hangs with a child of its own.
    let spec = "  containers:\n  - name: main\n    image: busybox\n    command: [\"sleep\", \"1000\"]\n    readinessProbe:\n      exec:\n        command: [\"sh\", \"-c\", \"echo x >> /probes; sleep 307 & sleep 308\"]\n      periodSeconds: 2\n      timeoutSeconds: 1\n";
    n.write("exechang.yaml", &pod_yaml("exechang", spec));
    n.wait_running("exechang", "main");
    // Over 4 periods at most one probe (the current one) may be alive at any moment: a
    // probe only abandoned at its timeout would pile up one pair per period.
    let until = Instant::now() + Duration::from_secs(8);
    let mut most = 0;
    let mut seen = 0;
    while Instant::now() < until {
        let alive = processes_running("sleep 307").max(processes_running("sleep 308"));
        most = most.max(alive);
        seen += usize::from(alive > 0);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen > 0, "no probe was seen running");
    assert!(most <= 1, "{most} hung probes alive at once");
    assert!(!ready(&n, "exechang", "main"));
    // Once the pod is gone, nothing of the probes is left.
    n.remove("exechang.yaml");
    n.wait("the pod gone", Duration::from_secs(15), |n| {
        n.pod("exechang").is_none()
    });
    assert_eq!(
        processes_running("sleep 307") + processes_running("sleep 308"),
        0
    );
    let log = n.agent_log();
    assert!(!log.contains("panicked"), "{log}");
}

/// A directory of the test's own, mounted into containers as `/out` (hostPath), and the
/// pod-spec text declaring it.
fn out_dir(n: &Node) -> (std::path::PathBuf, String) {
    let dir = n.dir.join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let vol = format!(
        "  volumes:\n  - name: out\n    hostPath:\n      path: {}\n",
        dir.display()
    );
    (dir, vol)
}

const OUT_MOUNT: &str = "    volumeMounts:\n    - name: out\n      mountPath: /out\n";

/// The lines of a file the containers append to.
fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_sidecar_starts_first_keeps_running_and_stops_after_the_app() {
    let mut n = Node::new("sidecar");
    let (out, vol) = out_dir(&n);
    n.start();
    // Each container logs its start and its SIGTERM; the sidecar's first run exits after
    // a second, to be restarted although the pod's policy is Never.
    let side = "trap 'echo side-term >> /out/order; exit 0' TERM; echo side-start >> /out/order; if [ ! -f /out/crashed ]; then touch /out/crashed; sleep 1; exit 1; fi; while true; do sleep 0.2; done";
    let app = "trap 'echo app-term >> /out/order; exit 0' TERM; echo app-start >> /out/order; while true; do sleep 0.2; done";
    let spec = format!(
        "  restartPolicy: Never\n{vol}  initContainers:\n  - name: proxy\n    image: busybox\n    restartPolicy: Always\n    command: [\"sh\", \"-c\", {side:?}]\n{OUT_MOUNT}    readinessProbe:\n      exec:\n        command: [\"true\"]\n      periodSeconds: 1\n  containers:\n  - name: app\n    image: busybox\n    command: [\"sh\", \"-c\", {app:?}]\n{OUT_MOUNT}"
    );
    n.write("sidecar.yaml", &pod_yaml("sidecar", &spec));
    n.wait_running("sidecar", "app");
    n.wait(
        "the sidecar restarted and running",
        Duration::from_secs(30),
        |n| {
            n.restarts("sidecar", "proxy") == Some(1)
                && n.state("sidecar", "proxy")
                    .is_some_and(|s| s.0 == "running")
        },
    );
    let order = lines_of(&out.join("order"));
    assert_eq!(order[..2], ["side-start", "app-start"], "{order:?}");
    // Kept running beside the app, reported as Kubernetes reports a sidecar.
    n.wait("the sidecar ready", Duration::from_secs(15), |n| {
        ready(n, "sidecar", "proxy")
    });
    std::thread::sleep(Duration::from_secs(2));
    let side_status = n.container("sidecar", "proxy").unwrap();
    assert_eq!(side_status["started"], true, "{side_status}");
    assert_eq!(n.restarts("sidecar", "proxy"), Some(1));
    assert_eq!(n.restarts("sidecar", "app"), Some(0));
    let pod = n.pod("sidecar").unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert!(pod["status"]["initContainerStatuses"].is_array(), "{pod}");
    // Deleted: the app gets its SIGTERM first, the sidecar only after the app is gone.
    n.remove("sidecar.yaml");
    n.wait("the pod gone", Duration::from_secs(30), |n| {
        n.pod("sidecar").is_none()
    });
    let order = lines_of(&out.join("order"));
    let tail: Vec<&str> = order
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["app-term", "side-term"], "{order:?}");
}

#[test]
fn a_startup_probe_holds_back_the_liveness_probe_until_it_passes() {
    let mut n = Node::new("startup");
    let (out, vol) = out_dir(&n);
    n.start();
    // Up after 3 s; a liveness probe run before that would fail and restart it at once.
    let script = "(sleep 3; touch /tmp/up) & exec sleep 1000";
    let spec = format!(
        "{vol}  containers:\n  - name: slow\n    image: busybox\n    command: [\"sh\", \"-c\", {script:?}]\n{OUT_MOUNT}    startupProbe:\n      exec:\n        command: [\"test\", \"-f\", \"/tmp/up\"]\n      periodSeconds: 1\n      failureThreshold: 30\n    livenessProbe:\n      exec:\n        command: [\"sh\", \"-c\", \"echo live >> /out/live; test -f /tmp/up\"]\n      periodSeconds: 1\n      failureThreshold: 1\n"
    );
    n.write("startup.yaml", &pod_yaml("startup", &spec));
    n.wait_running("startup", "slow");
    let st = n.container("startup", "slow").unwrap();
    assert_eq!(st["started"], false, "{st}");
    n.wait("the startup probe passed", Duration::from_secs(20), |n| {
        n.container("startup", "slow")
            .is_some_and(|c| c["started"] == true)
    });
    n.wait("liveness probes running", Duration::from_secs(10), |_| {
        lines_of(&out.join("live")).len() >= 3
    });
    assert_eq!(n.restarts("startup", "slow"), Some(0), "{}", n.agent_log());
}

#[test]
fn a_failing_post_start_hook_kills_the_container_with_post_start_hook_error() {
    let mut n = Node::new("poststart");
    let (out, vol) = out_dir(&n);
    n.start();
    // The hook fails the first time only; each run of it is logged.
    let hook = "echo hook >> /out/hooks; if [ -f /out/failed ]; then exit 0; fi; touch /out/failed; exit 1";
    let spec = format!(
        "{vol}  containers:\n  - name: app\n    image: busybox\n    command: [\"sleep\", \"1000\"]\n{OUT_MOUNT}    lifecycle:\n      postStart:\n        exec:\n          command: [\"sh\", \"-c\", {hook:?}]\n"
    );
    n.write("poststart.yaml", &pod_yaml("poststart", &spec));
    n.wait(
        "restarted after the hook failed",
        Duration::from_secs(30),
        |n| {
            n.restarts("poststart", "app") == Some(1)
                && n.state("poststart", "app")
                    .is_some_and(|s| s.0 == "running")
        },
    );
    assert_eq!(lines_of(&out.join("hooks")).len(), 2);
    let log = n.agent_log();
    assert!(log.contains("postStart hook failed: killing it"), "{log}");
    let last = &n.container("poststart", "app").unwrap()["lastState"]["terminated"];
    assert!(last.is_object(), "the killed run is the last state");
}

#[test]
fn pre_stop_runs_before_sigterm_on_a_liveness_kill() {
    let mut n = Node::new("prestop");
    let (out, vol) = out_dir(&n);
    n.start();
    // Sick after 2 s; SIGTERM is logged, and so is the preStop hook.
    let script = "trap 'echo term >> /out/events; exit 0' TERM; (sleep 2; touch /tmp/sick) & while true; do sleep 0.2; done";
    let spec = format!(
        "{vol}  containers:\n  - name: app\n    image: busybox\n    command: [\"sh\", \"-c\", {script:?}]\n{OUT_MOUNT}    livenessProbe:\n      exec:\n        command: [\"sh\", \"-c\", \"test ! -f /tmp/sick\"]\n      periodSeconds: 1\n      failureThreshold: 1\n    lifecycle:\n      preStop:\n        exec:\n          command: [\"sh\", \"-c\", \"echo prestop >> /out/events\"]\n"
    );
    n.write("prestop.yaml", &pod_yaml("prestop", &spec));
    n.wait(
        "a restart after the liveness kill",
        Duration::from_secs(30),
        |n| n.restarts("prestop", "app").unwrap_or(0) >= 1,
    );
    let events = lines_of(&out.join("events"));
    assert_eq!(events[..2], ["prestop", "term"], "{events:?}");
}

/// Seconds since the Unix epoch of an RFC 3339 time in whole seconds (`…T10:00:00Z`), as
/// `keel pods -o json` writes them.
fn unix_secs(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

#[test]
fn an_adopted_container_keeps_its_start_time_across_an_agent_kill() {
    let mut n = Node::new("adopttime");
    n.start();
    let spec =
        "  containers:\n  - name: app\n    image: busybox\n    command: [\"sleep\", \"1000\"]\n";
    n.write("adopttime.yaml", &pod_yaml("adopttime", spec));
    n.wait_running("adopttime", "app");
    let started = |n: &Node| {
        n.container("adopttime", "app")
            .and_then(|c| c["state"]["running"]["startedAt"].as_str().map(unix_secs))
    };
    let created = |n: &Node| {
        n.pod("adopttime")
            .and_then(|p| p["metadata"]["creationTimestamp"].as_str().map(unix_secs))
    };
    let (s0, c0) = (started(&n).unwrap(), created(&n).unwrap());
    // Some seconds later the agent is killed and started again: it adopts the container.
    std::thread::sleep(Duration::from_secs(4));
    n.signal_agent(nix::sys::signal::Signal::SIGKILL);
    n.start();
    n.wait("the container adopted", Duration::from_secs(30), |n| {
        started(n).is_some()
    });
    let (s1, c1) = (started(&n).unwrap(), created(&n).unwrap());
    assert!((s1 - s0).abs() <= 1, "startedAt {s0} before, {s1} after");
    assert!(
        (c1 - c0).abs() <= 1,
        "creationTimestamp {c0} before, {c1} after"
    );
    assert_eq!(n.restarts("adopttime", "app"), Some(0));
}

/// kubeadm's kube-apiserver manifest (examples/kubeadm) as written, but for what a test
/// node cannot have: busybox in place of the image and command (a process that stops on
/// SIGTERM), the probes' host 10.0.0.10 on loopback with `probe-port` this test's HTTPS
/// server, and the hostPath volumes under `dir`. Everything else (startup, readiness and
/// liveness probes with kubeadm's timings, priority class, seccomp, hostNetwork) stays.
fn kubeadm_apiserver(port: u16, dir: &std::path::Path) -> String {
    let path =
        keel_host_tests::linux::workspace_root().join("examples/kubeadm/kube-apiserver.yaml");
    let mut v: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = &mut v["spec"]["containers"][0];
    c["image"] = "busybox".into();
    c["command"] =
        serde_yaml::from_str(r#"["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]"#)
            .unwrap();
    c["ports"][0]["containerPort"] = u64::from(port).into();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS");
        assert_eq!(c[probe]["httpGet"]["port"], "probe-port");
        c[probe]["httpGet"]["host"] = "127.0.0.1".into();
    }
    let volumes = v["spec"]["volumes"].as_sequence_mut().unwrap();
    for (i, vol) in volumes.iter_mut().enumerate() {
        let p = dir.join(format!("hostpath-{i}"));
        vol["hostPath"]["path"] = p.display().to_string().into();
    }
    serde_yaml::to_string(&v).unwrap()
}

#[test]
fn the_kubeadm_apiserver_manifest_restarts_a_server_that_hangs() {
    // The case measured on a real kube-apiserver stopped with SIGSTOP: it still accepts
    // connections but never answers. kubeadm's liveness probe (period 10 s, timeout 15 s,
    // failureThreshold 8) must restart it.
    let mut n = Node::new("kubeadm-hung");
    let cfg = tls_server_config(&n.dir);
    let hung = Arc::new(AtomicBool::new(false));
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let hits = Arc::new(AtomicU64::new(0));
    let (h, held2, hits2) = (hung.clone(), held.clone(), hits.clone());
    let (port, _stop) = serve(move |s| {
        if h.load(Ordering::SeqCst) {
            held2.lock().unwrap().push(s);
        } else {
            answer_tls(&cfg, s, 200, &hits2);
        }
    });
    n.start();
    n.write("kube-apiserver.yaml", &kubeadm_apiserver(port, &n.dir));
    let pod = "kube-apiserver";
    let full = |n: &Node| {
        n.pods()["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|p| p["metadata"]["name"] == format!("{pod}-e2e").as_str())
                .cloned()
        })
    };
    let ready = |n: &Node| {
        full(n)
            .is_some_and(|p| p["status"]["containerStatuses"][0]["ready"].as_bool() == Some(true))
    };
    // The startup probe waits 10 s, then passes; readiness follows.
    n.wait("the apiserver ready", Duration::from_secs(90), |n| ready(n));
    assert!(hits.load(Ordering::SeqCst) >= 2);
    hung.store(true, Ordering::SeqCst);
    let hung_at = Instant::now();
    let restarts = |n: &Node| {
        full(n)
            .and_then(|p| p["status"]["containerStatuses"][0]["restartCount"].as_u64())
            .unwrap_or(0)
    };
    n.wait("not ready once hung", Duration::from_secs(60), |n| {
        !ready(n)
    });
    n.wait(
        "the hung apiserver restarted by its liveness probe",
        Duration::from_secs(300),
        |n| restarts(n) >= 1,
    );
    let took = hung_at.elapsed();
    // Eight failures a period apart: not before 70 s (a restart any sooner came from
    // something else than the liveness probe).
    assert!(took >= Duration::from_secs(70), "restarted after {took:?}");
    assert!(
        n.agent_log().contains("Liveness probe failed"),
        "{}",
        n.agent_log()
    );
    held.lock().unwrap().clear();
    eprintln!("kubeadm apiserver restarted {took:?} after it hung");
}
