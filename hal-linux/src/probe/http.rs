//! `httpGet` probes: a GET with the kubelet's rules. HTTP or HTTPS (TLS without
//! certificate verification, as the kubelet's `InsecureSkipVerify`), the manifest's
//! `host`, `path` (with its query), port and `httpHeaders` (a `Host` header sets the
//! request's host), `User-Agent: kube-probe/…` and `Accept: */*` unless overridden.
//! Success is a status of 200–399. Redirects are followed only to the same host name,
//! at most [`MAX_REDIRECTS`] times; a redirect elsewhere ends the probe with its 3xx
//! status, a success (the kubelet's "Probe terminated redirects" warning). At most
//! [`MAX_BODY`] bytes of the body are read; the rest is dropped with the connection.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Redirects followed before the probe fails (Go's `http.Client` default).
pub const MAX_REDIRECTS: usize = 10;
/// Bytes of a response body read (the kubelet's `maxRespBodyLength`, 10 KiB).
pub const MAX_BODY: u64 = 10 * 1024;

/// One `httpGet` probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    /// HTTPS instead of HTTP.
    pub https: bool,
    /// Host name or IP to connect to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path, with its query if any (`/healthz?verbose`).
    pub path: String,
    /// Extra headers, in order; later ones replace earlier ones of the same name.
    pub headers: Vec<(String, String)>,
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A status of 200–399 (a 3xx when the redirect went to another host).
    Success(u16),
    /// Any other status.
    Status(u16),
    /// No response: connection, TLS, timeout, too many redirects, bad URL…
    Error(String),
}

impl Outcome {
    /// Whether the probe passed.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Success(_))
    }
}

/// The TLS client configuration of probes (no verification), made once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG.get_or_init(crate::tls::insecure).clone()
}

/// The probe's first URL: `scheme://host:port` joined with `path` as Go's `url.Parse`
/// would split it (path and query).
fn first_url(p: &HttpGet) -> Result<url::Url, String> {
    let scheme = if p.https { "https" } else { "http" };
    let base = format!("{scheme}://{}", super::host_port(&p.host, p.port));
    let path = if p.path.starts_with('/') {
        p.path.clone()
    } else {
        format!("/{}", p.path)
    };
    url::Url::parse(&format!("{base}{path}")).map_err(|e| format!("{base}{path}: {e}"))
}

/// Runs the probe; it takes at most `timeout` in all (redirects included).
pub fn get(p: &HttpGet, timeout: Duration) -> Outcome {
    match run(p, timeout) {
        Ok(o) => o,
        Err(e) => Outcome::Error(e),
    }
}

fn run(p: &HttpGet, timeout: Duration) -> Result<Outcome, String> {
    let until = Instant::now() + timeout;
    let mut builder = ureq::AgentBuilder::new()
        .redirects(0)
        .max_idle_connections(0)
        .user_agent(super::USER_AGENT);
    if p.https {
        builder = builder.tls_connector(Arc::new(crate::tls::Connector::new(tls_config()?)));
    }
    let agent = builder.build();
    let first = first_url(p)?;
    let host_header: Option<&str> = p
        .headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str());
    let mut url = first.clone();
    // The Host header holds across a redirect only to a relative location (Go's client).
    let mut keep_host = true;
    for _ in 0..=MAX_REDIRECTS {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{url}: timed out after {timeout:?}"));
        }
        let mut req = agent
            .request_url("GET", &url)
            .timeout(left)
            .set("Accept", "*/*")
            .set("Connection", "close");
        for (k, v) in &p.headers {
            if k.eq_ignore_ascii_case("host") {
                continue;
            }
            req = req.set(k, v);
        }
        if let (Some(h), true) = (host_header, keep_host) {
            req = req.set("Host", h);
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(format!("{url}: {t}")),
        };
        let status = resp.status();
        let location = resp.header("location").map(str::to_string);
        // The body up to the bound, then the connection goes.
        let mut sink = Vec::new();
        if let Err(e) = resp.into_reader().take(MAX_BODY).read_to_end(&mut sink) {
            return Err(format!("{url}: reading the body: {e}"));
        }
        let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
        let next = match (redirect, location) {
            (true, Some(loc)) => loc,
            _ => {
                return Ok(if (200..400).contains(&status) {
                    Outcome::Success(status)
                } else {
                    Outcome::Status(status)
                })
            }
        };
        let target = url
            .join(&next)
            .map_err(|e| format!("{url}: bad redirect location {next:?}: {e}"))?;
        if target.host_str() != first.host_str() {
            // Another host: not followed; the 3xx itself counts (a kubelet warning).
            return Ok(Outcome::Success(status));
        }
        keep_host = url::Url::parse(&next).is_err();
        url = target;
    }
    Err(format!("{first}: stopped after {MAX_REDIRECTS} redirects"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    /// What a test server answers to one request: the raw response, or nothing (hang).
    pub(crate) type Answer = Box<dyn Fn(&str) -> Option<Vec<u8>> + Send>;

    /// A loopback HTTP/1.1 server answering `n` connections; request heads are sent on
    /// the returned channel. It stops by itself after `n` connections.
    pub(crate) fn serve(n: usize, answer: Answer) -> (u16, mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..n {
                let Ok((s, _)) = l.accept() else { return };
                let head = read_head(&s);
                let _ = tx.send(head.clone());
                match answer(&head) {
                    Some(bytes) => {
                        let mut s = s;
                        let _ = s.write_all(&bytes);
                    }
                    None => {
                        // Accept and never answer: hold the connection a while.
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_secs(5));
                            drop(s);
                        });
                    }
                }
            }
        });
        (port, rx)
    }

    fn read_head(s: &TcpStream) -> String {
        let mut r = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                return head;
            }
            head += &line;
        }
    }

    pub(crate) fn status(code: u16, extra: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn probe(port: u16, path: &str, headers: &[(&str, &str)]) -> HttpGet {
        HttpGet {
            https: false,
            host: "127.0.0.1".into(),
            port,
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn success_is_200_to_399() {
        for (code, ok) in [
            (200, true),
            (204, true),
            (304, true),
            (399, true),
            (400, false),
            (500, false),
        ] {
            let (port, _) = serve(1, Box::new(move |_| Some(status(code, "", "x"))));
            let out = get(&probe(port, "/", &[]), T);
            assert_eq!(out.ok(), ok, "{code}: {out:?}");
        }
    }

    #[test]
    fn path_query_host_and_headers_are_sent() {
        let (port, heads) = serve(1, Box::new(|_| Some(status(200, "", ""))));
        let p = probe(
            port,
            "/healthz?verbose=1&x=%20",
            &[
                ("Host", "api.example"),
                ("X-Probe", "a b"),
                ("Accept", "text/plain"),
            ],
        );
        assert_eq!(get(&p, T), Outcome::Success(200));
        let head = heads.recv().unwrap();
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(lines[0], "GET /healthz?verbose=1&x=%20 HTTP/1.1");
        assert!(lines.contains(&"Host: api.example"), "{head}");
        assert_eq!(head.matches("Host:").count(), 1, "{head}");
        assert!(lines.contains(&"X-Probe: a b"), "{head}");
        assert!(lines.contains(&"Accept: text/plain"), "{head}");
        assert!(lines.contains(&format!("User-Agent: {}", crate::probe::USER_AGENT).as_str()));
    }

    #[test]
    fn a_default_request_names_the_host_port_and_accepts_anything() {
        let (port, heads) = serve(1, Box::new(|_| Some(status(200, "", ""))));
        assert!(get(&probe(port, "healthz", &[]), T).ok());
        let head = heads.recv().unwrap();
        assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert!(head.contains("Accept: */*\r\n"), "{head}");
    }

    #[test]
    fn redirects_are_followed_on_the_same_host_only() {
        let (port, heads) = serve(
            2,
            Box::new(|head| {
                Some(if head.starts_with("GET /old ") {
                    status(302, "Location: /new?q=1\r\n", "")
                } else {
                    status(500, "", "")
                })
            }),
        );
        assert_eq!(get(&probe(port, "/old", &[]), T), Outcome::Status(500));
        assert!(heads.recv().unwrap().starts_with("GET /old "));
        assert!(heads.recv().unwrap().starts_with("GET /new?q=1 "));

        // Elsewhere: not followed, and the 3xx counts as success.
        let (port, heads) = serve(
            1,
            Box::new(|_| Some(status(301, "Location: http://192.0.2.1:9/x\r\n", ""))),
        );
        assert_eq!(get(&probe(port, "/", &[]), T), Outcome::Success(301));
        assert_eq!(heads.try_iter().count(), 1);
    }

    #[test]
    fn more_than_ten_redirects_fail() {
        let (port, heads) = serve(
            11,
            Box::new(|_| Some(status(307, "Location: /again\r\n", ""))),
        );
        let out = get(&probe(port, "/", &[]), T);
        assert!(
            matches!(&out, Outcome::Error(e) if e.contains("stopped after 10 redirects")),
            "{out:?}"
        );
        assert_eq!(heads.try_iter().count(), 11);
    }

    #[test]
    fn a_server_that_never_answers_fails_at_the_timeout() {
        let (port, _) = serve(1, Box::new(|_| None));
        let t = Instant::now();
        let out = get(&probe(port, "/", &[]), Duration::from_millis(400));
        assert!(matches!(out, Outcome::Error(_)), "{out:?}");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn a_large_body_is_not_read_to_its_end() {
        // 64 MiB announced, 1 MiB sent: the probe reads its bound and goes.
        let (port, _) = serve(
            1,
            Box::new(|_| {
                let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n".to_vec();
                r.extend(std::iter::repeat_n(b'x', 1 << 20));
                Some(r)
            }),
        );
        let t = Instant::now();
        assert_eq!(get(&probe(port, "/", &[]), T), Outcome::Success(200));
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    /// A self-signed certificate and key (PEM) made with the openssl command.
    pub(crate) fn self_signed(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
        std::fs::create_dir_all(dir).unwrap();
        let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let st = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=probe.test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl command (Debian: apt-get install openssl)");
        assert!(st.success());
        (std::fs::read(crt).unwrap(), std::fs::read(key).unwrap())
    }

    /// A loopback HTTPS server answering `codes` in turn, one connection each.
    pub(crate) fn serve_tls(cert: &[u8], key: &[u8], codes: Vec<u16>) -> u16 {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for code in codes {
                let Ok((s, _)) = l.accept() else { return };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut r = BufReader::new(&mut tls);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n") {}
                let _ = tls.write_all(&status(code, "", "tls"));
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        port
    }

    #[test]
    fn https_skips_certificate_verification_and_reads_the_status() {
        let dir = std::env::temp_dir().join(format!("keel-probe-tls-{}", std::process::id()));
        let (cert, key) = self_signed(&dir);
        let port = serve_tls(&cert, &key, vec![200, 500]);
        let p = HttpGet {
            https: true,
            ..probe(port, "/healthz", &[("Host", "probe.test")])
        };
        assert_eq!(get(&p, T), Outcome::Success(200));
        assert_eq!(get(&p, T), Outcome::Status(500));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
