//! Prints the sizes of the reconciler's storage types for the configuration keel-core is
//! built with, and how many of a slot's spec bytes sample pods use:
//! `cargo run -p keel-host-tests --example sizes` (Linux) and with
//! `--features keel-core/small` (firmware).

use keel_core::reconcile::{FileEntry, PodSlot, Reconciler, Scratch};
use keel_core::time::Instant;
use keel_host_tests::sim::{big_stack, FakeRuntime, FakeSource, C, P};

fn main() {
    big_stack(|| {
        let cfg = if keel_core::config::MAX_CONTAINERS == 4 {
            "firmware (small)"
        } else {
            "Linux"
        };
        println!(
            "{cfg}: PodSlot {} B, Reconciler {} B, Scratch {} B, FileEntry {} B, Container {} B, SPEC_BYTES {}",
            size_of::<PodSlot>(),
            size_of::<Reconciler>(),
            size_of::<Scratch>(),
            size_of::<FileEntry>(),
            size_of::<keel_core::machine::Container>(),
            keel_core::config::SPEC_BYTES
        );
        let mut slots = vec![PodSlot::EMPTY; 2];
        let mut files = vec![FileEntry::EMPTY; 4];
        let mut scratch = Box::<Scratch>::default();
        let mut rec = Reconciler::new(
            &mut slots,
            &mut files,
            &mut scratch,
            "node1",
            Default::default(),
        );
        let mut src = FakeSource::new();
        src.write("one.yaml", P::new("sensor", "task:sensor").yaml());
        let four = (0..4).fold(P::empty("plant"), |p, i| {
            p.container(
                C::new(&format!("c{i}"), &format!("task:t{i}"))
                    .args(&["--rate", "10"])
                    .liveness("ok", 10, 3),
            )
        });
        src.write("four.yaml", four.yaml());
        rec.poll(Instant::ZERO, &mut src, &mut FakeRuntime::new());
        for f in rec.files() {
            println!("  {}: {:?}", f.name(), f.state());
        }
        for s in rec.slots().iter().filter(|s| s.is_used()) {
            println!("  spec bytes used by {}: {}", s.uid(), s.spec_bytes().len());
        }
    });
}
