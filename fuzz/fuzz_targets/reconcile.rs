//! `reconcile`: random scripts of file writes, deletes, renames, runtime exits, faults and
//! time steps against the reconciler, invariants checked after every poll
//! (`keel_host_tests::sim::run_script`; the seeded property test runs the same scripts).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The Linux-configuration pod is moved by value in debug builds; give it room.
    let bytes = data.to_vec();
    keel_host_tests::sim::big_stack(move || {
        if let Err(e) = keel_host_tests::sim::run_script(&bytes) {
            panic!("{e}");
        }
    });
});
