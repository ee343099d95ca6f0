//! Reconciler costs: a `poll` with nothing due, and a full re-scan with no change, for 10,
//! 100 and 1000 manifests; and the sizes of the caller's storage types.
//!
//! `cargo bench -p keel-host-tests --bench reconcile` (Linux configuration); sizes for the
//! firmware configuration: `cargo run -p keel-host-tests --example sizes --features
//! keel-core/small --release`.

use keel_core::machine::Settings;
use keel_core::reconcile::{FileEntry, PodSlot, Reconciler, Scratch};
use keel_core::time::{Duration, Instant};
use keel_host_tests::bench::{load1, Section};
use keel_host_tests::sim::{big_stack, FakeRuntime, FakeSource, Sim, P};
use std::hint::black_box;

fn per_call(iters: u32, mut f: impl FnMut()) -> std::time::Duration {
    let t = std::time::Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters
}

fn bench(n: usize, sec: &Section) {
    let since = load1();
    let mut slots = vec![PodSlot::EMPTY; 8];
    let mut files = vec![FileEntry::EMPTY; n + 8];
    let mut scratch = Box::<Scratch>::default();
    let settings = Settings::DEFAULT;
    let mut rec = Reconciler::new(&mut slots, &mut files, &mut scratch, "node1", settings);
    let mut src = FakeSource::new();
    let mut rt = FakeRuntime::new();
    // 8 running pods (the slots), the rest duplicates of them: every file is tracked and
    // read once, none changes afterwards.
    for i in 0..n {
        src.write(
            &format!("m{i:04}.yaml"),
            P::new(&format!("p{}", i % 8), "img").yaml(),
        );
    }
    let mut now = Instant::ZERO;
    for _ in 0..200 {
        rt.set_now(now);
        rec.poll(now, &mut src, &mut rt);
        now = now + Duration(1);
    }
    assert_eq!(rec.files().len(), n);
    // Nothing due: a poll before the next deadline.
    let idle_at = Instant(
        rec.poll_at()
            .0
            .min(now.0 + 10_000)
            .saturating_sub(1)
            .max(now.0),
    );
    let idle = per_call(20_000, || rec.poll(black_box(idle_at), &mut src, &mut rt));
    // A full re-scan with no change (notify_changed forces the listing).
    let rescan = per_call(2_000, || {
        rec.notify_changed();
        rec.poll(black_box(idle_at), &mut src, &mut rt)
    });
    sec.figure(
        &format!("poll with nothing due, {n} manifests"),
        "µs",
        vec![idle.as_secs_f64() * 1e6],
        since,
    )
    .note("mean of 20 000 calls")
    .record();
    let f = sec
        .figure(
            &format!("full re-scan with no change, {n} manifests"),
            "µs",
            vec![rescan.as_secs_f64() * 1e6],
            since,
        )
        .note("mean of 2 000 calls");
    if n == 1000 {
        f.at_most(1000.0).record();
    } else {
        f.record();
    }
    let reads = rec.counters().reads;
    println!(
        "manifests {n:5}: poll, nothing due {:>9.2?}; re-scan, no change {:>9.2?}  (reads {reads})",
        idle, rescan
    );
}

fn main() {
    big_stack(|| {
        println!(
            "sizes (Linux configuration): PodSlot {} B, Reconciler {} B, Scratch {} B, FileEntry {} B",
            size_of::<PodSlot>(),
            size_of::<Reconciler>(),
            size_of::<Scratch>(),
            size_of::<FileEntry>()
        );
        let sec = Section::new(
            "Reconciler",
            "cargo bench -p keel-host-tests --bench reconcile",
        );
        for n in [10, 100, 1000] {
            bench(n, &sec);
        }
    });
}
