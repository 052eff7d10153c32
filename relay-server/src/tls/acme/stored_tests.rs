use super::*;

#[test]
fn renewal_starts_with_a_third_of_the_lifetime_left() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(renew_at(start, start + 90 * day), start + 60 * day);
}

fn chain_and_key(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let params = rcgen::CertificateParams::new(names).expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn a_kept_certificate_counts_only_when_it_covers_every_domain() {
    let dir = test_support::TempDir::new("acme-stored");
    let data_dir = DataDir::new(dir.path());
    let domains = vec!["a.example".to_owned(), "b.example".to_owned()];
    assert!(
        load_certificate(&data_dir, &domains)
            .expect("no file")
            .is_none()
    );

    let (chain, key) = chain_and_key(&["a.example"]);
    save_certificate(&data_dir, &chain, &key).expect("save");
    assert!(
        load_certificate(&data_dir, &domains)
            .expect("read")
            .is_none()
    );

    let (chain, key) = chain_and_key(&["b.example", "a.example"]);
    save_certificate(&data_dir, &chain, &key).expect("save");
    let kept = load_certificate(&data_dir, &domains)
        .expect("read")
        .expect("covers both");
    assert!(kept.renew_at < kept.not_after);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.acme_key())
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_key_that_does_not_fit_the_chain_is_refused() {
    let dir = test_support::TempDir::new("acme-mismatch");
    let data_dir = DataDir::new(dir.path());
    let (chain, _) = chain_and_key(&["a.example"]);
    let (_, other_key) = chain_and_key(&["a.example"]);
    save_certificate(&data_dir, &chain, &other_key).expect("save");
    let domains = vec!["a.example".to_owned()];
    assert!(matches!(
        load_certificate(&data_dir, &domains),
        Err(AcmeError::Certificate(_))
    ));
}

#[test]
fn an_account_of_another_directory_is_not_used() {
    let dir = test_support::TempDir::new("acme-account");
    let data_dir = DataDir::new(dir.path());
    let path = data_dir.acme_account();
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(
        &path,
        r#"{"id":"https://staging/acct/1","key_pkcs8":"AAAA","directory":"https://staging/dir"}"#,
    )
    .expect("write");
    assert!(
        load_account(&data_dir, "https://production/dir")
            .expect("readable")
            .is_none()
    );
    std::fs::write(&path, "not json").expect("write");
    assert!(matches!(
        load_account(&data_dir, "https://production/dir"),
        Err(AcmeError::Storage { .. })
    ));
}
