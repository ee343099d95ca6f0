//! Network probes as the kubelet runs them: `httpGet` over HTTP or HTTPS ([`http`]) and
//! `grpc` health checks ([`grpc`]). Each call blocks for at most its timeout and connects
//! from the calling thread, so a caller that entered a pod's network namespace probes
//! from inside the pod.

pub mod grpc;
pub mod http;

/// The `User-Agent` probes send unless the manifest sets one (the kubelet sends
/// `kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = concat!("kube-probe/keel-", env!("CARGO_PKG_VERSION"));

/// `host:port`, with brackets around an IPv6 address (Go's `net.JoinHostPort`).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
