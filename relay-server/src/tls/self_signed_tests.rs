use rustls::SignatureAlgorithm;

use super::*;
use crate::tls::pem::CertInfo;

fn info(made: &SelfSigned) -> CertInfo {
    CertInfo::of(&made.key.cert[0]).expect("parses")
}

#[test]
fn a_new_certificate_is_rsa_2048_for_the_public_host_first_and_kept_across_starts() {
    let dir = test_support::TempDir::new("self-signed");
    let data_dir = DataDir::new(dir.path());
    let first = ensure(&data_dir, Some("relay.example.com"), None).expect("made");
    assert_eq!(first.key.key.algorithm(), SignatureAlgorithm::RSA);
    let info = info(&first);
    assert_eq!(info.names[0], "relay.example.com", "{:?}", info.names);
    assert!(info.names.iter().any(|n| n == "127.0.0.1"));
    assert!(info.self_signed);
    assert!(info.not_after > SystemTime::now() + Duration::from_secs(9 * 365 * 86_400));
    // A 2048-bit RSA key's SubjectPublicKeyInfo is 294 bytes of DER (3072 bits would be 422).
    let spki = first.key.key.public_key().expect("public key");
    assert_eq!(spki.len(), 294, "RSA-2048");
    let pem = std::fs::read(&first.cert_file).expect("cert file");
    let again = ensure(&data_dir, Some("relay.example.com"), None).expect("kept");
    assert_eq!(std::fs::read(&again.cert_file).expect("cert file"), pem);
    assert_eq!(again.key.cert, first.key.cert);
}

#[test]
fn an_ip_address_is_a_name_the_certificate_covers() {
    let dir = test_support::TempDir::new("self-signed-ip");
    let made = ensure(
        &DataDir::new(dir.path()),
        Some("203.0.113.7"),
        Some(KeyKind::Ecdsa),
    )
    .expect("made");
    assert_eq!(made.key.key.algorithm(), SignatureAlgorithm::ECDSA);
    assert!(pem::covers(&made.key.cert[0], "203.0.113.7"));
    assert!(!pem::covers(&made.key.cert[0], "203.0.113.8"));
    assert_eq!(info(&made).names[0], "203.0.113.7");
}

#[test]
fn a_new_host_or_another_key_kind_remakes_it_and_no_kind_keeps_what_is_there() {
    let dir = test_support::TempDir::new("self-signed-remake");
    let data_dir = DataDir::new(dir.path());
    let ecdsa = ensure(&data_dir, None, Some(KeyKind::Ecdsa)).expect("made");
    let kept = ensure(&data_dir, None, None).expect("kept");
    assert_eq!(
        kept.key.cert, ecdsa.key.cert,
        "no kind asked: the ECDSA one stays"
    );
    let rsa = ensure(&data_dir, None, Some(KeyKind::Rsa)).expect("remade");
    assert_ne!(rsa.key.cert, ecdsa.key.cert);
    assert_eq!(rsa.key.key.algorithm(), SignatureAlgorithm::RSA);
    let renamed = ensure(&data_dir, Some("relay.example.com"), None).expect("remade");
    assert_ne!(renamed.key.cert, rsa.key.cert, "remade for the new name");
}

#[test]
fn a_damaged_kept_certificate_is_remade() {
    let dir = test_support::TempDir::new("self-signed-damaged");
    let data_dir = DataDir::new(dir.path());
    let first = ensure(&data_dir, None, Some(KeyKind::Ecdsa)).expect("made");
    std::fs::write(
        data_dir.self_signed_cert(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .expect("damage");
    let again = ensure(&data_dir, None, Some(KeyKind::Ecdsa)).expect("remade");
    assert_ne!(again.key.cert, first.key.cert);
}

#[cfg(unix)]
#[test]
fn the_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = test_support::TempDir::new("self-signed-mode");
    let data_dir = DataDir::new(dir.path());
    ensure(&data_dir, None, Some(KeyKind::Ecdsa)).expect("made");
    let mode = std::fs::metadata(data_dir.self_signed_key())
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
