use super::*;

fn get(path: &str, host: Option<&str>) -> Request<()> {
    let mut request = Request::get(path);
    if let Some(host) = host {
        request = request.header(header::HOST, host);
    }
    request.body(()).expect("request")
}

fn location(response: &Response<Full<Bytes>>) -> &str {
    response.headers()[header::LOCATION]
        .to_str()
        .expect("ascii")
}

#[test]
fn other_requests_are_redirected_to_the_same_url_on_https() {
    let tokens = Tokens::default();
    let response = answer(&tokens, 443, &get("/a/b?c=d", Some("relay.example:80")));
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location(&response), "https://relay.example/a/b?c=d");
    let response = answer(&tokens, 8443, &get("/", Some("relay.example")));
    assert_eq!(location(&response), "https://relay.example:8443/");
    let response = answer(&tokens, 443, &get("/", Some("[::1]:80")));
    assert_eq!(location(&response), "https://[::1]/");
}

#[test]
fn a_missing_or_odd_host_gets_400_not_a_redirect() {
    let tokens = Tokens::default();
    for host in [None, Some("user@evil.example"), Some("a b"), Some("")] {
        let response = answer(&tokens, 443, &get("/", host));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{host:?}");
    }
}

#[test]
fn an_open_challenge_gets_exactly_its_key_authorization_and_others_404() {
    let tokens = Tokens::default();
    tokens.insert("tok", "tok.thumb").expect("room");
    let response = answer(&tokens, 443, &get("/.well-known/acme-challenge/tok", None));
    assert_eq!(response.status(), StatusCode::OK);
    let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
        response.into_body(),
    ))
    .expect("a full body")
    .expect("infallible")
    .to_bytes();
    assert_eq!(&body[..], b"tok.thumb");
    let response = answer(
        &tokens,
        443,
        &get("/.well-known/acme-challenge/other", None),
    );
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
