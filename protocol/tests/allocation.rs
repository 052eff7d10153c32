//! A frame that declares a huge string, body or list but holds a few bytes is refused without
//! allocating for what it declares. This is its own test binary because it counts every
//! allocation of the process through the global allocator.

use protocol::{MAX_FRAME_LEN, decode};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// What a 16-byte message may cost at most: a few small strings and the error, far below what
/// any of the frames below declare (15 MB).
const BUDGET: usize = 16 * 1024;

/// bincode's varint for a length that needs four bytes: the marker 252, then little-endian.
fn len32(len: u32) -> Vec<u8> {
    [&[252][..], &len.to_le_bytes()].concat()
}

/// 16-byte messages, each declaring 15 MB (or 15 M entries) in one of a frame's variable parts.
fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    const HUGE: u32 = 15_000_000;
    let mut bombs = vec![
        // Hello (variant 0), version 1, then the agent name.
        ("hello agent name", [&[0, 1][..], &len32(HUGE)].concat()),
        // Hello, then an empty agent and software, then the bot list.
        ("hello bot list", [&[0, 1, 0, 0][..], &len32(HUGE)].concat()),
        // Request (variant 2), id 0, then the bot name.
        ("request bot name", [&[2, 0][..], &len32(HUGE)].concat()),
        // Request: bot "a", method "GET", empty path, no query, then the header list.
        (
            "request header list",
            [
                &[2, 0, 1, b'a', 3, b'G', b'E', b'T', 0, 0][..],
                &len32(HUGE),
            ]
            .concat(),
        ),
        // Request: bot "a", method "GET", empty path, no query, no headers, then the body.
        (
            "request body",
            [
                &[2, 0, 1, b'a', 3, b'G', b'E', b'T', 0, 0, 0][..],
                &len32(HUGE),
            ]
            .concat(),
        ),
        // Response (variant 3), id 0, status 200 (a two-byte varint), no headers, then the body.
        (
            "response body",
            [&[3, 0, 251, 200, 0, 0][..], &len32(HUGE)].concat(),
        ),
    ];
    for (name, bytes) in &mut bombs {
        assert!(bytes.len() <= 16, "{name} is {} bytes", bytes.len());
        bytes.resize(16, 0);
    }
    bombs
}

#[test]
fn a_tiny_frame_declaring_a_huge_length_is_refused_without_allocating_it() {
    let mut over = Vec::new();
    for (name, bytes) in bombs() {
        let region = Region::new(GLOBAL);
        let decoded = decode(&bytes, MAX_FRAME_LEN);
        let allocated = region.change().bytes_allocated;
        assert!(decoded.is_err(), "{name}: decoded {decoded:?}");
        if allocated > BUDGET {
            over.push(format!("{name}: {allocated} bytes"));
        }
    }
    assert!(over.is_empty(), "decoding 16 bytes allocated {over:#?}");
}
