//! `qemu-demo [SECONDS]`: the firmware demo of [`keel_host_tests::qemu::demo`].

fn main() {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    if let Err(e) = keel_host_tests::qemu::demo(seconds) {
        eprintln!("qemu demo: {e}");
        std::process::exit(1);
    }
}
