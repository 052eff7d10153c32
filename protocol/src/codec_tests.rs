use super::*;
use crate::frame::*;
use crate::{MAX_BODY_LIMIT, PROTOCOL_VERSION};
use bytes::Bytes;

fn request(body: Bytes) -> Frame {
    Frame::Request(Request {
        id: u64::MAX - 1,
        bot: "echo".into(),
        method: "POST".into(),
        path: "/rest".into(),
        query: Some("a=1&b=%20".into()),
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ),
            ("x-dup".into(), Bytes::from_static(b"one")),
            ("x-other".into(), Bytes::from_static(b"\xff\x00 not utf-8")),
            ("x-dup".into(), Bytes::from_static(b"two")),
        ],
        body,
        timeout_ms: 25_000,
        update_id: None,
        delivery: Delivery::Live,
    })
}

fn all_frames() -> Vec<Frame> {
    vec![
        Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            agent: "home".into(),
            software: "relay-agent 0.1.0".into(),
            bots: vec!["a".into(), "b".into()],
            modes: vec![("b".into(), DeliveryMode::Durable)],
        }),
        Frame::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            software: "relay-server 0.1.0".into(),
            session: 7,
            max_body_bytes: 1 << 20,
        }),
        request(Bytes::from_static(br#"{"update_id":1}"#)),
        Frame::Response(Response {
            id: 3,
            status: 200,
            headers: vec![("content-type".into(), Bytes::from_static(b"text/plain"))],
            body: Bytes::new(),
        }),
        Frame::Failure(Failure {
            id: 4,
            kind: FailureKind::BotTimeout,
            message: "bot took longer than 25s".into(),
        }),
        Frame::Cancel(9),
        Frame::Ping(0),
        Frame::Pong(u64::MAX),
    ]
}

#[test]
fn every_frame_round_trips() {
    for frame in all_frames() {
        let bytes = encode(&frame).expect("encode");
        assert_eq!(decode(&bytes, MAX_FRAME_LEN).expect("decode"), frame);
    }
}

#[test]
fn the_buffer_is_sized_once_for_requests_and_answers() {
    let large: Bytes = vec![7; 100_000].into();
    let mut frames = all_frames();
    frames.push(request(large.clone()));
    frames.push(Frame::Response(Response {
        id: 1,
        status: 200,
        headers: vec![("x-many".into(), Bytes::from(vec![b'a'; 5_000])); 20],
        body: large,
    }));
    for frame in frames {
        let bytes = encode(&frame).expect("encode");
        assert!(
            bytes.len() <= size_hint(&frame),
            "{frame:?} outgrew its hint"
        );
    }
}

#[test]
fn body_bytes_and_header_order_survive() {
    let body: Bytes = (0..=255u8).cycle().take(70_000).collect::<Vec<_>>().into();
    let frame = request(body.clone());
    let bytes = encode(&frame).expect("encode");
    let Frame::Request(back) = decode(&bytes, frame_limit(1 << 20)).expect("decode") else {
        panic!("not a request");
    };
    assert_eq!(back.body, body);
    let names: Vec<_> = back.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["content-type", "x-dup", "x-other", "x-dup"]);
    assert_eq!(&back.headers[2].1[..], b"\xff\x00 not utf-8");
}

#[test]
fn every_truncation_is_an_error() {
    for frame in all_frames() {
        let bytes = encode(&frame).expect("encode");
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut], MAX_FRAME_LEN).is_err(),
                "{frame:?} cut at {cut} decoded"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = encode(&Frame::Ping(1)).expect("encode");
    bytes.push(0);
    assert!(matches!(
        decode(&bytes, MAX_FRAME_LEN),
        Err(DecodeError::Length(1))
    ));
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let frame = request(Bytes::from(vec![b'x'; 2048]));
    let bytes = encode(&frame).expect("encode");
    let err = decode(&bytes, 1024).expect_err("over the limit");
    assert!(matches!(err, DecodeError::TooLarge { limit: 1024, .. }));
}

#[test]
fn a_length_prefix_claiming_too_much_is_an_error_not_an_allocation() {
    // Variant 2 (Request), id 1, then a bot-name length of u64::MAX (varint tag 253).
    let mut bytes = vec![2, 1, 253];
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(decode(&bytes, MAX_FRAME_LEN).is_err());
    // A bot-name length just under the hard cap, with only a few bytes behind it.
    let mut bytes = vec![2, 1, 252];
    bytes.extend_from_slice(&(MAX_BODY_LIMIT as u32).to_le_bytes());
    bytes.extend_from_slice(b"echo");
    assert!(decode(&bytes, MAX_FRAME_LEN).is_err());
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..400 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = decode(&bytes, MAX_FRAME_LEN);
        let _ = peek_hello_version(&bytes);
    }
}

#[test]
fn unknown_variant_is_an_error() {
    assert!(decode(&[200], MAX_FRAME_LEN).is_err());
}

#[test]
fn version_of_a_newer_hello_can_be_read_even_if_the_rest_cannot() {
    // A future hello: variant 0, version 9, then fields this build does not know.
    let mut bytes = vec![0, 9];
    bytes.extend_from_slice(&[0xff; 5]);
    assert!(decode(&bytes, MAX_FRAME_LEN).is_err());
    assert_eq!(peek_hello_version(&bytes), Some(9));
    let hello = encode(&all_frames()[0]).expect("encode");
    assert_eq!(peek_hello_version(&hello), Some(PROTOCOL_VERSION));
    assert_eq!(
        peek_hello_version(&encode(&Frame::Ping(1)).expect("encode")),
        None
    );
}

#[test]
fn frame_limit_is_capped() {
    assert_eq!(frame_limit(1024), 1024 + HEAD_ROOM);
    assert_eq!(frame_limit(usize::MAX), MAX_FRAME_LEN);
}

#[test]
fn frames_on_either_side_of_each_decode_step_round_trip() {
    // The decode limit steps at 4 KiB and ×4 from there; a frame just over a step holds strings
    // and a body that claim nearly all of its bytes.
    for step in [4, 16, 64, 256, 1024, 4096].map(|kib| kib * 1024) {
        for len in [
            step - 200,
            step - 150,
            step - 90,
            step - 1,
            step,
            step + 1,
            step + 90,
        ] {
            let frame = request(vec![b'x'; len].into());
            let bytes = encode(&frame).expect("encode");
            assert_eq!(
                decode(&bytes, MAX_FRAME_LEN).expect("decode"),
                frame,
                "{len}"
            );
        }
    }
}

#[test]
fn a_frame_of_many_empty_headers_decodes_though_it_claims_eight_times_its_size() {
    // Each empty header is two bytes on the wire (two one-byte length prefixes), and each prefix
    // claims 8 bytes against bincode's limit.
    for count in [100, 255, 256, 1_000, 2_048, 30_000, 130_000] {
        let Frame::Request(mut request) = request(Bytes::new()) else {
            unreachable!("request() builds a request")
        };
        request.headers = vec![(String::new(), Bytes::new()); count];
        let frame = Frame::Request(request);
        let bytes = encode(&frame).expect("encode");
        assert_eq!(
            decode(&bytes, MAX_FRAME_LEN).expect("decode"),
            frame,
            "{count}"
        );
    }
}

/// The fuzz target's seed corpus is the frames above as this build encodes them, so that the
/// fuzzer starts from real frames. `WRITE_FUZZ_SEEDS=1 cargo test -p protocol fuzz_seeds` writes
/// them after a change to the wire format.
#[test]
fn the_fuzz_seeds_are_frames_this_build_encodes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/frame_decode");
    let write = std::env::var_os("WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).expect("create the seed dir");
    }
    for (n, frame) in all_frames().iter().enumerate() {
        let path = dir.join(format!("frame-{n}.bin"));
        let bytes = encode(frame).expect("encode");
        if write {
            std::fs::write(&path, &bytes).expect("write a seed");
        }
        let seed = std::fs::read(&path).expect("seed exists (WRITE_FUZZ_SEEDS=1 writes it)");
        assert_eq!(
            seed,
            bytes,
            "{} is stale: WRITE_FUZZ_SEEDS=1 rewrites it",
            path.display()
        );
    }
}
