//! Where keel accepts a document (decodes it as written), the reference parser (serde_yaml
//! for YAML, serde_json for JSON) must parse it too and agree on every field keel models;
//! see `keel_host_tests::differential` for the comparison and its YAML 1.1 allowances.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(diff) = keel_host_tests::differential::check(data) {
        panic!("keel and the reference parser disagree:\n{diff}\ninput: {:?}", String::from_utf8_lossy(data));
    }
});
