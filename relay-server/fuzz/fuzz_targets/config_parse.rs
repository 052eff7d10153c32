//! Any text as the relay's config file: parsing, merging and validating it (as at start-up, with
//! no flags) is a config or an error, never a panic or a hang; and the error's message, which
//! names the line, does not quote a `token` value of the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_server::fuzzing::parse_config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(error) = parse_config(text) else {
        return;
    };
    let message = error.to_string();
    // Long enough values only: a short one could be part of any message by chance.
    for line in text.lines().filter(|line| line.contains("token")) {
        if let Some((_, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"');
            assert!(
                value.len() < 16 || !message.contains(value),
                "the error quotes a token value: {message}"
            );
        }
    }
});
