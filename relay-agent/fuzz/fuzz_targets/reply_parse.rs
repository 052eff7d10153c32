//! A bot's answer as `Content-Type` line, newline, body: finding the Bot API call in it (JSON,
//! urlencoded form, multipart form) never panics or hangs, and what it finds is a method name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_agent::fuzzing::reply_method;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Some(method) = reply_method(content_type, body) {
        assert!(
            (1..=64).contains(&method.len())
                && method
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "not a method name: {method:?}"
        );
    }
});
