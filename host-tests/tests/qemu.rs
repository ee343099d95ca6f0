//! Firmware scenarios: boot the real firmware in QEMU (`lm3s6965evb`) and drive it over
//! the UART with the management protocol, checking replies and the decoded defmt log.
//!
//! Needs `qemu-system-arm` and the `thumbv7m-none-eabi` target. The first test to run
//! builds the firmware (`cargo build --release` in hal-qemu/).

use std::time::{Duration, Instant};

use keel_core::mgmt::{
    ErrorCode, Request, Response, MAX_MANIFEST_LEN, PROTOCOL_VERSION, REQUEST_VARIANTS,
};
use keel_host_tests::qemu::{elf_path, ImageSize, Qemu, FIRMWARE, READY};

const MANIFEST: &[u8] = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: blink\nspec:\n  containers:\n  - name: blink\n    image: task:blink\n";

fn boot() -> Qemu {
    let mut q = Qemu::start(FIRMWARE).expect("start QEMU");
    // Bytes sent before the firmware has set up UART0 are lost (enabling the PL011 FIFO
    // flushes it), so wait for its boot line.
    q.wait_for_log(READY, Duration::from_secs(3))
        .expect("firmware boot line");
    let hello = q.request(&Request::Hello {
        version: PROTOCOL_VERSION,
    });
    assert_eq!(
        hello.expect("hello"),
        Response::Hello {
            version: PROTOCOL_VERSION
        }
    );
    q
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
    assert_eq!(
        line.message,
        format!("keel-qemu up: protocol v{PROTOCOL_VERSION}")
    );
    assert_eq!(line.level, "INFO");
    assert!(
        line.location.as_deref().unwrap_or("").contains("main.rs"),
        "{line}"
    );
    q.wait_for_log("req Hello v1", Duration::from_secs(2))
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

    let status = q.request(&Request::GetStatus).unwrap();
    let Response::Status(s) = status else {
        panic!("{status:?}")
    };
    assert_eq!((s.manifests, s.store_changes), (1, 2));

    let delete = Request::DeleteManifest { name: "blink" };
    assert_eq!(q.request(&delete).unwrap(), Response::Ok);
    assert_eq!(q.request(&delete).unwrap(), error(ErrorCode::NotFound));
    assert_eq!(names(&mut q), []);
}

#[test]
fn store_full_and_bad_names_are_refused() {
    let mut q = boot();
    for i in 0..8 {
        let name = format!("pod-{i}");
        let put = Request::PutManifest {
            name: &name,
            bytes: MANIFEST,
        };
        assert_eq!(q.request(&put).unwrap(), Response::Ok, "{name}");
    }
    let put = Request::PutManifest {
        name: "pod-8",
        bytes: MANIFEST,
    };
    assert_eq!(q.request(&put).unwrap(), error(ErrorCode::StoreFull));
    // Replacing an existing name still works when full.
    let put = Request::PutManifest {
        name: "pod-3",
        bytes: b"{}",
    };
    assert_eq!(q.request(&put).unwrap(), Response::Ok);
    let put = Request::PutManifest {
        name: "",
        bytes: MANIFEST,
    };
    assert_eq!(q.request(&put).unwrap(), error(ErrorCode::NameEmpty));
    let long = "x".repeat(65);
    let put = Request::PutManifest {
        name: &long,
        bytes: MANIFEST,
    };
    assert_eq!(q.request(&put).unwrap(), error(ErrorCode::NameTooLong));
    assert_eq!(names(&mut q).len(), 8);
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
    // The largest allowed manifest is accepted.
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
fn stack_high_water_mark_is_reported() {
    let mut q = boot();
    let max = vec![b'm'; MAX_MANIFEST_LEN];
    let put = Request::PutManifest {
        name: "max",
        bytes: &max,
    };
    assert_eq!(q.request(&put).unwrap(), Response::Ok);
    let _ = q.request(&Request::ListManifests).unwrap();
    let _ = q.request(&Request::GetStatus).unwrap();
    let reply = q.request(&Request::GetStack).unwrap();
    let Response::Stack { used, total } = reply else {
        panic!("{reply:?}")
    };
    eprintln!("stack: {used} of {total} bytes used");
    assert!(used > 64 && used < total, "{used} of {total}");
    // The board support alone should stay small; the reconciler adds its own.
    assert!(used < 2048, "stack high-water mark {used} B");
    q.wait_for_log("req GetStack", Duration::from_secs(2))
        .unwrap();
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

#[test]
fn firmware_fits_budget() {
    keel_host_tests::qemu::build_firmware().unwrap();
    let elf = std::fs::read(elf_path(FIRMWARE)).unwrap();
    let size = ImageSize::of_elf(&elf).unwrap();
    eprintln!("{FIRMWARE}: {size}");
    // Whole-firmware targets (issue 5): flash <= 128 KiB, static RAM + stack <= 48 KiB.
    // Board support and store alone must leave most of that to the reconciler.
    assert!(size.flash() <= 64 * 1024, "{size}");
    assert!(size.static_ram() <= 24 * 1024, "{size}");
    // Big statics must start all-zero (`.bss`): a non-zero one is copied into flash too.
    assert!(size.data <= 256, "{size}");
}
