//! Bytes → the firmware's UART protocol decoder (`keel_core::mgmt`: `FrameDecoder` at
//! the firmware's `MAX_FRAME_LEN`, then `decode_request`), as `hal-qemu/src/server.rs`
//! drives it: never a panic; the frames found do not depend on how the bytes were split
//! into reads (the first input byte picks the read size); one result per non-empty run of
//! bytes between delimiters, `TooLong` exactly for runs over the buffer; and every request
//! decoded survives a round trip through `encode_frame` and the decoder unchanged.
#![no_main]

use keel_core::mgmt::{
    decode_request, encode_frame, FrameDecoder, FrameError, Request, DELIMITER, MAX_FRAME_LEN,
};
use libfuzzer_sys::fuzz_target;

type Decoder = FrameDecoder<MAX_FRAME_LEN>;

/// Every result the decoder yields for `stream` fed `chunk` bytes at a time.
fn frames(dec: &mut Decoder, stream: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, FrameError>> {
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        let mut input = piece;
        while let Some(f) = dec.feed(&mut input) {
            out.push(f.map(<[u8]>::to_vec));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut dec = Decoder::new();
    let split = frames(&mut dec, stream, usize::from(chunk));
    let whole = frames(&mut Decoder::new(), stream, stream.len());
    assert_eq!(split, whole, "the frames depend on how the bytes were read");

    // One result per non-empty run ended by a delimiter; too long exactly when over N.
    let runs: Vec<usize> = stream
        .split(|&b| b == DELIMITER)
        .take(stream.iter().filter(|&&b| b == DELIMITER).count())
        .map(<[u8]>::len)
        .filter(|&n| n > 0)
        .collect();
    assert_eq!(runs.len(), split.len(), "one result per delimited frame");
    for (n, f) in runs.iter().zip(&split) {
        assert_eq!(
            *n > MAX_FRAME_LEN,
            matches!(f, Err(FrameError::TooLong)),
            "a run of {n} bytes gave {f:?}"
        );
    }
    // What is held after the last delimiter is the partial frame (or nothing, past N).
    let tail = stream.len() - stream.iter().rposition(|&b| b == DELIMITER).map_or(0, |i| i + 1);
    if tail <= MAX_FRAME_LEN {
        assert_eq!(dec.pending(), tail);
    }

    let mut buf = [0u8; MAX_FRAME_LEN + 1];
    for payload in split.iter().flatten() {
        let Ok(req) = decode_request(payload) else {
            continue;
        };
        let bytes = encode_frame(&req, &mut buf).expect("a decoded request re-encodes");
        let mut again = Decoder::new();
        let mut input = &bytes[..];
        let frame = again.feed(&mut input).expect("one frame").expect("valid");
        let back: Request<'_> = decode_request(frame).expect("decodes again");
        assert_eq!(back, req, "round trip");
        assert!(input.is_empty());
    }
});
