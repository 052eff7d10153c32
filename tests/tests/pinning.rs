//! The agent trusting exactly the relay's certificate: a self-signed one marked CA:TRUE (as
//! `openssl req -x509` makes it, and as Telegram's guide tells bot owners to make it), served by a
//! real relay from files, trusted with `--ca`, with `--pin`, or through a join value alone.

use std::path::PathBuf;

use clap::Parser;
use e2e::relay::TOKEN;
use e2e::{Answer, FakeTelegram, TestAgent, TestBot, TestRelay, update_json};
use protocol::{Join, Pin, Secret};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use relay_agent::{AgentError, Cli, Config};
use relay_server::TlsMode;
use rustls_pki_types::CertificateDer;

/// A relay serving a CA:TRUE self-signed certificate for localhost and 127.0.0.1 from files.
struct Relay {
    relay: TestRelay,
    /// The certificate's PEM file, as an agent's `--ca` takes it.
    cert_file: PathBuf,
    /// The certificate itself.
    der: CertificateDer<'static>,
}

fn relay() -> Relay {
    let dir = e2e::temp_dir("ca-true-cert");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    std::fs::write(&cert_file, cert.pem()).expect("write cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    let mut config = TestRelay::config();
    config.tls = TlsMode::Files {
        cert: cert_file.clone(),
        key: key_file,
    };
    Relay {
        relay: TestRelay::start_with(config),
        cert_file,
        der: cert.der().clone(),
    }
}

async fn echo_bot() -> TestBot {
    TestBot::start(
        |request| async move { Answer::with_body(200, "application/json", request.body) },
    )
    .await
}

/// Sends one update through the relay, as Telegram would with the certificate uploaded, and
/// checks that the bot's answer comes back.
async fn a_webhook_goes_through(relay: &Relay, bot: &TestBot) {
    let telegram = FakeTelegram::uploaded(&relay.relay, relay.der.clone());
    let update = update_json(42, 7_000_000_042, "pinned");
    let reply = telegram.send("/hook/echo", update.clone()).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(&reply.body[..], update.as_bytes());
    assert_eq!(bot.count(), 1);
}

/// The agent's config for `relay` with neither `--ca` nor `--pin`.
fn untrusting(relay: &Relay, bot: &TestBot) -> Config {
    let mut config = TestAgent::config(&relay.relay, &[("echo", bot.url("/"))]);
    config.ca = None;
    config.pin = None;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_with_a_ca_true_self_signed_certificate_connects_and_a_webhook_goes_through() {
    let relay = relay();
    let bot = echo_bot().await;
    let mut config = untrusting(&relay, &bot);
    config.ca = Some(relay.cert_file.clone());
    let mut agent = TestAgent::start(config);
    tokio::select! {
        () = relay.relay.wait_for_bot("echo") => {}
        ended = agent.exited() => panic!("the agent stopped: {ended:?}"),
    }
    a_webhook_goes_through(&relay, &bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_of_the_certificate_connects_with_no_file() {
    let relay = relay();
    let bot = echo_bot().await;
    let mut config = untrusting(&relay, &bot);
    config.pin = Some(Pin::of(&relay.der));
    let mut agent = TestAgent::start(config);
    tokio::select! {
        () = relay.relay.wait_for_bot("echo") => {}
        ended = agent.exited() => panic!("the agent stopped: {ended:?}"),
    }
    a_webhook_goes_through(&relay, &bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_stops_the_agent_naming_both_fingerprints() {
    let relay = relay();
    let bot = echo_bot().await;
    let mut config = untrusting(&relay, &bot);
    let expected = Pin::of(b"the certificate the relay had before");
    config.pin = Some(expected);
    let mut agent = TestAgent::start(config);
    let error = agent.exited().await.expect_err("a pin mismatch is fatal");
    assert!(matches!(error, AgentError::PinMismatch { .. }), "{error}");
    let line = error.to_string();
    assert!(
        line.contains(&format!(
            "the relay's certificate is {} but --pin expects {expected}",
            Pin::of(&relay.der)
        )),
        "{line}"
    );
    assert!(line.contains("copy the new join line"), "{line}");
    assert!(!line.contains('\n'), "{line}");
    assert!(!relay.relay.serves("echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_value_alone_gives_the_relay_the_token_and_the_pin() {
    let relay = relay();
    let bot = echo_bot().await;
    let join = Join {
        relay: relay.relay.agent_url(),
        token: Secret::new(TOKEN),
        pin: Some(Pin::of(&relay.der)),
    }
    .encode();
    let state_dir = e2e::temp_dir("join-agent-state");
    let bot_flag = format!("echo={}", bot.url("/"));
    let cli = Cli::try_parse_from([
        "relay-agent",
        "--join",
        &join,
        "--bot",
        &bot_flag,
        "--state-dir",
        state_dir.to_str().expect("utf-8 temp dir"),
    ])
    .expect("flags parse");
    let config = Config::from_cli(cli).expect("a join value is enough");
    let mut agent = TestAgent::start(config);
    tokio::select! {
        () = relay.relay.wait_for_bot("echo") => {}
        ended = agent.exited() => panic!("the agent stopped: {ended:?}"),
    }
    a_webhook_goes_through(&relay, &bot).await;
}
