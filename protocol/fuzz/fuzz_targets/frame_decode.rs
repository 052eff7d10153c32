//! Any bytes as one WebSocket message: decoding is an error or a frame, never a panic, a hang or
//! an allocation out of proportion to the input (run with `-malloc_limit_mb`); a frame that
//! decodes encodes again and decodes to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{MAX_FRAME_LEN, decode, encode, peek_hello_version};

fuzz_target!(|data: &[u8]| {
    let _ = peek_hello_version(data);
    let Ok(frame) = decode(data, MAX_FRAME_LEN) else {
        return;
    };
    let bytes = encode(&frame).expect("a decoded frame encodes");
    let again = decode(&bytes, MAX_FRAME_LEN).expect("an encoded frame decodes");
    assert_eq!(again, frame, "the round trip changed the frame");
    // The limit a peer negotiated is held: one byte under the message's length is refused.
    if !data.is_empty() {
        assert!(
            decode(data, data.len() - 1).is_err(),
            "a message over the limit decoded"
        );
    }
});
