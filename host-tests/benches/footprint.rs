//! Footprint: the static musl `keel` binary's size (budget 4 MiB), the `keel-shim` beside
//! it, and the firmware's
//! flash, static RAM and peak stack (`keel_host_tests::qemu::size_and_peak_stack`, the
//! workload of the qemu test that checks the same budget).
//!
//! Run: `cargo bench -p keel-host-tests --bench footprint` (the firmware needs
//! `qemu-system-arm` and the `thumbv7m-none-eabi` target; the binary the musl target and
//! musl-gcc, else the host's release build is measured and the figure says so).

use keel_host_tests::bench::{load1, Section};
use keel_host_tests::linux::release_keel;

fn main() {
    let sec = Section::new(
        "Footprint",
        "cargo bench -p keel-host-tests --bench footprint",
    );
    let since = load1();
    // A given KEEL_BIN is measured as it is (and has no size target unless it is the
    // static build); else the static musl release build.
    let (bin, label, shipped) = match std::env::var_os("KEEL_BIN") {
        Some(b) => (b.into(), "KEEL_BIN, as given".to_string(), false),
        None => {
            let (b, l) = release_keel();
            let shipped = l.contains("static musl");
            (b, l, shipped)
        }
    };
    let bin: std::path::PathBuf = bin;
    let size = std::fs::metadata(&bin)
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
        .len();
    let f = sec
        .figure("keel binary", "B", vec![size as f64], since)
        .note(&format!("{label}: {}", bin.display()));
    if shipped {
        f.at_most(4.0 * 1024.0 * 1024.0).record();
    } else {
        f.record();
    }
    // The per-container shim the agent runs from beside its own binary.
    let shim = bin.with_file_name("keel-shim");
    if let Ok(m) = std::fs::metadata(&shim) {
        sec.figure("keel-shim binary", "B", vec![m.len() as f64], since)
            .note(&shim.display().to_string())
            .record();
    }

    let since = load1();
    let (img, used, total) =
        keel_host_tests::qemu::size_and_peak_stack().expect("firmware size and peak stack");
    let fw = |name: &str, v: u64| sec.figure(name, "B", vec![v as f64], since);
    fw("firmware flash (text + data)", img.flash())
        .note("lm3s6965, 8 pod slots")
        .at_most(116.0 * 1024.0)
        .record();
    fw("firmware static RAM (data + bss)", img.static_ram()).record();
    fw("firmware peak stack", u64::from(used))
        .note(&format!("of {total} B"))
        .record();
    fw(
        "firmware static RAM + peak stack",
        img.static_ram() + u64::from(used),
    )
    .at_most(48.0 * 1024.0)
    .record();
}
