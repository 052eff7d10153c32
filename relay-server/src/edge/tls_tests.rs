use super::*;
use crate::data_dir::DataDir;

#[test]
fn self_signed_certificate_is_made_once_and_remade_for_a_new_host() {
    let dir = test_support::temp_dir("tls");
    let first = load(&TlsMode::SelfSigned, &DataDir::new(&dir), None)
        .expect("tls")
        .expect("on");
    let cert = first.self_signed_cert.expect("self-signed path");
    let pem = std::fs::read(&cert).expect("cert file");
    load(&TlsMode::SelfSigned, &DataDir::new(&dir), None).expect("tls");
    assert_eq!(
        std::fs::read(&cert).expect("cert file"),
        pem,
        "kept across starts"
    );
    load(
        &TlsMode::SelfSigned,
        &DataDir::new(&dir),
        Some("relay.example.com"),
    )
    .expect("tls");
    assert_ne!(
        std::fs::read(&cert).expect("cert file"),
        pem,
        "remade for the new name"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_or_empty_files_name_the_file() {
    let dir = test_support::temp_dir("tls-bad");
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, "not pem").expect("write");
    let mode = TlsMode::Files {
        cert: cert.clone(),
        key: dir.join("missing-key.pem"),
    };
    let err = load(&mode, &DataDir::new(&dir), None).expect_err("bad files");
    assert!(err.to_string().contains("cert.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
