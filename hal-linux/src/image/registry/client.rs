//! HTTP to one registry endpoint: TLS (system CA bundle plus configured CAs, rustls),
//! the distribution spec's authentication (anonymous, `Basic`, and the `Bearer` token
//! challenge flow of Docker Hub and ghcr), redirects to blob storage (followed without
//! the registry's `Authorization`), timeouts, and retries with backoff for failures that
//! may pass (connection errors, 429, 5xx).

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use super::super::error::{ImageError, Result};
use super::config::{Credentials, Endpoint};

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read may stall (not the whole body: layers take minutes on slow links).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries per request for failures that may pass; the waits between them double.
const ATTEMPTS: u32 = 4;
/// The first wait between tries.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Redirects followed (registries redirect blobs to object storage once).
const MAX_REDIRECTS: u32 = 5;
/// Bytes of an error response body kept for the message.
const MAX_ERROR_BODY: u64 = 4096;

/// What the client presents to the registry after a challenge.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic(String),
    Bearer(String),
}

/// A client for one endpoint and one repository (a bearer token's scope is per
/// repository). Shared by the layer fetch threads.
#[derive(Debug)]
pub(crate) struct Client {
    agent: ureq::Agent,
    /// `base` with plain HTTP where the endpoint allows it, else the same.
    base: Mutex<String>,
    endpoint: Endpoint,
    repository: String,
    credentials: Option<Credentials>,
    auth: Mutex<Auth>,
}

/// A response with its status, headers the pull reads, and body.
pub(crate) struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub docker_content_digest: Option<String>,
    pub body: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .finish()
    }
}

impl Client {
    /// A client for `repository` (the path under the registry) at `endpoint`, trusting
    /// the system CAs plus `extra_ca`.
    pub(crate) fn new(
        endpoint: &Endpoint,
        repository: &str,
        credentials: Option<Credentials>,
        extra_ca: Option<&Path>,
    ) -> Result<Client> {
        let tls = tls_config(extra_ca)?;
        let agent = ureq::AgentBuilder::new()
            .tls_connector(Arc::new(crate::tls::Connector::new(tls)))
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(READ_TIMEOUT)
            .redirects(MAX_REDIRECTS)
            .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent,
            base: Mutex::new(endpoint.base.clone()),
            endpoint: endpoint.clone(),
            repository: repository.to_string(),
            credentials,
            auth: Mutex::new(Auth::None),
        })
    }

    /// The endpoint's base URL as used (after any plain-HTTP fallback).
    pub(crate) fn base(&self) -> String {
        lock(&self.base).clone()
    }

    /// `GET /v2/<repo>/<kind>/<reference>` with `accept`, from byte `from` on (a
    /// `Range` request when non-zero). Authenticates on a challenge, retries what may
    /// pass, and turns every status other than 200/206 into an error naming the URL.
    pub(crate) fn get(
        &self,
        kind: &str,
        reference: &str,
        accept: &[&str],
        from: u64,
    ) -> Result<Response> {
        let mut challenged = false;
        let mut attempt = 0;
        loop {
            let url = format!("{}/v2/{}/{kind}/{reference}", self.base(), self.repository);
            let mut req = self.agent.get(&url);
            if !accept.is_empty() {
                req = req.set("Accept", &accept.join(", "));
            }
            if from > 0 {
                req = req.set("Range", &format!("bytes={from}-"));
            }
            match &*lock(&self.auth) {
                Auth::None => {}
                Auth::Basic(b) => req = req.set("Authorization", &format!("Basic {b}")),
                Auth::Bearer(t) => req = req.set("Authorization", &format!("Bearer {t}")),
            }
            match req.call() {
                Ok(resp) => return Ok(into_response(resp)),
                Err(ureq::Error::Status(401, resp)) if !challenged => {
                    challenged = true;
                    let challenge = resp.header("www-authenticate").unwrap_or("").to_string();
                    self.answer_challenge(&url, &challenge)?;
                }
                Err(ureq::Error::Status(code, resp))
                    if (code == 429 || code >= 500) && attempt + 1 < ATTEMPTS =>
                {
                    drop(resp);
                    std::thread::sleep(FIRST_BACKOFF * 2u32.pow(attempt));
                    attempt += 1;
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(status_error(&url, code, resp));
                }
                Err(ureq::Error::Transport(t)) => {
                    // A loopback registry without TLS: speak plain HTTP, as Docker does.
                    if self.endpoint.http_fallback && url.starts_with("https://") {
                        let plain = self.endpoint.base.replacen("https://", "http://", 1);
                        *lock(&self.base) = plain;
                        continue;
                    }
                    if attempt + 1 < ATTEMPTS {
                        std::thread::sleep(FIRST_BACKOFF * 2u32.pow(attempt));
                        attempt += 1;
                        continue;
                    }
                    return Err(transport_error(url, &t));
                }
            }
        }
    }

    /// Sets `auth` from a `WWW-Authenticate` challenge: fetches a bearer token from the
    /// realm, or prepares basic auth from the credentials.
    fn answer_challenge(&self, url: &str, challenge: &str) -> Result<()> {
        let unauthorized = |reason: String| ImageError::Registry {
            url: url.to_string(),
            reason,
        };
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match &self.credentials {
                Some(Credentials::Basic { username, password }) => {
                    *lock(&self.auth) = Auth::Basic(basic(username, password));
                    Ok(())
                }
                Some(Credentials::IdentityToken(_)) => Err(unauthorized(
                    "401 Unauthorized: the registry wants basic auth, only an identity token is configured".into(),
                )),
                None => Err(unauthorized(
                    "401 Unauthorized: authentication required and no credentials are configured for this registry (registries.yaml configs or config.json auths)".into(),
                )),
            },
            "bearer" => {
                let realm = params
                    .iter()
                    .find(|(k, _)| k == "realm")
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| unauthorized(format!("bearer challenge without realm: {challenge}")))?;
                let service = params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.as_str());
                let scope = params
                    .iter()
                    .find(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let token = self.fetch_token(&realm, service, &scope)?;
                *lock(&self.auth) = Auth::Bearer(token);
                Ok(())
            }
            _ => Err(unauthorized(format!(
                "401 Unauthorized with an unsupported challenge {challenge:?}"
            ))),
        }
    }

    /// The token flow: `GET realm?service=&scope=` (with basic auth when there are
    /// credentials), or for an identity token the OAuth2 `POST` with
    /// `grant_type=refresh_token`.
    fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String> {
        let err = |reason: String| ImageError::Registry {
            url: realm.to_string(),
            reason: format!("token request failed: {reason}"),
        };
        let result = match &self.credentials {
            Some(Credentials::IdentityToken(t)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", t.as_str()),
                    ("client_id", "keel"),
                    ("scope", scope),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                self.agent.post(realm).send_form(&form)
            }
            creds => {
                let mut req = self.agent.get(realm).query("scope", scope);
                if let Some(s) = service {
                    req = req.query("service", s);
                }
                if let Some(Credentials::Basic { username, password }) = creds {
                    req = req.set(
                        "Authorization",
                        &format!("Basic {}", basic(username, password)),
                    );
                }
                req.call()
            }
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => {
                return Err(err(format!("{code} {}", error_body(resp))));
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(match transport_error(realm.to_string(), &t) {
                    ImageError::Unreachable { url, reason } => ImageError::Unreachable {
                        url,
                        reason: format!("token request failed: {reason}"),
                    },
                    _ => err(t.to_string()),
                })
            }
        };
        let mut body = Vec::new();
        resp.into_reader()
            .take(1 << 20)
            .read_to_end(&mut body)
            .map_err(|e| err(e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| err(format!("invalid JSON: {e}")))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| err("no token in the response".into()))
    }
}

/// A transport error as an [`ImageError`]: [`ImageError::Unreachable`] when no answer
/// came at all (name resolution, connection, a TLS handshake that fails, I/O before a
/// response: a captive portal is no registry either), else
/// [`ImageError::Registry`] (a bad URL, a bad response, too many redirects).
fn transport_error(url: String, t: &ureq::Transport) -> ImageError {
    use ureq::ErrorKind as K;
    let reason = t.to_string();
    match t.kind() {
        K::Dns | K::ConnectionFailed | K::Io | K::ProxyConnect => {
            ImageError::Unreachable { url, reason }
        }
        _ => ImageError::Registry { url, reason },
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another fetch thread panicked; the value is still whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn into_response(resp: ureq::Response) -> Response {
    Response {
        status: resp.status(),
        content_type: resp.header("content-type").map(str::to_string),
        docker_content_digest: resp.header("docker-content-digest").map(str::to_string),
        body: Box::new(resp.into_reader()),
    }
}

/// The registry's error body (`{"errors":[{"code","message"}]}`) in a few words.
fn error_body(resp: ureq::Response) -> String {
    let mut body = Vec::new();
    let _read = resp
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            let parts: Vec<String> = errs
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.get("code").and_then(|c| c.as_str()).unwrap_or("?"),
                        e.get("message").and_then(|c| c.as_str()).unwrap_or("")
                    )
                })
                .collect();
            return parts.join("; ");
        }
    }
    String::from_utf8_lossy(&body)
        .trim()
        .chars()
        .take(200)
        .collect()
}

fn status_error(url: &str, code: u16, resp: ureq::Response) -> ImageError {
    let text = resp.status_text().to_string();
    let body = error_body(resp);
    ImageError::Registry {
        url: url.to_string(),
        reason: if body.is_empty() {
            format!("{code} {text}")
        } else {
            format!("{code} {text}: {body}")
        },
    }
}

/// Splits `Bearer realm="x",service="y",scope="a,b"` into the scheme and parameters.
pub(crate) fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((k, v));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

/// rustls settings: the system CA bundle (`SSL_CERT_FILE` first when set) plus `extra`.
fn tls_config(extra: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    // The reason names the CA file when it is the file that is wrong.
    crate::tls::verifying(extra).map_err(|reason| ImageError::Invalid {
        what: "registry TLS settings".into(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_docker_hub_and_ghcr_send_them() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(
            p,
            [
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/nginx:pull,push".into()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p.len()), ("Basic", 1));
        assert_eq!(p[0].1, "Registry Realm");
        let (s, p) = parse_challenge("Bearer realm=https://r/t, service=x");
        assert_eq!(s, "Bearer");
        assert_eq!(p[1], ("service".into(), "x".into()));
    }
}
