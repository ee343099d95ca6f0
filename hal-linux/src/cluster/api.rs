//! HTTP to the Kubernetes API server: JSON requests and `Status` errors.
//!
//! This module deals with one API server connection: ureq over rustls (the stack the
//! registry client already links, so the API client adds no crate), JSON bodies, the
//! bearer token when the kubeconfig has one, bounded timeouts (a slow server costs the
//! cluster thread at most [`REQUEST_TIMEOUT`] per call, never the reconciler), and the
//! server's `Status` objects turned into [`ApiError`]s that keep the HTTP code, the
//! `reason` (`NotFound`, `Conflict`, `AlreadyExists`, `Forbidden`…) and the message.

use super::kubeconfig::Kubeconfig;
use serde_json::Value;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Connecting to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request; the kubelet's client uses no longer for its writes to keep status
/// fresh, and a Lease renewal must fit well inside the 10 s renew interval.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read (a node's pod list with its mirrors is far smaller).
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status.
    #[error("{method} {path}: {code} {reason}: {message}")]
    Status {
        /// The request method.
        method: &'static str,
        /// The request path.
        path: String,
        /// HTTP status code.
        code: u16,
        /// The `Status` object's `reason` (`NotFound`, `Conflict`…), or the HTTP text.
        reason: String,
        /// The `Status` object's `message`.
        message: String,
    },
    /// No answer: connection refused, TLS failure, timeout, a body that is not JSON.
    #[error("{method} {path}: {message}")]
    Transport {
        /// The request method.
        method: &'static str,
        /// The request path.
        path: String,
        /// What happened.
        message: String,
    },
}

impl ApiError {
    /// The HTTP code, if the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            ApiError::Transport { .. } => None,
        }
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 409 (a stale resourceVersion, a failed UID precondition, or AlreadyExists).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
}

/// A client of one API server.
pub struct Api {
    agent: ureq::Agent,
    server: String,
    token: Option<String>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("server", &self.server).finish()
    }
}

/// Content types of the calls keel makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `application/json` (create, update, delete options).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    MergePatch,
}

impl Api {
    /// A client for the server and credentials of `kc`.
    pub fn new(kc: &Kubeconfig) -> Api {
        let agent = ureq::AgentBuilder::new()
            .tls_connector(Arc::new(crate::tls::Connector {
                config: kc.tls.clone(),
                server_name: kc.tls_server_name.clone(),
            }))
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirects(0)
            .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
            .build();
        Api {
            agent,
            server: kc.server.clone(),
            token: kc.token.clone(),
        }
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends `method path` with an optional body; the answer's JSON.
    pub fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(Body, &Value)>,
    ) -> Result<Value, ApiError> {
        let transport = |message: String| ApiError::Transport {
            method,
            path: path.to_string(),
            message,
        };
        let mut req = self
            .agent
            .request(method, &format!("{}{path}", self.server))
            .set("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Some((kind, v)) => {
                let ct = match kind {
                    Body::Json => "application/json",
                    Body::MergePatch => "application/merge-patch+json",
                };
                req.set("Content-Type", ct).send_string(&v.to_string())
            }
            None => req.call(),
        };
        let read = |r: ureq::Response| -> Result<Vec<u8>, String> {
            let mut buf = Vec::new();
            r.into_reader()
                .take(MAX_BODY + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading the answer: {e}"))?;
            if buf.len() as u64 > MAX_BODY {
                return Err(format!("answer larger than {MAX_BODY} bytes"));
            }
            Ok(buf)
        };
        match result {
            Ok(r) => {
                let buf = read(r).map_err(transport)?;
                serde_json::from_slice(&buf)
                    .map_err(|e| transport(format!("answer is not JSON: {e}")))
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.status_text().to_string();
                let v: Value = read(r)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                Err(ApiError::Status {
                    method,
                    path: path.to_string(),
                    code,
                    reason: v["reason"].as_str().unwrap_or(&text).to_string(),
                    message: v["message"].as_str().unwrap_or("").to_string(),
                })
            }
            Err(ureq::Error::Transport(t)) => Err(transport(t.to_string())),
        }
    }

    /// GET.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.call("GET", path, None)
    }

    /// POST a JSON object (create).
    pub fn create(&self, path: &str, obj: &Value) -> Result<Value, ApiError> {
        self.call("POST", path, Some((Body::Json, obj)))
    }

    /// PUT a JSON object (update, with its resourceVersion).
    pub fn update(&self, path: &str, obj: &Value) -> Result<Value, ApiError> {
        self.call("PUT", path, Some((Body::Json, obj)))
    }

    /// PATCH with a JSON merge patch.
    pub fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ApiError> {
        self.call("PATCH", path, Some((Body::MergePatch, patch)))
    }

    /// DELETE with `DeleteOptions`.
    pub fn delete(&self, path: &str, options: &Value) -> Result<Value, ApiError> {
        self.call("DELETE", path, Some((Body::Json, options)))
    }
}
