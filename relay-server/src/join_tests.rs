use super::*;
use crate::config::{AgentGrant, KeyKind};
use crate::tls::self_signed;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    config.listen = "0.0.0.0:8443".parse().expect("addr");
    config.public_host = Some("relay.example.com".into());
    config
}

#[test]
fn a_self_signed_relay_joins_with_its_url_token_and_pin() {
    let dir = test_support::TempDir::new("join");
    let config = config(dir.path());
    let data_dir = DataDir::new(dir.path());
    let (token, _) = crate::data_dir::load_or_create_token(&data_dir.agent_token()).expect("token");
    let made = self_signed::ensure(&data_dir, Some("relay.example.com"), Some(KeyKind::Ecdsa))
        .expect("cert");
    let join = join_value(&config, config.listen).expect("join");
    assert_eq!(join.relay, "wss://relay.example.com:8443");
    assert_eq!(join.token, token);
    assert_eq!(join.pin, Some(Pin::of(&made.key.cert[0])));
    assert_eq!(Join::parse(&join.encode()).expect("parses"), join);
}

#[test]
fn without_tls_or_with_acme_there_is_no_pin_and_the_scheme_follows() {
    let dir = test_support::TempDir::new("join-plain");
    let mut config = config(dir.path());
    config.agent_token = Some(Secret::new("a-token-of-sixteen-chars"));
    config.tls = TlsMode::Off;
    let join = join_value(&config, config.listen).expect("join");
    assert_eq!(join.relay, "ws://relay.example.com:8443");
    assert_eq!(join.pin, None);
    config.public_host = None;
    config.tls = TlsMode::Acme(crate::config::AcmeSettings {
        domains: vec!["acme.example.com".into()],
        email: None,
        directory: "https://ca.example/dir".into(),
        ca: None,
        http_listen: None,
    });
    let join = join_value(&config, config.listen).expect("join");
    assert_eq!(
        join.relay, "wss://acme.example.com:8443",
        "the first ACME domain"
    );
    assert_eq!(join.pin, None);
}

#[test]
fn what_is_missing_is_named() {
    let dir = test_support::TempDir::new("join-missing");
    let mut config = config(dir.path());
    let error = join_value(&config, config.listen)
        .expect_err("no token yet")
        .to_string();
    assert!(
        error.contains("agent-token") && error.contains("start the relay once"),
        "{error}"
    );
    config.public_host = None;
    assert!(matches!(
        join_value(&config, config.listen),
        Err(JoinUnavailable::NoHost)
    ));
    std::fs::write(
        DataDir::new(dir.path()).agent_token(),
        "a-token-of-sixteen-chars\n",
    )
    .expect("token");
    config.tls = TlsMode::Off;
    let bound = "[::1]:9000".parse().expect("addr");
    let join = join_value(&config, bound).expect("a specific address names the host");
    assert_eq!(join.relay, "ws://[::1]:9000");
    config.public_host = Some("relay.example.com".into());
    config.agents.push(AgentGrant {
        name: "a".into(),
        token: Secret::new("a-token-of-sixteen-chars"),
        bots: vec!["echo".into()],
    });
    assert!(matches!(
        join_value(&config, config.listen),
        Err(JoinUnavailable::PerAgentTokens)
    ));
}
