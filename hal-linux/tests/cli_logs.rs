//! `keel logs` against a fake agent and real CRI log files in a temp dir.

mod cli_support;

use cli_support::*;
use keel_core::machine::{State, WaitReason};
use keel_core::status::Phase;
use keel_linux::cli::logs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A pod `app` with containers `main` (restarted twice) and `side`, and init `setup`.
fn setup(dir: &Path) -> (FakeAgent, std::path::PathBuf) {
    let t = Times::new();
    let logs = dir.join("logs");
    let mut main = running(&t, 10, true);
    main.restart_count = 2;
    main.last = Some(term(&t, 1, 30, 20));
    let mut init = waiting(WaitReason::ContainerCreating);
    let done = term(&t, 0, 60, 55);
    init.state = State::Terminated(done);
    init.last = Some(done);
    let mut p = pod(
        &t,
        "app",
        Phase::Running,
        vec![
            container("setup", true, init, &logs),
            container("main", false, main, &logs),
            container("side", false, waiting(WaitReason::ContainerCreating), &logs),
        ],
    );
    p.uid = "a".repeat(32);
    let single = pod(
        &t,
        "single",
        Phase::Running,
        vec![container("only", false, running(&t, 5, true), &logs)],
    );
    let main_dir = logs.join("main");
    write(&main_dir.join("0.log"), "T0 stdout F run zero\n");
    write(
        &main_dir.join("1.log"),
        "T1 stdout F run one\nT1 stderr F run one failed\n",
    );
    // Run 2 rotated twice: .2 oldest, then .1, then the live file.
    write(&main_dir.join("2.log.2"), "T2 stdout F first\n");
    write(
        &main_dir.join("2.log.1"),
        "T2 stdout P sec\nT2 stdout F ond\n",
    );
    write(
        &main_dir.join("2.log"),
        "T2 stdout F third\nT2 stdout P no newline yet",
    );
    write(&logs.join("setup").join("0.log"), "T stdout F migrated\n");
    write(&logs.join("only").join("0.log"), "T stdout F alone\n");
    let agent = FakeAgent::start(
        dir,
        Canned {
            pods: vec![p, single],
            manifests: vec![],
        },
        t.clock,
    );
    (agent, logs)
}

#[test]
fn prints_the_current_run_across_rotated_files_in_order() {
    let dir = TempDir::new("logs-cur");
    let (agent, _) = setup(dir.path());
    let (code, out, err) = run(logs::run_with, &agent.args(&["-c", "main", "app"]));
    assert_eq!(code, 0, "{err}");
    // The unfinished last record is still being written and is not shown yet.
    assert_eq!(out, "first\nsecond\nthird\n");
}

#[test]
fn previous_reads_the_run_before() {
    let dir = TempDir::new("logs-prev");
    let (agent, _) = setup(dir.path());
    let (code, out, err) = run(
        logs::run_with,
        &agent.args(&["--previous", "-c", "main", "app"]),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "run one\nrun one failed\n");
    let (code, _, err) = run(logs::run_with, &agent.args(&["-p", "single"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("previous terminated container \"only\" in pod \"single-node1\" not found"),
        "{err}"
    );
}

#[test]
fn timestamps_and_tail() {
    let dir = TempDir::new("logs-tail");
    let (agent, _) = setup(dir.path());
    let (_, out, _) = run(
        logs::run_with,
        &agent.args(&["-c", "main", "--tail=2", "--timestamps", "app"]),
    );
    assert_eq!(out, "T2 second\nT2 third\n");
}

#[test]
fn a_container_must_be_named_when_there_are_several() {
    let dir = TempDir::new("logs-pick");
    let (agent, _) = setup(dir.path());
    let (code, _, err) = run(logs::run_with, &agent.args(&["app"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("a container name must be specified for pod app-node1, choose one of: [main side] or one of the init containers: [setup]"),
        "{err}"
    );
    let (code, _, err) = run(logs::run_with, &agent.args(&["-c", "nope", "app"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("container nope is not valid for pod app-node1"),
        "{err}"
    );
    // Init containers can be named; a single container needs no name; UID works.
    let (_, out, _) = run(logs::run_with, &agent.args(&["-c", "setup", "app"]));
    assert_eq!(out, "migrated\n");
    let (_, out, _) = run(logs::run_with, &agent.args(&["single-node1"]));
    assert_eq!(out, "alone\n");
    let (_, out, _) = run(
        logs::run_with,
        &agent.args(&["-c", "setup", &"a".repeat(32)]),
    );
    assert_eq!(out, "migrated\n");
}

#[test]
fn a_container_that_never_started_says_it_is_waiting() {
    let dir = TempDir::new("logs-wait");
    let (agent, _) = setup(dir.path());
    let (code, out, err) = run(logs::run_with, &agent.args(&["-c", "side", "app"]));
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains(
            "container \"side\" in pod \"app-node1\" is waiting to start: ContainerCreating"
        ),
        "{err}"
    );
    let (code, _, err) = run(logs::run_with, &agent.args(&["nope"]));
    assert_eq!(code, 1);
    assert!(err.contains("pod \"nope\" not found"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["a", "b"],
        &["-f", "--previous", "a"],
        &["--tail", "x", "a"],
        &["--bogus", "a"],
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (code, _, err) = run(logs::run_with, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

/// A writer the test can read while `logs -f` writes to it from another thread.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn wait_for(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.text().ends_with(want) {
            assert!(
                Instant::now() < deadline,
                "waited for {want:?}, have {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn follow_reads_new_lines_rotations_and_the_next_restart_then_ends_with_the_pod() {
    let dir = TempDir::new("logs-follow");
    let (agent, logs_dir) = setup(dir.path());
    let main = logs_dir.join("main");
    let out = Shared::default();
    let args = agent.args(&["-f", "-c", "main", "app"]);
    let (mut o, mut e) = (out.clone(), Shared::default());
    let err = e.clone();
    let follower = std::thread::spawn(move || logs::run_with(&args, &mut o, &mut e));

    out.wait_for("first\nsecond\nthird\n");
    // The record being written is completed; its P (partial) text joins the next record.
    append(&main.join("2.log"), "\nT2 stdout F fourth\n");
    out.wait_for("third\nno newline yetfourth\n");

    // Rotation: the live file moves to .1 and a fresh one starts.
    std::fs::rename(main.join("2.log.1"), main.join("2.log.2")).unwrap();
    append(&main.join("2.log"), "T2 stdout F fifth\n");
    std::fs::rename(main.join("2.log"), main.join("2.log.1")).unwrap();
    write(&main.join("2.log"), "T2 stdout F sixth\n");
    out.wait_for("yetfourth\nfifth\nsixth\n");

    // The container restarts: run 3's file follows.
    write(&main.join("3.log"), "T3 stdout F run three\n");
    agent.state.lock().unwrap().pods[0].containers[1]
        .status
        .restart_count = 3;
    out.wait_for("sixth\nrun three\n");

    // The pod goes away: follow ends.
    agent.state.lock().unwrap().pods.clear();
    let code = follower.join().unwrap();
    assert_eq!(code, 0, "{}", err.text());
    assert_eq!(
        out.text(),
        "first\nsecond\nthird\nno newline yetfourth\nfifth\nsixth\nrun three\n"
    );
}
