//! The healthz endpoint, as the kubelet's (`--healthz-port`, default 10248,
//! `--healthz-bind-address`, default 127.0.0.1): what kubeadm and monitoring poll.
//!
//! This module deals with answering `GET /healthz` over plain HTTP/1.1: `200 ok` while
//! the agent's loop is turning, `500` naming how long it has been stuck once it has not
//! run for [`STALE_AFTER`] (the loop wakes at least once a minute, so only a hung loop
//! gets there). Any other path is `404`. Each connection serves one request; requests
//! are read up to a small bound and a client that sends nothing is dropped after
//! [`READ_TIMEOUT`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the loop may go without a turn before healthz fails (the kubelet's sync loop
/// check allows a few minutes too).
pub const STALE_AFTER: Duration = Duration::from_secs(180);
/// How long a connection may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// When the agent loop last turned, in milliseconds since `start`.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    /// A heartbeat beating now.
    pub fn new() -> Self {
        Heartbeat {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records a turn of the loop.
    pub fn beat(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last turn.
    pub fn age(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

/// The status line and body for a request head.
fn answer(head: &str, age: Duration) -> (&'static str, String) {
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/healthz" if age <= STALE_AFTER => ("200 OK", "ok".into()),
        "/healthz" => (
            "500 Internal Server Error",
            format!("the agent loop has not run for {}s", age.as_secs()),
        ),
        _ => ("404 Not Found", "404 page not found\n".into()),
    }
}

async fn serve_one(mut s: tokio::net::TcpStream, beat: Heartbeat) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while buf.len() < MAX_REQUEST && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if tokio::time::timeout(READ_TIMEOUT, read).await.is_err() {
        return;
    }
    let (status, body) = answer(&String::from_utf8_lossy(&buf), beat.age());
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// Binds the endpoint (must be called inside a tokio runtime).
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves healthz on `listener` forever.
pub async fn serve(listener: tokio::net::TcpListener, beat: Heartbeat) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                tokio::spawn(serve_one(s, beat.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_ok_while_the_loop_turns_and_500_when_stuck() {
        let fresh = Duration::from_secs(1);
        assert_eq!(
            answer("GET /healthz HTTP/1.1\r\n", fresh),
            ("200 OK", "ok".into())
        );
        assert_eq!(
            answer("GET /healthz?verbose HTTP/1.1\r\n", fresh).0,
            "200 OK"
        );
        let (st, body) = answer("GET /healthz HTTP/1.1\r\n", STALE_AFTER + fresh);
        assert!(
            st.starts_with("500") && body.contains("181s"),
            "{st} {body}"
        );
        assert_eq!(
            answer("GET /metrics HTTP/1.1\r\n", fresh).0,
            "404 Not Found"
        );
    }
}
