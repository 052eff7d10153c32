use std::path::Path;

use clap::Parser;

use super::*;
use crate::config::Cli;
use crate::config::file::FileConfig;

fn merge(args: &[&str], file: &str) -> Result<TlsMode, String> {
    let cli = Cli::try_parse_from(std::iter::once("relay-server").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let file = FileConfig::parse(Path::new("t.toml"), file).map_err(|e| e.to_string())?;
    crate::Config::merge(cli, file)
        .map(|config| config.tls)
        .map_err(|e| e.to_string())
}

#[test]
fn the_default_is_self_signed_and_its_key_kind_can_be_chosen() {
    assert_eq!(merge(&[], ""), Ok(TlsMode::SelfSigned { key: None }));
    assert_eq!(
        merge(&["--self-signed-key", "ecdsa"], ""),
        Ok(TlsMode::SelfSigned {
            key: Some(KeyKind::Ecdsa)
        })
    );
    assert_eq!(
        merge(&[], "[tls]\nself_signed_key = \"rsa\""),
        Ok(TlsMode::SelfSigned {
            key: Some(KeyKind::Rsa)
        })
    );
    let error = merge(
        &[],
        "[tls]\ncert = \"c\"\nkey = \"k\"\nself_signed_key = \"rsa\"",
    )
    .expect_err("not for files");
    assert!(error.contains("self_signed_key"), "{error}");
}

#[test]
fn acme_domains_from_flags_or_file_with_lets_encrypt_by_default() {
    let mode = merge(
        &[
            "--acme-domain",
            "relay.example.com",
            "--acme-email",
            "ops@example.com",
        ],
        "",
    );
    assert_eq!(
        mode,
        Ok(TlsMode::Acme(AcmeSettings {
            domains: vec!["relay.example.com".into()],
            email: Some("ops@example.com".into()),
            directory: DEFAULT_ACME_DIRECTORY.into(),
            ca: None,
            http_listen: None,
        }))
    );
    let file = "[tls.acme]\ndomains = [\"a.example.com\", \"b.example.com\"]\n\
                directory = \"https://127.0.0.1:14000/dir\"\nca = \"/root.pem\"\n\
                http_listen = \"0.0.0.0:80\"";
    let Ok(TlsMode::Acme(acme)) = merge(&[], file) else {
        panic!("acme from the file");
    };
    assert_eq!(acme.domains, ["a.example.com", "b.example.com"]);
    assert_eq!(acme.http_listen, Some("0.0.0.0:80".parse().expect("addr")));
    assert_eq!(acme.ca.as_deref(), Some(Path::new("/root.pem")));
    let Ok(TlsMode::Acme(acme)) = merge(&["--acme-domain", "c.example.com"], file) else {
        panic!("acme");
    };
    assert_eq!(
        acme.domains,
        ["c.example.com"],
        "the flag replaces the file's list"
    );
    assert_eq!(acme.directory, "https://127.0.0.1:14000/dir");
}

#[test]
fn acme_settings_that_cannot_work_are_refused_with_a_reason() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["--acme-email", "ops@example.com"],
            "",
            "need at least one --acme-domain",
        ),
        (
            &[],
            "[tls.acme]\nhttp_listen = \"0.0.0.0:80\"",
            "need at least one",
        ),
        (&["--acme-domain", "203.0.113.7"], "", "is an IP address"),
        (&["--acme-domain", "localhost"], "", "not a DNS name"),
        (&["--acme-domain", "bad_name.example"], "", "not a DNS name"),
        (
            &["--acme-domain", "a.example", "--acme-domain", "a.example"],
            "",
            "twice",
        ),
        (
            &["--acme-domain", "a.example", "--acme-email", "nobody"],
            "",
            "e-mail",
        ),
        (
            &[
                "--acme-domain",
                "a.example",
                "--acme-directory",
                "http://ca.example/dir",
            ],
            "",
            "https://",
        ),
        (
            &["--acme-domain", "a.example"],
            "[tls]\nenabled = false",
            "ACME needs TLS",
        ),
        (
            &["--acme-domain", "a.example"],
            "[tls]\ncert = \"c\"\nkey = \"k\"",
            "not both",
        ),
    ];
    for (args, file, expected) in cases {
        let error = merge(args, file).expect_err(expected);
        assert!(error.contains(expected), "{args:?} {file:?}: {error}");
    }
    assert!(merge(&["--acme-domain", "a.example", "--no-tls"], "").is_err());
    assert!(
        merge(
            &[
                "--acme-domain",
                "a.example",
                "--tls-cert",
                "c",
                "--tls-key",
                "k"
            ],
            ""
        )
        .is_err()
    );
    assert!(
        merge(&["--acme-domain", "*.example.com"], "").is_ok(),
        "wildcards are names"
    );
}
