use base64::Engine as _;

use super::{JOIN_PREFIX, Join, JoinError, MAX_JOIN_LEN, Pin, PinError};
use crate::secret::Secret;

const TOKEN: &str = "tok-5ecret-value-0123456789";

fn join(pin: Option<Pin>) -> Join {
    Join {
        relay: "wss://relay.example.org:8443".into(),
        token: Secret::new(TOKEN),
        pin,
    }
}

#[test]
fn round_trips_with_and_without_a_pin() {
    for pin in [None, Some(Pin::of(b"some certificate bytes"))] {
        let value = join(pin).encode();
        assert!(value.starts_with(JOIN_PREFIX), "{value}");
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "one shell word with no quoting: {value}"
        );
        assert_eq!(Join::parse(&value), Ok(join(pin)));
    }
}

#[test]
fn the_json_is_compact_and_leaves_out_a_missing_pin() {
    let value = join(None).encode();
    let json = super::BASE64
        .decode(&value[JOIN_PREFIX.len()..])
        .expect("base64url");
    assert_eq!(
        String::from_utf8(json).expect("utf-8"),
        format!(r#"{{"relay":"wss://relay.example.org:8443","token":"{TOKEN}"}}"#)
    );
}

#[test]
fn whitespace_and_quotes_pasted_around_it_are_ignored() {
    let value = join(Some(Pin::of(b"x"))).encode();
    for pasted in [
        format!("  {value}\n"),
        format!("\"{value}\""),
        format!("'{value}'"),
    ] {
        assert_eq!(Join::parse(&pasted), Ok(join(Some(Pin::of(b"x")))));
    }
}

#[test]
fn keys_a_newer_relay_adds_are_skipped() {
    let json = format!(r#"{{"relay":"ws://127.0.0.1:8080","token":"{TOKEN}","later":1}}"#);
    let value = format!("{JOIN_PREFIX}{}", super::BASE64.encode(json));
    let parsed = Join::parse(&value).expect("parses");
    assert_eq!(parsed.relay, "ws://127.0.0.1:8080");
    assert_eq!(parsed.token.expose(), TOKEN);
}

#[test]
fn refuses_a_wrong_prefix_damage_and_truncation() {
    let value = join(Some(Pin::of(b"x"))).encode();
    assert_eq!(Join::parse(&value[4..]), Err(JoinError::Prefix));
    assert_eq!(
        Join::parse(&value.replacen("rj1.", "rj2.", 1)),
        Err(JoinError::Prefix)
    );
    assert_eq!(Join::parse(TOKEN), Err(JoinError::Prefix));
    assert_eq!(Join::parse("rj1.abc$def"), Err(JoinError::Base64));
    // Cut at every length: never accepted, never a panic.
    for end in JOIN_PREFIX.len()..value.len() {
        let error = Join::parse(&value[..end]).expect_err("cut short");
        assert!(
            matches!(
                error,
                JoinError::Truncated | JoinError::Base64 | JoinError::Shape(_)
            ),
            "{end}: {error:?}"
        );
    }
    let cut = &value[..value.len() - 8];
    assert!(Join::parse(cut).is_err());
    assert_eq!(
        Join::parse(&"A".repeat(MAX_JOIN_LEN + 1)),
        Err(JoinError::TooLong)
    );
}

#[test]
fn refuses_a_bad_relay_token_or_pin_inside() {
    let encode = |json: &str| format!("{JOIN_PREFIX}{}", super::BASE64.encode(json));
    assert_eq!(
        Join::parse(&encode(r#"{"relay":"https://x","token":"t"}"#)),
        Err(JoinError::Relay)
    );
    assert!(matches!(
        Join::parse(&encode(r#"{"relay":"wss://x","token":""}"#)),
        Err(JoinError::Shape(_))
    ));
    assert!(matches!(
        Join::parse(&encode(r#"{"relay":"wss://x"}"#)),
        Err(JoinError::Shape(_))
    ));
    assert_eq!(
        Join::parse(&encode(
            r#"{"relay":"wss://x","token":"t","pin":"sha256:00"}"#
        )),
        Err(JoinError::Pin(PinError::Digits))
    );
}

#[test]
fn no_error_message_quotes_the_token() {
    let encode = |json: &str| format!("{JOIN_PREFIX}{}", super::BASE64.encode(json));
    let damaged = [
        encode(&format!(r#"{{"relay":"wss://x","token":{TOKEN}}}"#)),
        encode(&format!(r#"{{"relay":"wss://x","token":["{TOKEN}"]}}"#)),
        encode(&format!(r#"{{"relay":"{TOKEN}","token":"t"}}"#)),
        format!("rj1.{TOKEN}$"),
        TOKEN.to_owned(),
    ];
    for value in damaged {
        let error = Join::parse(&value).expect_err("damaged");
        let message = error.to_string();
        assert!(!message.contains("5ecret"), "{message}");
        assert!(!format!("{error:?}").contains("5ecret"), "{error:?}");
    }
}

#[test]
fn debug_shows_the_relay_and_pin_but_not_the_token() {
    let join = join(Some(Pin::of(b"x")));
    let debug = format!("{join:?}");
    assert!(!debug.contains("5ecret"), "{debug}");
    assert!(debug.contains("wss://relay.example.org:8443"), "{debug}");
    assert!(debug.contains("sha256:"), "{debug}");
}

#[test]
fn a_pin_is_the_sha256_of_the_der_and_reads_back_from_its_display() {
    // SHA-256 of the empty string, the one digest everyone can check by hand.
    let empty = Pin::of(b"");
    assert_eq!(
        empty.to_string(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(Pin::parse(&empty.to_string()), Ok(empty));
    assert_eq!(
        Pin::parse("SHA256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"),
        Ok(empty)
    );
    let openssl = "sha256:E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55";
    assert_eq!(Pin::parse(openssl), Ok(empty));
    assert_eq!(format!("{empty:?}"), format!("Pin({empty})"));
}

#[test]
fn refuses_pins_that_are_not_64_hex_digits_after_sha256() {
    let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(Pin::parse(hex), Err(PinError::Prefix));
    assert_eq!(Pin::parse(&format!("sha1:{hex}")), Err(PinError::Prefix));
    assert_eq!(
        Pin::parse(&format!("sha256:{}", &hex[1..])),
        Err(PinError::Digits)
    );
    assert_eq!(
        Pin::parse(&format!("sha256:{hex}00")),
        Err(PinError::Digits)
    );
    assert_eq!(
        Pin::parse(&format!("sha256:{}g", &hex[1..])),
        Err(PinError::Digits)
    );
    assert_eq!(
        Pin::parse(
            "sha256:E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:5"
        ),
        Err(PinError::Digits)
    );
    assert_eq!(Pin::parse("sha256:é"), Err(PinError::Digits));
    assert_eq!(Pin::parse("sh"), Err(PinError::Prefix));
}
