//! Firmware scenarios: boot the real firmware in QEMU (`lm3s6965evb`) and drive it over
//! the UART with the management protocol, checking replies and the decoded defmt log.
//!
//! Needs `qemu-system-arm` and the `thumbv7m-none-eabi` target. The first test to run
//! builds the firmware (`cargo build --release` in hal-qemu/).

use std::time::{Duration, Instant};

use keel_core::machine::{TermReason, WaitReason};
use keel_core::mgmt::{
    ContainerState, ErrorCode, Request, Response, MAX_MANIFEST_LEN, PROTOCOL_VERSION,
    REQUEST_VARIANTS,
};
use keel_core::platform::PlatformErrorKind;
use keel_core::status::{FileState, Phase};
use keel_host_tests::qemu::{pod, task_pod, Qemu, Snapshot, FIRMWARE, READY};

const MANIFEST: &[u8] = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: blink\nspec:\n  containers:\n  - name: blink\n    image: task:forever\n";

/// Pod slots of the firmware (`hal-qemu/src/app.rs`, `POD_SLOTS`).
const POD_SLOTS: usize = 8;

const WAIT: Duration = Duration::from_secs(4);

fn boot() -> Qemu {
    Qemu::boot().expect("boot firmware")
}

fn put_ok(q: &mut Qemu, name: &str, bytes: &[u8]) {
    assert_eq!(q.put(name, bytes).expect("put"), Response::Ok, "put {name}");
}

fn running(s: &Snapshot, name: &str) -> bool {
    s.pod(name).is_some_and(|p| {
        p.phase == Phase::Running
            && p.containers
                .iter()
                .filter(|c| !c.init)
                .all(|c| matches!(c.state, ContainerState::Running { .. }))
    })
}

fn error(code: ErrorCode) -> Response {
    Response::Error { code }
}

fn names(q: &mut Qemu) -> Vec<(String, u16)> {
    match q.request(&Request::ListManifests).expect("list") {
        Response::Manifests(list) => list.iter().map(|m| (m.name.to_string(), m.len)).collect(),
        other => panic!("expected Manifests, got {other:?}"),
    }
}

#[test]
fn hello_reports_protocol_version_and_boot_is_logged() {
    let q = boot();
    let line = q.wait_for_log(READY, Duration::from_secs(2)).unwrap();
    assert!(
        line.message.starts_with(&format!(
            "keel-qemu up: protocol v{PROTOCOL_VERSION}, node qemu"
        )),
        "{line}"
    );
    assert_eq!(line.level, "INFO");
    assert!(
        line.location.as_deref().unwrap_or("").contains("main.rs"),
        "{line}"
    );
    q.wait_for_log("req Hello v2", Duration::from_secs(2))
        .unwrap();
}

#[test]
fn put_then_list_then_replace_then_delete() {
    let mut q = boot();
    assert_eq!(names(&mut q), []);
    let put = Request::PutManifest {
        name: "blink",
        bytes: MANIFEST,
    };
    assert_eq!(q.request(&put).unwrap(), Response::Ok);
    q.wait_for_log("manifest blink: created", Duration::from_secs(2))
        .unwrap();
    assert_eq!(
        names(&mut q),
        [("blink".to_string(), MANIFEST.len() as u16)]
    );

    let put = Request::PutManifest {
        name: "blink",
        bytes: b"{}",
    };
    assert_eq!(q.request(&put).unwrap(), Response::Ok);
    q.wait_for_log("manifest blink: replaced", Duration::from_secs(2))
        .unwrap();
    assert_eq!(names(&mut q), [("blink".to_string(), 2)]);

    let s = q.snapshot().unwrap().status;
    assert_eq!((s.manifests, s.store_changes), (1, 2));

    let delete = Request::DeleteManifest { name: "blink" };
    assert_eq!(q.request(&delete).unwrap(), Response::Ok);
    assert_eq!(q.request(&delete).unwrap(), error(ErrorCode::NotFound));
    assert_eq!(names(&mut q), []);
}

#[test]
fn store_full_and_bad_names_are_refused() {
    let mut q = boot();
    // 12 names fit (the store has 12 entries); the reconciler ignores names without a
    // manifest extension, so these never become pods.
    for i in 0..12 {
        let name = format!("note-{i}");
        assert_eq!(q.put(&name, b"x").unwrap(), Response::Ok, "{name}");
    }
    assert_eq!(q.put("note-12", b"x").unwrap(), error(ErrorCode::StoreFull));
    // Replacing an existing name still works when full.
    assert_eq!(q.put("note-3", b"{}").unwrap(), Response::Ok);
    assert_eq!(q.put("", MANIFEST).unwrap(), error(ErrorCode::NameEmpty));
    let long = "x".repeat(65);
    assert_eq!(
        q.put(&long, MANIFEST).unwrap(),
        error(ErrorCode::NameTooLong)
    );
    assert_eq!(names(&mut q).len(), 8, "the list shows the first 8");
    let s = q
        .wait_status("files ignored", WAIT, |s| s.files.len() == 12)
        .unwrap();
    assert!(s
        .files
        .iter()
        .all(|f| matches!(f.state, FileState::Ignored(_))));
}

#[test]
fn malformed_and_unknown_frames_get_errors_and_firmware_keeps_working() {
    let mut q = boot();
    // COBS code byte pointing past the frame end.
    q.send_raw(&[0x09, 0x01, 0x02, 0x00]).unwrap();
    assert_eq!(
        q.recv(Duration::from_secs(2)).unwrap(),
        error(ErrorCode::Malformed)
    );
    // Valid COBS, but a PutManifest whose length runs past the frame.
    q.send_raw(&[0x05, 0x02, 0x01, b'a', 0x32, 0x00]).unwrap();
    assert_eq!(
        q.recv(Duration::from_secs(2)).unwrap(),
        error(ErrorCode::Malformed)
    );
    // A request tag from the future.
    q.send_raw(&[0x02, REQUEST_VARIANTS as u8, 0x00]).unwrap();
    assert_eq!(
        q.recv(Duration::from_secs(2)).unwrap(),
        error(ErrorCode::UnknownRequest)
    );
    // Lone delimiters are ignored (no reply), and the next request is answered.
    q.send_raw(&[0, 0, 0]).unwrap();
    assert_eq!(
        q.request(&Request::Ping { nonce: 42 }).unwrap(),
        Response::Pong { nonce: 42 }
    );
    q.wait_for_log("bad frame: UnknownRequest", Duration::from_secs(2))
        .unwrap();
}

#[test]
fn oversized_manifest_and_frame_are_rejected() {
    let mut q = boot();
    // Fits a frame, but not a store slot.
    let big = vec![b'a'; MAX_MANIFEST_LEN + 1];
    let put = Request::PutManifest {
        name: "big",
        bytes: &big,
    };
    assert_eq!(q.request(&put).unwrap(), error(ErrorCode::ManifestTooLarge));
    // Does not fit the frame buffer: skipped up to its delimiter.
    let huge = vec![b'a'; 4 * MAX_MANIFEST_LEN];
    let put = Request::PutManifest {
        name: "huge",
        bytes: &huge,
    };
    assert_eq!(q.request(&put).unwrap(), error(ErrorCode::FrameTooLong));
    // The largest allowed manifest is accepted (a bad one: the reconciler rejects it).
    let max = vec![b'm'; MAX_MANIFEST_LEN];
    let put = Request::PutManifest {
        name: "max",
        bytes: &max,
    };
    assert_eq!(q.request(&put).unwrap(), Response::Ok);
    assert_eq!(
        names(&mut q),
        [("max".to_string(), MAX_MANIFEST_LEN as u16)]
    );
    // The store's 3 KiB arena is shared: a second one does not fit.
    assert_eq!(q.put("max2", &max).unwrap(), error(ErrorCode::StoreFull));
    // A task pod still comes up in what is left.
    put_ok(&mut q, "blink.yaml", MANIFEST);
    q.wait_status("blink running", WAIT, |s| running(s, "blink"))
        .unwrap();
}

#[test]
fn burst_of_requests_is_not_lost() {
    let mut q = boot();
    // 200 pings written at once (~1.4 KiB, more than the 1 KiB RX ring's worth if the
    // main loop stalls): the RX interrupt must keep up and every one be answered in order.
    let mut burst = Vec::new();
    for nonce in 0..200u32 {
        burst.extend(postcard::to_stdvec_cobs(&Request::Ping { nonce }).unwrap());
    }
    q.send_raw(&burst).unwrap();
    for nonce in 0..200u32 {
        assert_eq!(
            q.recv(Duration::from_secs(2)).unwrap(),
            Response::Pong { nonce }
        );
    }
}

#[test]
fn clock_tracks_host_time() {
    let mut q = boot();
    // (host time before the request, firmware uptime, host time after the response)
    let uptime = |q: &mut Qemu| {
        let sent = Instant::now();
        match q.request(&Request::GetStatus).unwrap() {
            Response::Status(s) => (sent, s.uptime_ms, Instant::now()),
            other => panic!("{other:?}"),
        }
    };
    let (sent0, fw0, got0) = uptime(&mut q);
    std::thread::sleep(Duration::from_millis(1500));
    let (sent1, fw1, got1) = uptime(&mut q);
    // The firmware read its clock inside each round trip, so its interval lies between
    // these two host intervals, give or take 1 % and a millisecond of rounding. A 12 MHz
    // assumption (instead of 12.5) would be 4 % off.
    let shortest = (sent1 - got0).as_secs_f64() * 1000.0;
    let longest = (got1 - sent0).as_secs_f64() * 1000.0;
    let firmware = (fw1 - fw0) as f64;
    eprintln!("host {shortest:.1}..{longest:.1} ms, firmware {firmware} ms");
    assert!(
        firmware >= shortest * 0.99 - 1.0 && firmware <= longest * 1.01 + 1.0,
        "host {shortest:.1}..{longest:.1} ms vs firmware {firmware} ms"
    );
}

#[test]
fn panic_logs_and_exits_nonzero() {
    let mut q = Qemu::start("crash-panic").unwrap();
    let status = q.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(!status.success(), "{status}");
    let line = q.wait_for_log("panic at", Duration::from_secs(1)).unwrap();
    assert!(line.message.ends_with("scenario panic"), "{line}");
    assert_eq!(line.level, "ERROR");
}

#[test]
fn hardfault_logs_and_exits_nonzero() {
    let mut q = Qemu::start("crash-hardfault").unwrap();
    let status = q.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(!status.success(), "{status}");
    q.wait_for_log("HardFault: pc=", Duration::from_secs(1))
        .unwrap();
}

// ---- reconciler scenarios -------------------------------------------------------------
//
// The firmware runs keel-core's reconciler with scaled-down settings (hal-qemu/src/app.rs,
// `SETTINGS`): back-off 200 ms doubling to 1600 ms, reset after 5 s, min grace 100 ms,
// re-list every 1 s.

#[test]
fn pod_comes_up_edit_replaces_it_delete_removes_it() {
    let mut q = boot();
    put_ok(&mut q, "blink.yaml", MANIFEST);
    let s = q
        .wait_status("blink running", WAIT, |s| running(s, "blink"))
        .unwrap();
    let p = s.pod("blink").unwrap();
    assert_eq!(p.name.as_str(), "blink-qemu");
    let c = &p.containers[0];
    assert_eq!(
        (c.name.as_str(), c.restart_count, c.ready),
        ("blink", 0, true)
    );
    let old_uid = p.uid.clone();
    q.wait_for_log(
        "event: pod blink-qemu container blink started (restarts 0)",
        WAIT,
    )
    .unwrap();

    // An edit: the old pod terminates, the new one (new UID) starts with no restarts.
    let edited = pod(
        "blink",
        "  containers:\n  - name: blink\n    image: task:forever\n    args: [\"edited\"]\n",
    );
    put_ok(&mut q, "blink.yaml", &edited);
    let s = q
        .wait_status("new blink running", WAIT, |s| {
            running(s, "blink") && s.pod("blink").unwrap().uid != old_uid
        })
        .unwrap();
    assert_eq!(s.pods.len(), 1, "{s}");
    assert_eq!(s.pod("blink").unwrap().containers[0].restart_count, 0);
    q.wait_for_log("event: pod blink-qemu terminating: Replaced", WAIT)
        .unwrap();
    q.wait_for_log("exited 143 (Error)", WAIT).unwrap();

    // A delete: the pod goes away and so does its file.
    assert_eq!(q.delete("blink.yaml").unwrap(), Response::Ok);
    // (A snapshot takes several requests: the summary may predate the pod pages.)
    q.wait_status("no pods", WAIT, |s| {
        s.pods.is_empty() && s.files.is_empty() && s.status.pods == 0
    })
    .unwrap();
    q.wait_for_log("event: pod blink-qemu terminating: Deleted", WAIT)
        .unwrap();
    q.wait_for_log("event: pod blink-qemu removed", WAIT)
        .unwrap();
}

#[test]
fn crash_loop_follows_the_scaled_backoff() {
    let mut q = boot();
    put_ok(
        &mut q,
        "crash.yaml",
        &task_pod("crash", "task:crash", &["after=50"], ""),
    );
    // Exits at ~50 ms after each start; restarts immediately, then after 200, 400, 800,
    // 1600 ms (the cap).
    let backoffs = q
        .wait_for_logs("container main back-off until", 4, Duration::from_secs(6))
        .unwrap();
    let exits = q.log_matching("container main exited 139 (Error)");
    let starts = q.log_matching("container main started");
    assert!(
        exits.len() >= 5 && starts.len() >= 5,
        "{exits:?} {starts:?}"
    );
    q.wait_for_log("faulted: caught, exit 139", WAIT).unwrap();
    // Immediate first restart.
    let gap = starts[1].ms() - exits[0].ms();
    assert!(gap <= 30, "first restart after {gap} ms");
    for (i, want) in [200u64, 400, 800, 1600].into_iter().enumerate() {
        let line = &backoffs[i];
        let until: u64 = line
            .message
            .rsplit("until ")
            .next()
            .and_then(|t| t.trim_end_matches(" ms").parse().ok())
            .unwrap();
        let delay = until - exits[i + 1].ms();
        assert!(
            delay.abs_diff(want) <= 15,
            "back-off {i}: {delay} ms, want {want}"
        );
        if let Some(start) = starts.get(i + 2) {
            // Started when the back-off ended (10 ms tick, plus a little).
            let late = start.ms() as i64 - until as i64;
            assert!((-5..=40).contains(&late), "restart {i} {late} ms late");
        }
    }
    let s = q.snapshot().unwrap();
    let c = &s.pod("crash").unwrap().containers[0];
    assert!(c.restart_count >= 4, "{s}");
    assert_eq!(c.last, Some((139, TermReason::Error)));
}

#[test]
fn restart_policy_never_ends_succeeded_or_failed() {
    let mut q = boot();
    let never = "  restartPolicy: Never\n";
    put_ok(
        &mut q,
        "ok.yaml",
        &task_pod("ok", "task:exit", &["code=0", "after=100"], never),
    );
    put_ok(
        &mut q,
        "bad.yaml",
        &task_pod("bad", "task:exit", &["code=1", "after=100"], never),
    );
    let s = q
        .wait_status("both finished", WAIT, |s| {
            s.pod("ok").is_some_and(|p| p.phase == Phase::Succeeded)
                && s.pod("bad").is_some_and(|p| p.phase == Phase::Failed)
        })
        .unwrap();
    assert_eq!(
        s.pod("ok").unwrap().containers[0].state,
        ContainerState::Terminated {
            code: 0,
            reason: TermReason::Completed
        }
    );
    assert_eq!(
        s.pod("bad").unwrap().containers[0].state,
        ContainerState::Terminated {
            code: 1,
            reason: TermReason::Error
        }
    );
    // And they stay so: no restart.
    std::thread::sleep(Duration::from_millis(500));
    let s = q.snapshot().unwrap();
    assert_eq!(s.pod("bad").unwrap().containers[0].restart_count, 0, "{s}");
}

#[test]
fn bad_manifest_is_rejected_while_others_keep_running() {
    let mut q = boot();
    put_ok(&mut q, "blink.yaml", MANIFEST);
    let s = q
        .wait_status("blink running", WAIT, |s| running(s, "blink"))
        .unwrap();
    let uid = s.pod("blink").unwrap().uid.clone();
    // `image` must be a string: line 7, column 12.
    let bad = pod("broken", "  containers:\n  - name: c\n    image: [1]\n");
    put_ok(&mut q, "broken.yaml", &bad);
    let s = q
        .wait_status("broken rejected", WAIT, |s| {
            s.file("broken.yaml")
                .is_some_and(|f| matches!(f.state, FileState::Rejected { .. }))
        })
        .unwrap();
    let FileState::Rejected { error, kept } = s.file("broken.yaml").unwrap().state else {
        unreachable!()
    };
    assert_eq!(kept, None);
    assert_eq!(error.path.to_string(), "spec.containers[0].image", "{s}");
    assert_eq!((error.mark.line, error.mark.column), (8, 12), "{s}");
    q.wait_for_log("event: manifest broken.yaml rejected", WAIT)
        .unwrap();
    let p = s.pod("blink").unwrap();
    assert!(running(&s, "blink") && p.uid == uid && p.containers[0].restart_count == 0);
    assert_eq!(s.pods.len(), 1);
}

#[test]
fn capacity_full_refuses_the_newcomer_only() {
    let mut q = boot();
    for i in 0..=POD_SLOTS {
        let name = format!("p{i}");
        put_ok(
            &mut q,
            &format!("{name}.yaml"),
            &task_pod(&name, "task:forever", &[], ""),
        );
    }
    let last = format!("p{POD_SLOTS}.yaml");
    let s = q
        .wait_status("slots full", WAIT, |s| {
            (0..POD_SLOTS).all(|i| running(s, &format!("p{i}")))
                && s.file(&last)
                    .is_some_and(|f| f.state == FileState::NoCapacity)
        })
        .unwrap();
    assert_eq!(s.pods.len(), POD_SLOTS);
    q.wait_for_log("event: capacity full: PodSlots", WAIT)
        .unwrap();
    // Freeing a slot lets it in.
    q.delete("p0.yaml").unwrap();
    q.wait_status("newcomer running", WAIT, |s| {
        running(s, &format!("p{POD_SLOTS}"))
    })
    .unwrap();
}

#[test]
fn init_containers_run_first_in_order() {
    let mut q = boot();
    let spec = "  initContainers:\n  - name: setup\n    image: task:exit\n    args: [\"after=300\"]\n  containers:\n  - name: app\n    image: task:forever\n";
    put_ok(&mut q, "init.yaml", &pod("init", spec));
    let s = q
        .wait_status("init running", WAIT, |s| {
            s.pod("init")
                .is_some_and(|p| matches!(p.containers[0].state, ContainerState::Running { .. }))
        })
        .unwrap();
    let p = s.pod("init").unwrap();
    assert_eq!(p.phase, Phase::Pending);
    assert!(p.containers[0].init && !p.containers[1].init);
    assert_eq!(
        p.containers[1].state,
        ContainerState::Waiting {
            reason: WaitReason::PodInitializing,
            error: None
        }
    );
    let s = q
        .wait_status("app running", WAIT, |s| running(s, "init"))
        .unwrap();
    assert_eq!(
        s.pod("init").unwrap().containers[0].state,
        ContainerState::Terminated {
            code: 0,
            reason: TermReason::Completed
        }
    );
    let init_exit = q
        .wait_for_log("container setup exited 0 (Completed)", WAIT)
        .unwrap();
    let app_start = q.wait_for_log("container app started", WAIT).unwrap();
    assert!(app_start.ms() >= init_exit.ms() && init_exit.ms() >= 300);
}

#[test]
fn a_sidecar_runs_before_and_beside_the_app_and_stops_after_it_on_the_firmware() {
    let mut q = boot();
    // Under Never the app completes; the sidecar is then stopped and the pod succeeds.
    let spec = "  restartPolicy: Never\n  initContainers:\n  - name: side\n    image: task:forever\n    restartPolicy: Always\n  containers:\n  - name: app\n    image: task:exit\n    args: [\"after=500\"]\n";
    put_ok(&mut q, "side.yaml", &pod("side", spec));
    let s = q
        .wait_status("app running beside the sidecar", WAIT, |s| {
            s.pod("side").is_some_and(|p| {
                p.containers
                    .iter()
                    .all(|c| matches!(c.state, ContainerState::Running { .. }))
            })
        })
        .unwrap();
    assert_eq!(s.pod("side").unwrap().phase, Phase::Running);
    let side_start = q.wait_for_log("container side started", WAIT).unwrap();
    let app_start = q.wait_for_log("container app started", WAIT).unwrap();
    assert!(side_start.ms() <= app_start.ms());
    let s = q
        .wait_status("the pod succeeded", WAIT, |s| {
            s.pod("side").is_some_and(|p| p.phase == Phase::Succeeded)
        })
        .unwrap();
    let side = &s.pod("side").unwrap().containers[0];
    assert!(
        !matches!(side.state, ContainerState::Running { .. }),
        "{side:?}"
    );
    let app_exit = q
        .wait_for_log("container app exited 0 (Completed)", WAIT)
        .unwrap();
    let side_exit = q.wait_for_log("container side exited", WAIT).unwrap();
    assert!(app_exit.ms() <= side_exit.ms());
}

#[test]
fn liveness_probe_failure_restarts_the_container() {
    let mut q = boot();
    let spec = "  containers:\n  - name: main\n    image: task:forever\n    args: [\"unhealthy-after=300\"]\n    livenessProbe:\n      exec:\n        command: [\"health\"]\n      periodSeconds: 1\n      failureThreshold: 1\n";
    put_ok(&mut q, "live.yaml", &pod("live", spec));
    q.wait_for_log(
        "container main Liveness probe failed",
        Duration::from_secs(3),
    )
    .unwrap();
    q.wait_for_log("container main exited 143 (Error)", WAIT)
        .unwrap();
    let s = q
        .wait_status("restarted", WAIT, |s| {
            s.pod("live")
                .is_some_and(|p| p.containers[0].restart_count >= 1)
        })
        .unwrap();
    assert_eq!(
        s.pod("live").unwrap().containers[0].last,
        Some((143, TermReason::Error))
    );
}

#[test]
fn termination_honours_the_grace_period_then_kills() {
    let mut q = boot();
    put_ok(
        &mut q,
        "stubborn.yaml",
        &task_pod(
            "stubborn",
            "task:forever",
            &["ignore-stop"],
            "  terminationGracePeriodSeconds: 1\n",
        ),
    );
    q.wait_status("running", WAIT, |s| running(s, "stubborn"))
        .unwrap();
    q.delete("stubborn.yaml").unwrap();
    let term = q
        .wait_for_log("event: pod stubborn-qemu terminating: Deleted", WAIT)
        .unwrap();
    let killed = q
        .wait_for_log("container main exited 137 (Error)", WAIT)
        .unwrap();
    let grace = killed.ms() - term.ms();
    assert!((1000..=1100).contains(&grace), "killed after {grace} ms");
    q.wait_status("gone", WAIT, |s| s.pods.is_empty()).unwrap();
}

#[test]
fn unknown_image_waits_with_err_image_never_pull() {
    let mut q = boot();
    put_ok(&mut q, "nope.yaml", &task_pod("nope", "task:nope", &[], ""));
    let s = q
        .wait_status("start failed", WAIT, |s| {
            s.pod("nope").is_some_and(|p| {
                matches!(
                    p.containers[0].state,
                    ContainerState::Waiting {
                        error: Some(PlatformErrorKind::ImageNotPresent),
                        ..
                    }
                )
            })
        })
        .unwrap();
    let ContainerState::Waiting { reason, .. } = s.pod("nope").unwrap().containers[0].state else {
        unreachable!()
    };
    assert_eq!(reason, WaitReason::ErrImageNeverPull);
    q.wait_for_log("start failed: ErrImageNeverPull (ImageNotPresent)", WAIT)
        .unwrap();
}

#[test]
fn events_are_reported_over_the_protocol() {
    let mut q = boot();
    put_ok(&mut q, "blink.yaml", MANIFEST);
    q.wait_status("blink running", WAIT, |s| running(s, "blink"))
        .unwrap();
    let events = q.events(0).unwrap();
    use keel_core::status::Event;
    assert!(
        matches!(events[0], (0, Event::PodAdded { .. })),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|(_, e)| matches!(e, Event::ContainerStarted { container: 0, .. })));
    let next = events.last().unwrap().0 + 1;
    assert!(q.events(next).unwrap().is_empty());
}

/// Runs several scenarios' worth of work in one firmware, then reads the stack high-water
/// mark and the image size: the figures in hal-qemu/README.md (`cargo xtask bench` records
/// the same through `keel_host_tests::qemu::size_and_peak_stack`).
#[test]
fn firmware_size_and_peak_stack() {
    let (size, used, total) = keel_host_tests::qemu::size_and_peak_stack().unwrap();
    eprintln!("{FIRMWARE}: {size}");
    eprintln!(
        "peak stack {used} of {total} B; static RAM + peak stack {} B",
        size.static_ram() + u64::from(used)
    );
    assert!(used < total, "stack overflow: {used} of {total}");
    // The budget for 8 pod slots x 4 containers: flash at most 116 KiB (was 128 KiB; 12 KiB
    // kept free for the core's features to come), static RAM plus peak stack at most
    // 48 KiB (the board has 256 KiB and 64 KiB), so an application keeps room beside keel.
    assert!(size.flash() <= 116 * 1024, "flash over 116 KiB: {size}");
    assert!(
        size.static_ram() + u64::from(used) <= 48 * 1024,
        "static RAM + peak stack over 48 KiB: {size}, stack {used}"
    );
    assert!(size.data <= 256, "{size}");
}

#[test]
fn names_over_the_task_table_room_show_as_unknown_and_are_reported() {
    let mut q = boot();
    // 14 + 64 bytes fit the 128 of a pod's names; the app container's 63 more do not.
    let (init, main) = ("i".repeat(63), "m".repeat(63));
    let spec = format!(
        "  initContainers:\n  - name: {init}\n    image: task:exit\n  containers:\n  - name: {main}\n    image: task:forever\n"
    );
    put_ok(&mut q, "long.yaml", &pod("longnames", &spec));
    q.wait_status("longnames running", WAIT, |s| running(s, "longnames"))
        .unwrap();
    q.wait_for_log("names of pod longnames-qemu over 128 B: shown as ?", WAIT)
        .unwrap();
    let s = q.snapshot().unwrap();
    let p = s.pod("longnames").unwrap();
    let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [init.as_str(), "?"]);
}

/// xorshift64*: the same frames from the same seed on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `n` random bytes, none of them the frame delimiter.
    fn nonzero(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| 1 + self.below(255) as u8).collect()
    }
}

/// COBS-encodes `raw` and appends the delimiter.
fn cobs(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    let mut code_at = 0;
    for &b in raw {
        if b != 0 {
            out.push(b);
        }
        if b == 0 || out.len() - code_at == 0xFF {
            out[code_at] = (out.len() - code_at) as u8;
            code_at = out.len();
            out.push(0);
        }
    }
    out[code_at] = (out.len() - code_at) as u8;
    out.push(0);
    out
}

#[test]
fn ten_thousand_random_frames_leave_the_tasks_supervised_and_the_status_right() {
    let count: usize = std::env::var("KEEL_QEMU_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("KEEL_QEMU_FRAMES_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_0FF4_A3E5);
    eprintln!("{count} random frames, seed {seed} (KEEL_QEMU_FRAMES, KEEL_QEMU_FRAMES_SEED)");
    let mut q = boot();
    put_ok(&mut q, "blink.yaml", MANIFEST);
    put_ok(
        &mut q,
        "crash.yaml",
        &task_pod("crash", "task:crash", &["after=200"], ""),
    );
    q.wait_status("blink running", WAIT, |s| running(s, "blink"))
        .unwrap();
    let mut rng = Rng(seed | 1);
    let safe = |rng: &mut Rng, nonce: u32| -> Vec<u8> {
        let r = match rng.below(7) {
            0 => Request::Ping { nonce },
            1 => Request::GetStatus,
            2 => Request::ListManifests,
            3 => Request::GetEvents { after: nonce },
            4 => Request::GetPod { slot: nonce as u8 },
            5 => Request::GetFiles { from: nonce as u8 },
            _ => Request::Hello { version: 2 },
        };
        postcard::to_stdvec(&r).unwrap()
    };
    let (mut sent, mut kinds) = (0, [0usize; 4]);
    let started = Instant::now();
    while sent < count {
        // Batches of up to 32 frames written at once, then every answer read in order:
        // one answer per frame, so a lost or merged frame shows as a wrong answer below.
        let batch = 32.min(count - sent);
        let (mut bytes, mut expect) = (Vec::new(), Vec::new());
        for i in 0..batch {
            let nonce = (sent + i) as u32;
            // Mostly garbage and mutated requests; a frame too long one time in 16.
            let kind = match rng.below(16) {
                0 => 2,
                1..=3 => 3,
                k => k % 2,
            };
            kinds[kind] += 1;
            match kind {
                // Garbage, mostly short, now and then up to a full frame buffer.
                0 => {
                    let n = 1 + match rng.below(16) {
                        0 => rng.below(MAX_MANIFEST_LEN + 400),
                        _ => rng.below(200),
                    };
                    bytes.extend(rng.nonzero(n));
                    bytes.push(0);
                    expect.push(None);
                }
                // A real request with bytes flipped, cut or grown.
                1 => {
                    let mut raw = safe(&mut rng, nonce);
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(raw.len() + 1);
                        match rng.below(3) {
                            0 if at < raw.len() => raw[at] = rng.next() as u8,
                            1 => raw.truncate(at),
                            _ => raw.insert(at, rng.next() as u8),
                        }
                    }
                    if raw.is_empty() {
                        raw.push(rng.next() as u8);
                    }
                    bytes.extend(cobs(&raw));
                    expect.push(None);
                }
                // Longer than the frame buffer: skipped to its delimiter.
                2 => {
                    let n = 2600 + rng.below(400);
                    bytes.extend(rng.nonzero(n));
                    bytes.push(0);
                    expect.push(Some(error(ErrorCode::FrameTooLong)));
                }
                // A ping, whose answer must carry its nonce.
                _ => {
                    bytes.extend(postcard::to_stdvec_cobs(&Request::Ping { nonce }).unwrap());
                    expect.push(Some(Response::Pong { nonce }));
                }
            }
        }
        q.send_raw(&bytes).unwrap();
        for (i, want) in expect.into_iter().enumerate() {
            let got = q
                .recv(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("frame {}: no answer: {e}", sent + i));
            if let Some(want) = want {
                assert_eq!(got, want, "frame {} (seed {seed})", sent + i);
            }
        }
        sent += batch;
    }
    eprintln!(
        "{count} frames answered in {:.1} s (garbage {}, mutated {}, too long {}, pings {})",
        started.elapsed().as_secs_f64(),
        kinds[0],
        kinds[1],
        kinds[2],
        kinds[3]
    );

    // Whatever a mutated frame stored goes; the two pods stay as they were.
    if let Response::Manifests(list) = q.request(&Request::ListManifests).unwrap() {
        for m in list
            .iter()
            .filter(|m| !["blink.yaml", "crash.yaml"].contains(&m.name.as_str()))
        {
            assert_eq!(q.delete(&m.name).unwrap(), Response::Ok);
        }
    }
    let s = q
        .wait_status("two pods, two manifests", WAIT, |s| {
            s.status.manifests == 2 && s.status.pods == 2 && s.files.len() == 2
        })
        .unwrap();
    let blink = s.pod("blink").unwrap();
    assert!(running(&s, "blink"), "{blink:?}");
    assert_eq!(blink.containers[0].restart_count, 0, "{blink:?}");
    // The crashing task is still supervised: it keeps being restarted.
    let before = s.pod("crash").unwrap().containers[0].restart_count;
    q.wait_status("crash restarted again", Duration::from_secs(30), |s| {
        s.pod("crash")
            .is_some_and(|p| p.containers[0].restart_count > before)
    })
    .unwrap();
    let (used, total) = q.stack().unwrap();
    assert!(used < total, "stack {used} of {total}");
}
