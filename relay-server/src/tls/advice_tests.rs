use super::*;
use crate::config::KeyKind;
use crate::tls::self_signed;

#[test]
fn the_report_names_the_file_the_names_the_validity_and_the_pin() {
    let dir = test_support::TempDir::new("advice-report");
    let mut config = Config::new(dir.path());
    let error = report(&config).expect_err("not made yet").to_string();
    assert!(error.contains("start the relay once"), "{error}");
    let made = self_signed::ensure(
        &DataDir::new(dir.path()),
        Some("relay.example.com"),
        Some(KeyKind::Ecdsa),
    )
    .expect("made");
    let text = report(&config).expect("report");
    let pin = protocol::Pin::of(&made.key.cert[0]).to_string();
    assert!(text.contains("self-signed-cert.pem"), "{text}");
    assert!(text.contains("relay.example.com, localhost"), "{text}");
    assert!(text.contains(&pin), "{text}");
    assert!(text.contains("days left"), "{text}");
    assert!(text.contains("certificate=@"), "{text}");
    config.tls = TlsMode::Off;
    let error = report(&config).expect_err("off").to_string();
    assert!(error.contains("TLS is off"), "{error}");
}

#[test]
fn telegram_ports_are_the_four_it_documents() {
    assert_eq!(TELEGRAM_PORTS, [443, 80, 88, 8443]);
}
