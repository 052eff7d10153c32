use super::*;

fn fields() -> Fields {
    Fields {
        queue: "chat:-1001234567890".into(),
        update_id: Some(i64::MAX),
        received_at_ms: 1_700_000_000_000,
        attempts: 3,
        last_error: Some("bot answered 500".into()),
        method: "POST".into(),
        path: "/x".into(),
        query: Some("a=1".into()),
        headers: vec![
            ("x-dup".into(), Bytes::from_static(b"1")),
            ("x-dup".into(), Bytes::from_static(b"\xff\x00")),
        ],
        body: Bytes::from_static(b"\x00\x01\xfe{}"),
    }
}

#[test]
fn a_record_round_trips() {
    let bytes = encode(&fields()).expect("encode");
    assert_eq!(decode(&bytes).expect("decode"), fields());
}

#[test]
fn damaged_records_are_errors() {
    let bytes = encode(&fields()).expect("encode");
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
    }
    let mut unknown_version = bytes.clone();
    unknown_version[0] = 7;
    assert!(decode(&unknown_version).is_err());
}

#[test]
fn errors_are_clipped_on_a_char_boundary() {
    assert_eq!(clip("short"), "short");
    let long = "é".repeat(MAX_ERROR_LEN);
    let clipped = clip(&long);
    assert!(clipped.len() <= MAX_ERROR_LEN);
    assert!(long.starts_with(&clipped));
}
