//! The `reconcile` property test: seeded random scripts (see `keel_host_tests::sim::prop`),
//! invariants checked after every poll. The same scripts run longer under `cargo xtask fuzz`
//! (fuzz/fuzz_targets/reconcile.rs).

use keel_host_tests::sim::{big_stack, run_script, Rng};

/// Scripts per run; sized to keep the test under 20 s in a debug build.
const SCRIPTS: u64 = 40;

#[test]
fn reconcile_invariants_hold_for_seeded_random_scripts() {
    big_stack(|| {
        let seed0: u64 = std::env::var("KEEL_PROP_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x6b65656c);
        let mut polls = 0;
        for i in 0..SCRIPTS {
            let mut rng = Rng::new(seed0 + i);
            let len = 40 + rng.below(160) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            match run_script(&bytes) {
                Ok(p) => polls += p,
                Err(e) => panic!("script {i} (seed {}) failed: {e}", seed0 + i),
            }
        }
        assert!(polls > SCRIPTS * 10, "scripts did little: {polls} polls");
    });
}
