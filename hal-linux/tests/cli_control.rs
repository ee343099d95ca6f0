//! The control socket: bind, refusals, Hello and version checks, errors people read.

mod cli_support;

use cli_support::*;
use keel_linux::control::{self, Client, ControlError};
use keel_linux::wire::{Request, Response, PROTOCOL_VERSION};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

#[test]
fn no_agent_listening_is_a_clear_error_and_exit_1() {
    let dir = TempDir::new("noagent");
    let sock = dir.path().join("keel.sock");
    let e = Client::connect(&sock).unwrap_err();
    assert!(matches!(e, ControlError::NotListening { .. }));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("no keel agent is listening on {}", sock.display())),
        "{msg}"
    );
    assert!(
        msg.contains("keel agent") && msg.contains("--socket"),
        "{msg}"
    );

    // A stale socket file (an agent that died) reads the same.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(matches!(
        Client::connect(&sock),
        Err(ControlError::NotListening { .. })
    ));

    let args = vec!["--socket".to_string(), sock.display().to_string()];
    let (code, out, err) = run(keel_linux::cli::pods::run_with, &args);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("keel pods: no keel agent is listening on"),
        "{err}"
    );
}

#[test]
fn socket_is_created_with_mode_0600_in_a_new_directory() {
    let dir = TempDir::new("mode");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), Canned::default(), t.clock);
    let meta = std::fs::metadata(&agent.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // No temporary names left behind.
    let names: Vec<_> = std::fs::read_dir(agent.socket.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keel.sock"]);
}

#[test]
fn a_second_agent_is_refused_while_the_first_answers() {
    let dir = TempDir::new("inuse");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), Canned::default(), t.clock);
    let e = control::bind_std(&agent.socket).unwrap_err();
    match &e {
        ControlError::InUse { pid, .. } => assert_eq!(*pid, Some(std::process::id() as i32)),
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert_eq!(
        msg,
        format!(
            "socket {} is in use by another keel agent (pid {})",
            agent.socket.display(),
            std::process::id()
        )
    );
    // The first agent still answers.
    let mut c = Client::connect(&agent.socket).unwrap();
    assert!(c.pods().unwrap().is_empty());
}

#[test]
fn a_stale_socket_is_replaced_and_other_files_are_not() {
    let dir = TempDir::new("stale");
    let sock = dir.path().join("keel.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let l = control::bind_std(&sock).unwrap();
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    drop(l);

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let e = control::bind_std(&file).unwrap_err();
    assert!(matches!(e, ControlError::NotASocket { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn hello_carries_node_and_clock_and_versions_must_match() {
    let dir = TempDir::new("hello");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), Canned::default(), t.clock);
    let c = Client::connect(&agent.socket).unwrap();
    assert_eq!(c.info().node, NODE);
    assert_eq!(c.info().clock, t.clock);
    assert_eq!(c.info().version, PROTOCOL_VERSION);

    let e = Client::connect_as(&agent.socket, PROTOCOL_VERSION + 1).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("protocol version mismatch"), "{msg}");
    assert!(
        msg.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("version {PROTOCOL_VERSION}")),
        "{msg}"
    );
}

#[test]
fn the_first_request_must_be_hello() {
    let dir = TempDir::new("nohello");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), Canned::default(), t.clock);
    let mut s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    control::write_frame(&mut s, &Request::Pods).unwrap();
    let r: Response = control::read_frame(&mut s).unwrap();
    assert_eq!(
        r,
        Response::Error("the first request on a connection must be Hello".into())
    );
    // And the server hangs up.
    assert!(matches!(
        control::read_frame::<Response>(&mut s),
        Err(ControlError::Closed)
    ));
}

#[test]
fn an_oversized_frame_is_refused_with_a_message() {
    let dir = TempDir::new("bigframe");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), Canned::default(), t.clock);
    let mut s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    use std::io::Write;
    s.write_all(&((control::MAX_FRAME as u32) + 1).to_le_bytes())
        .unwrap();
    let r: Response = control::read_frame(&mut s).unwrap();
    let Response::Error(m) = r else {
        panic!("{r:?}")
    };
    assert!(m.contains("larger than the limit"), "{m}");
}

#[test]
fn one_connection_serves_many_requests() {
    let dir = TempDir::new("many");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    let mut c = Client::connect(&agent.socket).unwrap();
    for _ in 0..3 {
        assert_eq!(c.pods().unwrap().len(), 7);
        assert_eq!(c.manifests().unwrap().len(), 5);
    }
    match c.request(&Request::Inspect { pod: "web".into() }).unwrap() {
        Response::Pod(Some(p)) => assert_eq!(p.name, "web-node1"),
        other => panic!("{other:?}"),
    }
}
