//! Bytes → `JsonReader` events until `End` or an error: never a panic, never an endless loop.
#![no_main]

use keel_core::manifest::event::{Event, Events};
use keel_core::manifest::json::JsonReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let mut r = JsonReader::new(text);
    // Each event consumes input, so a well-behaved reader ends within a bound.
    for _ in 0..=4 * text.len() + 16 {
        match r.next_event() {
            Ok((Event::End, _)) => {
                let _ = r.trailer();
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
    panic!("the reader did not end within 4 events per input byte");
});
