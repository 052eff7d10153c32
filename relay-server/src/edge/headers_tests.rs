use super::*;

#[test]
fn forwarded_headers_keep_order_and_duplicates_and_name_the_real_caller() {
    let mut headers = HeaderMap::new();
    headers.append("content-type", HeaderValue::from_static("application/json"));
    headers.append("x-dup", HeaderValue::from_static("1"));
    headers.append("connection", HeaderValue::from_static("keep-alive, X-Hop"));
    headers.append("x-hop", HeaderValue::from_static("dropped"));
    headers.append("x-dup", HeaderValue::from_static("2"));
    headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    headers.append("x-forwarded-proto", HeaderValue::from_static("http"));
    let peer: SocketAddr = "149.154.167.220:4431".parse().expect("addr");
    let flat = |out: &[Header]| -> Vec<(String, Vec<u8>)> {
        out.iter().map(|(n, v)| (n.clone(), v.to_vec())).collect()
    };
    let at_the_edge = forwarded_headers(&headers, peer, Forwarding::Edge);
    let expected: Vec<(String, Vec<u8>)> = [
        ("content-type", &b"application/json"[..]),
        ("x-dup", b"1"),
        ("x-dup", b"2"),
        ("x-forwarded-for", b"149.154.167.220"),
        ("x-forwarded-proto", b"https"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_vec()))
    .collect();
    assert_eq!(flat(&at_the_edge), expected);

    let behind_a_proxy = forwarded_headers(&headers, peer, Forwarding::TrustedProxy);
    let tail = &flat(&behind_a_proxy)[3..];
    assert_eq!(tail[0].1, b"203.0.113.9, 149.154.167.220");
    assert_eq!(tail[1].1, b"http");

    let headers_from_a_stranger = forwarded_headers(&headers, peer, Forwarding::Untrusted);
    let tail = &flat(&headers_from_a_stranger)[3..];
    assert_eq!(
        tail[0].1, b"149.154.167.220",
        "a stranger's chain is dropped"
    );
    assert_eq!(tail[1].1, b"http");
}

#[test]
fn bot_answers_pass_through_without_hop_headers() {
    let response = protocol::Response {
        id: 1,
        status: 200,
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"multipart/form-data; boundary=xyz"),
            ),
            ("transfer-encoding".into(), Bytes::from_static(b"chunked")),
            ("content-length".into(), Bytes::from_static(b"999")),
            ("set-cookie".into(), Bytes::from_static(b"a=1")),
            ("set-cookie".into(), Bytes::from_static(b"b=2")),
        ],
        body: Bytes::from_static(b"--xyz--"),
    };
    let out = bot_response(response);
    assert_eq!(out.status(), StatusCode::OK);
    assert_eq!(
        out.headers()["content-type"],
        "multipart/form-data; boundary=xyz"
    );
    assert!(out.headers().get("transfer-encoding").is_none());
    assert!(out.headers().get("content-length").is_none());
    assert_eq!(out.headers().get_all("set-cookie").iter().count(), 2);
}

#[test]
fn the_client_is_the_peer_unless_a_trusted_proxy_names_it_last() {
    let mut headers = HeaderMap::new();
    headers.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    headers.append(
        "x-forwarded-for",
        HeaderValue::from_static("1.2.3.4, 203.0.113.9"),
    );
    let proxy: SocketAddr = "127.0.0.1:4431".parse().expect("addr");
    let seen = |forwarding| client_address(&headers, proxy, forwarding).to_string();
    assert_eq!(seen(Forwarding::TrustedProxy), "203.0.113.9");
    assert_eq!(seen(Forwarding::Untrusted), "127.0.0.1");
    assert_eq!(seen(Forwarding::Edge), "127.0.0.1");
    let garbage = HeaderMap::from_iter([(
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_static("not an address"),
    )]);
    assert_eq!(
        client_address(&garbage, proxy, Forwarding::TrustedProxy).to_string(),
        "127.0.0.1"
    );
}
