use super::*;

#[test]
fn relay_urls_default_their_port_and_join_the_agent_path() {
    let url = RelayUrl::parse("wss://relay.example.com").expect("valid");
    assert!(url.is_tls());
    assert_eq!((url.host(), url.port()), ("relay.example.com", 443));
    assert_eq!(url.endpoint(), "wss://relay.example.com/agent/v1");

    let url = RelayUrl::parse("ws://10.0.0.1:8080/relay/").expect("valid");
    assert!(!url.is_tls());
    assert_eq!((url.host(), url.port()), ("10.0.0.1", 8080));
    assert_eq!(url.endpoint(), "ws://10.0.0.1:8080/relay/agent/v1");

    let url = RelayUrl::parse("wss://[::1]:8443").expect("valid");
    assert_eq!((url.host(), url.port()), ("::1", 8443));
    assert_eq!(url.endpoint(), "wss://[::1]:8443/agent/v1");
    assert_eq!(RelayUrl::parse("ws://h").expect("valid").port(), 80);
}

#[test]
fn relay_urls_must_be_websocket_with_a_host() {
    for bad in [
        "https://relay.example.com",
        "relay.example.com:8443",
        "ftp://relay",
        "wss://",
        "not a url",
        "wss://user:pw@relay.example.com",
        "",
    ] {
        let err = RelayUrl::parse(bad).expect_err(bad);
        let text = err.to_string();
        assert!(text.contains("--relay"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}

#[test]
fn bot_urls_must_be_plain_http() {
    assert!(BotUrl::parse("http://127.0.0.1:8080/webhook").is_ok());
    assert!(
        BotUrl::parse("https://127.0.0.1/x")
            .expect_err("https")
            .to_string()
            .contains("plain http")
    );
    assert!(BotUrl::parse("127.0.0.1:8080").is_err());
    assert!(BotUrl::parse("http:///path").is_err());
    assert!(BotUrl::parse("ws://bot").is_err());
}

#[test]
fn request_paths_and_queries_join_the_bot_url() {
    let cases = [
        (
            "http://127.0.0.1:8080/webhook",
            "/rest",
            None,
            "/webhook/rest",
        ),
        ("http://127.0.0.1:8080/webhook", "", None, "/webhook"),
        ("http://127.0.0.1:8080/", "/rest", None, "/rest"),
        ("http://127.0.0.1:8080", "", None, "/"),
        ("http://127.0.0.1:8080/hook/", "", None, "/hook/"),
        ("http://127.0.0.1:8080/hook/", "/a/b", None, "/hook/a/b"),
        ("http://127.0.0.1:8080/w?k=1", "", Some("a=2"), "/w?k=1&a=2"),
        ("http://127.0.0.1:8080/w?k=1", "/x", None, "/w/x?k=1"),
        ("http://127.0.0.1:8080/w", "", Some("a=%20&b"), "/w?a=%20&b"),
        ("http://127.0.0.1:8080/w", "", Some(""), "/w"),
    ];
    for (base, path, query, want) in cases {
        let url = BotUrl::parse(base).expect("valid");
        let uri = url.join(path, query).expect("joins");
        assert_eq!(
            uri.path_and_query().map(|pq| pq.as_str()),
            Some(want),
            "{base} + {path}"
        );
        assert_eq!(uri.authority().map(|a| a.as_str()), Some("127.0.0.1:8080"));
    }
    let url = BotUrl::parse("http://127.0.0.1:8080/w").expect("valid");
    assert!(url.join("/bad path", None).is_err());
}

#[test]
fn api_urls_build_method_urls_and_mask_the_token() {
    let token = Secret::new("123:ABC-def_ghi");
    let url = ApiUrl::default();
    assert_eq!(url.to_string(), "https://api.telegram.org");
    assert_eq!(
        url.method(&token, "sendMessage").expect("uri").to_string(),
        "https://api.telegram.org/bot123:ABC-def_ghi/sendMessage"
    );
    assert_eq!(
        url.masked("sendMessage"),
        "https://api.telegram.org/bot***/sendMessage"
    );
    assert_eq!(ApiUrl::parse("https://api.telegram.org/"), Ok(url));

    let local = ApiUrl::parse("http://127.0.0.1:8081/tg/").expect("valid");
    assert!(!local.is_tls());
    assert_eq!(
        local.method(&token, "close").expect("uri").to_string(),
        "http://127.0.0.1:8081/tg/bot123:ABC-def_ghi/close"
    );
    assert!(!local.masked("close").contains("ABC"));
    for bad in [
        "api.telegram.org",
        "ws://api.telegram.org",
        "https://",
        "https://u:p@api.telegram.org",
        "https://api.telegram.org/?x=1",
    ] {
        assert!(ApiUrl::parse(bad).is_err(), "{bad}");
    }
}
