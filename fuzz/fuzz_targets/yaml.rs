//! Bytes → `YamlReader` events until `End` or an error: never a panic, never an endless loop.
//! Aliases replay their anchored text, at most `MAX_ALIAS_BYTES` of it per document.
#![no_main]

use keel_core::config::MAX_ALIAS_BYTES;
use keel_core::manifest::event::{Event, Events};
use keel_core::manifest::yaml::YamlReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let mut r = YamlReader::new(text);
    // Each event consumes input (or the alias budget), so a well-behaved reader ends within
    // a bound.
    for _ in 0..=4 * (text.len() + MAX_ALIAS_BYTES) + 16 {
        match r.next_event() {
            Ok((Event::End, _)) => {
                let _ = r.trailer();
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
    panic!("the reader did not end within 4 events per byte of input and alias budget");
});
