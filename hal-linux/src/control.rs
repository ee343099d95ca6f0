//! The control socket: frames, the agent's server and the CLI's client.
//!
//! This module deals with moving [`crate::wire`] messages over the unix socket between a
//! running agent and the `keel` commands people type. A frame is a `u32` little-endian
//! length followed by that many bytes of postcard; frames over [`MAX_FRAME`] are refused
//! on both sides. A connection starts with [`Request::Hello`]; the server answers it
//! itself (version check, node, clock) and refuses any other first request. Every later
//! request goes to the agent loop as a [`Call`] over a tokio channel, so the reconciler
//! (which is not `Sync`) answers from inside its own `select!`:
//!
//! ```ignore
//! let listener = control::bind(&socket)?;                    // inside the runtime
//! let (tx, mut calls) = tokio::sync::mpsc::channel(16);
//! tokio::spawn(control::serve(listener, info, tx));
//! loop {
//!     tokio::select! {
//!         Some(call) = calls.recv() => { let r = answer(&reconciler, call.request()); call.reply(r); }
//!         // ... timers, inotify, shim exits
//!     }
//! }
//! ```
//!
//! The client ([`Client`]) is plain blocking std, for the CLI.

use crate::wire::{Clock, Request, Response, PROTOCOL_VERSION};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The default socket path (`--socket`).
pub const DEFAULT_SOCKET: &str = "/run/keel/keel.sock";

/// Largest frame either side accepts. A `Pods` answer for the largest pod count with long
/// names and pod JSON is well under 1 MiB; 16 MiB leaves room while still bounding what a
/// confused or hostile peer can make the other side allocate.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// How long the CLI waits for an answer before giving up on a stuck agent. Answers come
/// from the agent loop between polls, which are bounded; 30 s means something is wrong.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the server keeps a connection that sends nothing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What can go wrong on the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No agent accepts connections on the socket.
    #[error(
        "no keel agent is listening on {path}: start one with `keel agent …`, or pass --socket"
    )]
    NotListening {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but this user may not connect (it is mode 0600, owned by root).
    #[error("permission denied on {path}: the control socket is only open to its owner (usually root); try sudo")]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// Another agent answers on the socket.
    #[error("socket {path} is in use by another keel agent{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse {
        /// The socket path.
        path: PathBuf,
        /// The other agent's pid, when the kernel tells.
        pid: Option<i32>,
    },
    /// Something other than a socket is in the way.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An I/O error on an established connection.
    #[error("control connection: {0}")]
    Connection(#[source] io::Error),
    /// The peer closed the connection.
    #[error("the agent closed the connection")]
    Closed,
    /// A frame longer than [`MAX_FRAME`].
    #[error("control frame of {0} bytes is larger than the limit of {MAX_FRAME} bytes")]
    FrameTooLarge(usize),
    /// A frame that does not decode.
    #[error("malformed control message: {0}")]
    Decode(#[source] postcard::Error),
    /// The agent speaks another protocol version.
    #[error("protocol version mismatch: this keel speaks version {client}, the agent speaks version {agent}; use the keel binary that matches the running agent")]
    Version {
        /// Ours.
        client: u32,
        /// Theirs.
        agent: u32,
    },
    /// The agent answered with an error.
    #[error("agent: {0}")]
    Agent(String),
    /// The agent answered with a message that does not fit the request.
    #[error("unexpected answer from the agent: {0}")]
    Unexpected(String),
}

fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ControlError> {
    let body = postcard::to_stdvec(msg).map_err(ControlError::Decode)?;
    if body.len() > MAX_FRAME {
        return Err(ControlError::FrameTooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

fn check_len(header: [u8; 4]) -> Result<usize, ControlError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(ControlError::FrameTooLarge(len));
    }
    Ok(len)
}

fn closed_or(e: io::Error) -> ControlError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ControlError::Closed
    } else {
        ControlError::Connection(e)
    }
}

/// Writes one frame (blocking).
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ControlError> {
    let frame = encode(msg)?;
    w.write_all(&frame).map_err(closed_or)?;
    w.flush().map_err(closed_or)
}

/// Reads one frame (blocking).
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<T, ControlError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).map_err(closed_or)?;
    let mut body = vec![0u8; check_len(header)?];
    r.read_exact(&mut body).map_err(closed_or)?;
    postcard::from_bytes(&body).map_err(ControlError::Decode)
}

/// Writes one frame (async).
pub async fn write_frame_async<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> Result<(), ControlError> {
    let frame = encode(msg)?;
    w.write_all(&frame).await.map_err(closed_or)?;
    w.flush().await.map_err(closed_or)
}

/// Reads one frame (async). `Ok(None)` when the peer closed cleanly between frames.
pub async fn read_frame_async<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<Option<T>, ControlError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r
            .read(&mut header[got..])
            .await
            .map_err(ControlError::Connection)?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ControlError::Closed)
            };
        }
        got += n;
    }
    let mut body = vec![0u8; check_len(header)?];
    r.read_exact(&mut body).await.map_err(closed_or)?;
    postcard::from_bytes(&body)
        .map(Some)
        .map_err(ControlError::Decode)
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ControlError + '_ {
    move |source| ControlError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The pid of the process on the other end of a connected unix socket.
fn peer_pid(s: &UnixStream) -> Option<i32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(s, PeerCredentials).ok().map(|c| c.pid())
}

/// Prepares `path` for a new listener: creates the parent directory, refuses when an
/// agent answers there, removes a stale socket file. Then binds a std listener with mode
/// 0600 (bound under a temporary name, chmod-ed, then renamed into place, so the socket
/// is never reachable with a wider mode).
pub fn bind_std(path: &Path) -> Result<std::os::unix::net::UnixListener, ControlError> {
    use std::os::unix::fs::FileTypeExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ControlError::NotASocket {
                path: path.to_owned(),
            })
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(s) => {
                return Err(ControlError::InUse {
                    path: path.to_owned(),
                    pid: peer_pid(&s),
                })
            }
            // Nobody accepts: a socket left by an agent that died.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io_at(path))?;
            }
            Err(e) => return Err(io_at(path)(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(path)(e)),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keel.sock".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(io_at(&tmp))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_at(path)(e));
    }
    Ok(listener)
}

/// [`bind_std`] as a tokio listener. Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener, ControlError> {
    let l = bind_std(path)?;
    l.set_nonblocking(true).map_err(io_at(path))?;
    tokio::net::UnixListener::from_std(l).map_err(io_at(path))
}

/// What the server says in its Hello answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The agent's build (`CARGO_PKG_VERSION`).
    pub agent: String,
    /// The node name.
    pub node: String,
    /// The agent's instant-to-wall-clock conversion.
    pub clock: Clock,
}

impl ServerInfo {
    fn hello(&self) -> Response {
        Response::Hello {
            version: PROTOCOL_VERSION,
            agent: self.agent.clone(),
            node: self.node.clone(),
            clock: self.clock,
        }
    }
}

/// One request for the agent loop to answer.
#[derive(Debug)]
pub struct Call {
    request: Request,
    reply: oneshot::Sender<Response>,
}

impl Call {
    /// A call from inside the agent's process (the cluster thread's pod snapshots) and
    /// the receiver of its answer.
    pub fn new(request: Request) -> (Call, oneshot::Receiver<Response>) {
        let (reply, rx) = oneshot::channel();
        (Call { request, reply }, rx)
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Sends the answer (dropped silently if the client has gone).
    pub fn reply(self, response: Response) {
        let _ = self.reply.send(response);
    }
}

/// The answer to a connection's first request (Hello is answered here, not by the loop).
fn hello_answer(first: &Request, info: &ServerInfo) -> Result<Response, String> {
    match first {
        Request::Hello { version } if *version == PROTOCOL_VERSION => Ok(info.hello()),
        Request::Hello { version } => Err(format!(
            "protocol version mismatch: the client speaks version {version}, this agent (keel {}) speaks version {PROTOCOL_VERSION}; use the keel binary that matches the running agent",
            info.agent
        )),
        _ => Err("the first request on a connection must be Hello".into()),
    }
}

async fn connection(
    mut stream: tokio::net::UnixStream,
    info: std::sync::Arc<ServerInfo>,
    calls: mpsc::Sender<Call>,
) -> Result<(), ControlError> {
    let mut first = true;
    loop {
        let next = tokio::time::timeout(IDLE_TIMEOUT, read_frame_async::<Request>(&mut stream));
        let request = match next.await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(r))) => r,
            Ok(Err(e)) => {
                // Tell the client why before hanging up (a too-large or garbled frame).
                let _ = write_frame_async(&mut stream, &Response::Error(e.to_string())).await;
                return Err(e);
            }
        };
        let response = if first {
            first = false;
            match hello_answer(&request, &info) {
                Ok(r) => r,
                Err(refusal) => {
                    write_frame_async(&mut stream, &Response::Error(refusal)).await?;
                    return Ok(());
                }
            }
        } else if let Request::Hello { .. } = request {
            info.hello()
        } else {
            let (tx, rx) = oneshot::channel();
            let call = Call { request, reply: tx };
            if calls.send(call).await.is_err() {
                Response::Error("the agent is shutting down".into())
            } else {
                rx.await
                    .unwrap_or_else(|_| Response::Error("the agent dropped the request".into()))
            }
        };
        write_frame_async(&mut stream, &response).await?;
    }
}

/// Accepts connections forever, one task per connection; requests after Hello are sent
/// to `calls` for the agent loop to answer. Returns when accepting fails for good.
pub async fn serve(
    listener: tokio::net::UnixListener,
    info: ServerInfo,
    calls: mpsc::Sender<Call>,
) {
    serve_as(listener, info, calls, Access::default()).await
}

/// Who may talk to the agent over its socket, checked on every connection with the
/// peer's kernel credentials (SO_PEERCRED), whatever the socket file's mode says: root,
/// the agent's own user, and members of `group` when one is given (`--socket-group`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// A group whose members are admitted besides root.
    pub group: Option<u32>,
}

impl Access {
    /// Whether a peer with `uid`, primary `gid` and supplementary `groups` is admitted.
    pub fn admits(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        uid == 0
            || uid == nix::unistd::geteuid().as_raw()
            || self.group.is_some_and(|g| gid == g || groups.contains(&g))
    }

    /// Why `uid` is refused, for the answer the refused client gets.
    fn refusal(&self, uid: u32) -> String {
        match self.group {
            Some(g) => format!(
                "permission denied: uid {uid} is neither root nor in group {g} (--socket-group)"
            ),
            None => format!(
                "permission denied: uid {uid} is not root; the agent can admit a group with --socket-group"
            ),
        }
    }
}

/// The supplementary groups of process `pid` (from /proc; empty when unknown).
fn groups_of(pid: Option<i32>) -> Vec<u32> {
    let Some(pid) = pid else { return Vec::new() };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// [`serve`] admitting the peers `access` allows; anyone else gets an error answer and
/// the connection is closed before a request is read.
pub async fn serve_as(
    listener: tokio::net::UnixListener,
    info: ServerInfo,
    calls: mpsc::Sender<Call>,
    access: Access,
) {
    let info = std::sync::Arc::new(info);
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let admitted = stream.peer_cred().ok().map(|c| {
                    let groups = if access.group.is_some() {
                        groups_of(c.pid())
                    } else {
                        Vec::new()
                    };
                    (c.uid(), access.admits(c.uid(), c.gid(), &groups))
                });
                match admitted {
                    Some((_, true)) => {
                        tokio::spawn(connection(stream, info.clone(), calls.clone()));
                    }
                    refused => {
                        let why = match refused {
                            Some((uid, _)) => access.refusal(uid),
                            None => "permission denied: the peer's credentials are unknown".into(),
                        };
                        tokio::spawn(async move {
                            // Take the client's Hello first (a few bytes, never decoded),
                            // so it reads the refusal instead of a broken pipe.
                            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                                let mut hello = [0u8; 256];
                                let _ = stream.read(&mut hello).await;
                                write_frame_async(&mut stream, &Response::Error(why)).await
                            })
                            .await;
                        });
                    }
                }
            }
            Err(e) => {
                // EMFILE and the like pass; back off briefly rather than spin.
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::ConnectionAborted
                {
                    continue;
                }
                return;
            }
        }
    }
}

/// [`serve`] with a handler answering each request in turn: for tools and tests that have
/// no loop of their own. Runs until the listener fails.
pub async fn serve_fn(
    listener: tokio::net::UnixListener,
    info: ServerInfo,
    mut handler: impl FnMut(&Request) -> Response,
) {
    let (tx, mut rx) = mpsc::channel(16);
    let server = tokio::spawn(serve(listener, info, tx));
    while let Some(call) = rx.recv().await {
        let r = handler(call.request());
        call.reply(r);
    }
    let _ = server.await;
}

/// The agent's Hello answer, as the client keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    /// Protocol version.
    pub version: u32,
    /// The agent's build.
    pub agent: String,
    /// The node name.
    pub node: String,
    /// Instant-to-wall-clock conversion.
    pub clock: Clock,
}

/// A blocking connection to an agent, after a successful Hello.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    info: AgentInfo,
}

impl Client {
    /// Connects to the agent on `path` and exchanges Hello.
    pub fn connect(path: &Path) -> Result<Client, ControlError> {
        Self::connect_as(path, PROTOCOL_VERSION)
    }

    /// [`Client::connect`] claiming protocol `version` (tests of the version check).
    pub fn connect_as(path: &Path, version: u32) -> Result<Client, ControlError> {
        let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ControlError::NotListening {
                    path: path.to_owned(),
                }
            }
            io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
                path: path.to_owned(),
            },
            _ => ControlError::Io {
                path: path.to_owned(),
                source: e,
            },
        })?;
        let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
        let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
        write_frame(&mut stream, &Request::Hello { version })?;
        match read_frame::<Response>(&mut stream)? {
            Response::Hello {
                version: agent,
                agent: build,
                node,
                clock,
            } => {
                if agent != version {
                    return Err(ControlError::Version {
                        client: version,
                        agent,
                    });
                }
                Ok(Client {
                    stream,
                    info: AgentInfo {
                        version: agent,
                        agent: build,
                        node,
                        clock,
                    },
                })
            }
            Response::Error(msg) => Err(ControlError::Agent(msg)),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }

    /// What the agent said in its Hello.
    pub fn info(&self) -> &AgentInfo {
        &self.info
    }

    /// Sends a request and waits for the answer. [`Response::Error`] becomes
    /// [`ControlError::Agent`].
    pub fn request(&mut self, request: &Request) -> Result<Response, ControlError> {
        write_frame(&mut self.stream, request)?;
        match read_frame::<Response>(&mut self.stream)? {
            Response::Error(msg) => Err(ControlError::Agent(msg)),
            r => Ok(r),
        }
    }

    /// Every pod.
    pub fn pods(&mut self) -> Result<Vec<crate::wire::PodInfo>, ControlError> {
        match self.request(&Request::Pods)? {
            Response::Pods(p) => Ok(p),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Every manifest file.
    pub fn manifests(&mut self) -> Result<Vec<crate::wire::ManifestInfo>, ControlError> {
        match self.request(&Request::Manifests)? {
            Response::Manifests(m) => Ok(m),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_oversized_lengths() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::Inspect { pod: "web".into() }).unwrap();
        assert_eq!(
            u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize,
            buf.len() - 4
        );
        let back: Request = read_frame(&mut &buf[..]).unwrap();
        assert_eq!(back, Request::Inspect { pod: "web".into() });

        let mut huge = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let e = read_frame::<Request>(&mut &huge[..]).unwrap_err();
        assert!(
            matches!(e, ControlError::FrameTooLarge(n) if n == MAX_FRAME + 1),
            "{e}"
        );
    }

    #[test]
    fn truncated_frame_is_closed() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::Pods).unwrap();
        buf.push(0); // header of a next frame cut short
        let mut r = &buf[..];
        let _: Request = read_frame(&mut r).unwrap();
        assert!(matches!(
            read_frame::<Request>(&mut r),
            Err(ControlError::Closed)
        ));
    }

    #[test]
    fn first_request_must_be_hello_with_our_version() {
        let info = ServerInfo {
            agent: "0.1.0".into(),
            node: "n".into(),
            clock: Clock { boot_unix_ms: 0 },
        };
        assert!(hello_answer(
            &Request::Hello {
                version: PROTOCOL_VERSION
            },
            &info
        )
        .is_ok());
        let m = hello_answer(&Request::Hello { version: 99 }, &info).unwrap_err();
        assert!(
            m.contains("99") && m.contains(&PROTOCOL_VERSION.to_string()),
            "{m}"
        );
        assert!(hello_answer(&Request::Pods, &info).is_err());
    }
}
