use bytes::Bytes;

use super::*;
use crate::delivery::store::record::{self, Fields};

fn fields(headers: usize, long: bool, options: bool) -> Fields {
    let text = |n: usize| "é".repeat(if long { n } else { 1 });
    Fields {
        queue: text(300),
        update_id: options.then_some(-5_000_000_000),
        received_at_ms: u64::MAX - 1,
        attempts: if long { 70_000 } else { 3 },
        last_error: options.then(|| text(600)),
        method: "POST".into(),
        path: text(40_000),
        query: options.then(|| text(10)),
        headers: (0..headers)
            .map(|n| (format!("x-{n}"), Bytes::from(vec![b'v'; n % 300])))
            .collect(),
        body: Bytes::from_static(b"{}"),
    }
}

#[test]
fn the_header_count_is_read_from_the_prefix_of_any_record() {
    for headers in [0, 1, 7, 250, 251, 300, 70_000] {
        for long in [false, true] {
            for options in [false, true] {
                let bytes = record::encode(&fields(headers, long, options)).expect("encode");
                assert_eq!(
                    header_count(&bytes),
                    Some(headers as u64),
                    "{headers} headers, long {long}, options {options}"
                );
            }
        }
    }
    assert_eq!(header_count(&[]), None);
    assert_eq!(header_count(&[0, 200]), None, "cut short");
}

#[test]
fn a_record_costs_its_bytes_plus_the_memory_around_it() {
    let tiny = record::encode(&fields(0, false, false)).expect("encode");
    assert_eq!(of_record(&tiny), tiny.len() as u64 + UPDATE_OVERHEAD);
    // The struct, its Arc and queue slot, and an allocator's slack on each part.
    assert!(UPDATE_OVERHEAD >= size_of::<StoredUpdate>() as u64 + 100);
    let with_headers = record::encode(&fields(8, false, false)).expect("encode");
    assert_eq!(
        of_record(&with_headers),
        with_headers.len() as u64 + UPDATE_OVERHEAD + 8 * HEADER_OVERHEAD
    );
    assert!(HEADER_OVERHEAD >= size_of::<protocol::Header>() as u64);
    // Damage costs at least the bytes and the fixed part.
    assert_eq!(of_record(&[9; 5]), 5 + UPDATE_OVERHEAD);
}
