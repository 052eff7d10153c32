//! Any text as a join value (`--join`, `RELAY_JOIN`) and as a `--pin`: reading is an error or a
//! value, never a panic; a join value that reads encodes and reads back the same, and a pin that
//! reads prints as a pin that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{Join, Pin};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(pin) = Pin::parse(&text) {
        assert_eq!(Pin::parse(&pin.to_string()), Ok(pin), "a pin's display reads back");
    }
    let Ok(join) = Join::parse(&text) else {
        return;
    };
    assert_eq!(
        Join::parse(&join.encode()).as_ref(),
        Ok(&join),
        "the round trip changed the join value"
    );
});
