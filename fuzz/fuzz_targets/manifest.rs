//! Bytes → `prepare` (decode, validate, canonicalise, default) for a node: never a panic.
//! An accepted pod must survive the compact encoding a pod slot keeps (postcard).
#![no_main]

use keel_core::manifest::{self, model::Pool, Context, Pod};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pod = Box::<Pod>::default();
    let mut scratch = Box::<Pool>::default();
    let ctx = Context { node: "Fuzz-Node", path: "/etc/kubernetes/manifests/fuzz.yaml", seen: "2026-01-01T00:00:00Z" };
    let r = manifest::prepare(data, &ctx, &mut pod, &mut scratch, &mut |_| {}, &mut |_| {});
    if r.is_ok() {
        let bytes = postcard::to_allocvec(&*pod).expect("an accepted pod encodes");
        let back: Pod = postcard::from_bytes(&bytes).expect("and decodes");
        assert_eq!(back, *pod, "postcard round trip");
    }
});
