use super::*;
use crate::config::KeyKind;
use crate::tls::self_signed::generate;

fn pair(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    generate(&names, KeyKind::Ecdsa).expect("generated")
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let (cert, _) = pair(&["a.example"]);
    let (_, other_key) = pair(&["a.example"]);
    let error = certified_key(cert.as_bytes(), other_key.as_bytes()).expect_err("mismatch");
    assert!(matches!(error, PemError::Mismatch(_)), "{error}");
}

#[test]
fn empty_or_damaged_pem_names_which_part() {
    let (cert, key) = pair(&["a.example"]);
    let error = certified_key(b"", key.as_bytes()).expect_err("no cert");
    assert!(matches!(error, PemError::Certificate(_)), "{error}");
    let error = certified_key(cert.as_bytes(), b"nothing").expect_err("no key");
    assert!(matches!(error, PemError::Key(_)), "{error}");
    let damaged = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n";
    let error = certified_key(damaged.as_bytes(), key.as_bytes()).expect_err("damaged");
    assert!(matches!(error, PemError::Certificate(_)), "{error}");
}

#[test]
fn the_info_reads_names_dates_and_fingerprint() {
    let (cert, key) = pair(&["relay.example.com", "192.0.2.1"]);
    let served = certified_key(cert.as_bytes(), key.as_bytes()).expect("fits");
    let info = CertInfo::of(&served.cert[0]).expect("parses");
    assert_eq!(info.names, ["relay.example.com", "192.0.2.1"]);
    assert!(info.not_before < SystemTime::now() && SystemTime::now() < info.not_after);
    assert_eq!(info.fingerprint, protocol::Pin::of(&served.cert[0]));
    assert!(info.self_signed);
}

#[test]
fn covers_follows_the_client_name_rules() {
    let (cert, key) = pair(&["*.example.com", "192.0.2.1"]);
    let served = certified_key(cert.as_bytes(), key.as_bytes()).expect("fits");
    let der = &served.cert[0];
    assert!(covers(der, "relay.example.com"));
    assert!(
        !covers(der, "a.b.example.com"),
        "a wildcard covers one label"
    );
    assert!(!covers(der, "example.com"));
    assert!(covers(der, "192.0.2.1"));
    assert!(!covers(der, "not a name"));
}

#[test]
fn read_pair_names_the_file_at_fault() {
    let dir = test_support::TempDir::new("pem-pair");
    let (cert, _) = pair(&["a.example"]);
    let (_, other) = pair(&["a.example"]);
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert).expect("write");
    std::fs::write(&key_file, other).expect("write");
    let error = read_pair(&cert_file, &key_file)
        .expect_err("mismatch")
        .to_string();
    assert!(
        error.contains("key.pem") && error.contains("does not belong"),
        "{error}"
    );
    let error = read_pair(&dir.path().join("missing.pem"), &key_file)
        .expect_err("missing")
        .to_string();
    assert!(error.contains("missing.pem"), "{error}");
}
