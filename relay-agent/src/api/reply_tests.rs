//! Tests for [`super`]: recognising calls in the three body kinds, and making them against a fake
//! Bot API on 127.0.0.1.

use std::time::Duration;

use protocol::Secret;
use tokio::sync::mpsc;

use super::*;
use test_support::{Answer, Received, TestBot, respond};

/// A bound on every wait in these tests, far above what any of them needs.
const TEST_DEADLINE: Duration = Duration::from_secs(10);

const TOKEN: &str = "123456:TEST-token_abc";

fn headers(content_type: &str) -> Vec<Header> {
    vec![(
        "content-type".into(),
        Bytes::copy_from_slice(content_type.as_bytes()),
    )]
}

fn method(content_type: &str, body: &str) -> Option<String> {
    parse(&headers(content_type), body.as_bytes()).map(|call| call.method)
}

/// A body as aiogram 3 builds it with aiohttp's `MultipartWriter`: one text part per field,
/// each with its own `Content-Type`, `method` first.
fn aiogram_body(boundary: &str, parts: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (name, value) in parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    body
}

#[test]
fn a_json_call_is_recognised() {
    let body = r#"{"method":"sendMessage","chat_id":5000000001,"text":"hi"}"#;
    assert_eq!(
        method("application/json", body).as_deref(),
        Some("sendMessage")
    );
    assert_eq!(
        method("Application/JSON; charset=utf-8", body).as_deref(),
        Some("sendMessage")
    );
    let call = parse(&headers("application/json; charset=utf-8"), body.as_bytes()).expect("call");
    assert_eq!(&call.content_type[..], b"application/json; charset=utf-8");
}

#[test]
fn a_form_call_is_recognised() {
    let form = "application/x-www-form-urlencoded";
    assert_eq!(
        method(form, "chat_id=42&method=sendMessage&text=Hello+w%C3%B6rld").as_deref(),
        Some("sendMessage")
    );
    assert_eq!(
        method(form, "meth%6Fd=send%4Dessage").as_deref(),
        Some("sendMessage")
    );
    assert_eq!(method(form, "chat_id=42&text=no+method"), None);
    assert_eq!(method(form, "method=%zz"), None);
}

#[test]
fn an_aiogram_multipart_call_is_recognised() {
    let boundary = "webhookBoundaryvBxr3x2S-ZkZ1xQ8n7_Tbg";
    let body = aiogram_body(
        boundary,
        &[
            ("method", "sendMessage"),
            ("chat_id", "5000000001"),
            ("text", "Hello, world"),
        ],
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    assert_eq!(method(&content_type, &body).as_deref(), Some("sendMessage"));
    let quoted = format!("multipart/form-data; boundary=\"{boundary}\"");
    assert_eq!(method(&quoted, &body).as_deref(), Some("sendMessage"));

    // The method part need not come first; a file part whose filename says "method" is not it.
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; filename=\"method\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n\x00\x01--not a boundary\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nsendDocument\r\n\
         --{boundary}--\r\n"
    );
    assert_eq!(
        method(&content_type, &body).as_deref(),
        Some("sendDocument")
    );

    // aiogram's answer when the handler returns nothing: a multipart body with no parts.
    assert_eq!(method(&content_type, &format!("--{boundary}--\r\n")), None);
    assert_eq!(method("multipart/form-data", &body), None, "no boundary");
    assert_eq!(method("multipart/form-data; boundary=other", &body), None);
    let cut = &body[..body.find("sendDocument").expect("in body")];
    assert_eq!(method(&content_type, cut), None, "truncated");
}

#[test]
fn bodies_that_are_not_calls_are_not_calls() {
    let cases = [
        ("application/json", r#"{"ok":true}"#),
        ("application/json", ""),
        ("application/json", "not json"),
        ("application/json", r#"["sendMessage"]"#),
        ("application/json", r#"{"method":5}"#),
        ("application/json", r#"{"method":""}"#),
        ("application/json", r#"{"method":"../../setWebhook"}"#),
        ("application/json", r#"{"method":"send Message"}"#),
        ("text/html", "<html><body>method=sendMessage</body></html>"),
        ("text/plain", r#"{"method":"sendMessage"}"#),
        ("", ""),
    ];
    for (content_type, body) in cases {
        assert_eq!(method(content_type, body), None, "{content_type}: {body}");
    }
    assert_eq!(parse(&[], br#"{"method":"sendMessage"}"#), None);
}

#[test]
fn the_methods_telegram_ignores_are_ignored() {
    for name in [
        "getMe",
        "getUpdates",
        "GETFILE",
        "setWebhook",
        "deleteWebhook",
        "deletewebhook",
        "close",
        "logOut",
    ] {
        assert!(ignored(name), "{name}");
    }
    for name in [
        "sendMessage",
        "answerCallbackQuery",
        "setMyCommands",
        "deleteMessage",
    ] {
        assert!(!ignored(name), "{name}");
    }
}

/// A fake Bot API that records each request and answers with `status` and `body`.
async fn fake_api(status: u16, body: &'static str) -> (TestBot, mpsc::UnboundedReceiver<Received>) {
    let (seen, calls) = mpsc::unbounded_channel();
    let api = TestBot::start(move |received: Received| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(received);
            let mut response = respond(status, body);
            response.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
    })
    .await;
    (api, calls)
}

fn replier(api_url: &str, token: Option<&str>) -> (Replier, Arc<Stats>) {
    let mut config = Config::new(
        "ws://127.0.0.1:1",
        Secret::new("agent-token"),
        vec![
            ("echo".into(), "http://127.0.0.1:1/".into()),
            ("quiet".into(), "http://127.0.0.1:1/".into()),
        ],
    )
    .expect("valid config");
    config.api_url = ApiUrl::parse(api_url).expect("api url");
    config.bots[0].bot_token = token.map(Secret::new);
    let stats = Arc::new(Stats::default());
    (
        Replier::new(&config, stats.clone()).expect("replier"),
        stats,
    )
}

fn answer(content_type: &str, body: &str) -> Response {
    Response {
        id: 1,
        status: 200,
        headers: headers(content_type),
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

async fn perform(replier: &Replier, bot: &str, answer: &Response) -> Outcome {
    tokio::time::timeout(
        TEST_DEADLINE + API_CALL_TIMEOUT,
        replier.perform(bot, Some(7), answer),
    )
    .await
    .expect("perform finishes")
}

#[tokio::test]
async fn a_call_goes_to_the_bot_api_unchanged_with_the_bots_token() {
    let (api, mut calls) = fake_api(200, r#"{"ok":true,"result":{"message_id":1}}"#).await;
    let (replier, stats) = replier(&api.url("/prefix/"), Some(TOKEN));
    let boundary = "webhookBoundaryX";
    let body = aiogram_body(boundary, &[("method", "sendMessage"), ("text", "hi")]);
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let answer = answer(&content_type, &body);

    assert_eq!(perform(&replier, "echo", &answer).await, Outcome::Ok);
    let call = calls.try_recv().expect("the Bot API got the call");
    assert_eq!(call.method, "POST");
    assert_eq!(call.uri, format!("/prefix/bot{TOKEN}/sendMessage"));
    assert_eq!(call.values("content-type"), [content_type.as_bytes()]);
    assert_eq!(call.body, body.as_bytes());
    assert!(calls.try_recv().is_err(), "exactly one call");
    assert_eq!(stats.snapshot().replies_ok, 1);
}

#[tokio::test]
async fn telegrams_refusal_is_reported_with_its_description() {
    let (api, mut calls) = fake_api(
        400,
        r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
    )
    .await;
    let (replier, stats) = replier(&api.url(""), Some(TOKEN));
    let answer = answer(
        "application/json",
        r#"{"method":"sendMessage","chat_id":1}"#,
    );
    assert_eq!(
        perform(&replier, "echo", &answer).await,
        Outcome::Failed("HTTP 400: Bad Request: chat not found".into())
    );
    assert!(calls.try_recv().is_ok());
    let now = stats.snapshot();
    assert_eq!((now.replies_ok, now.replies_failed), (0, 1));
}

#[tokio::test]
async fn no_call_is_made_for_ignored_methods_non_calls_or_bots_without_a_token() {
    let (api, mut calls) = fake_api(200, r#"{"ok":true,"result":true}"#).await;
    let (replier, stats) = replier(&api.url(""), Some(TOKEN));
    let get_me = answer("application/json", r#"{"method":"getMe"}"#);
    assert_eq!(perform(&replier, "echo", &get_me).await, Outcome::Ignored);
    let ok = answer("application/json", r#"{"ok":true}"#);
    assert_eq!(perform(&replier, "echo", &ok).await, Outcome::NoCall);
    let send = answer("application/json", r#"{"method":"sendMessage"}"#);
    assert_eq!(perform(&replier, "quiet", &send).await, Outcome::Dropped);
    assert_eq!(perform(&replier, "quiet", &send).await, Outcome::Dropped);
    assert!(calls.try_recv().is_err(), "the Bot API was not called");
    let now = stats.snapshot();
    assert_eq!(
        (now.replies_ok, now.replies_failed, now.replies_dropped),
        (0, 0, 2)
    );
    // Without any token no client is built at all.
    let (replier, _) = self::replier(&api.url(""), None);
    assert!(replier.client.is_none());
    assert!(!format!("{replier:?}").contains(TOKEN));
}

#[tokio::test]
async fn an_unreachable_bot_api_fails_without_showing_the_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let (replier, stats) = replier(&url, Some(TOKEN));
    let send = answer("application/json", r#"{"method":"sendMessage"}"#);
    let Outcome::Failed(reason) = perform(&replier, "echo", &send).await else {
        panic!("expected a failure");
    };
    assert!(!reason.contains(TOKEN), "{reason}");
    assert_eq!(stats.snapshot().replies_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_bot_api_times_out() {
    let api = TestBot::start(|_| std::future::pending::<Answer>()).await;
    let (replier, stats) = replier(&api.url(""), Some(TOKEN));
    let send = answer("application/json", r#"{"method":"sendMessage"}"#);
    assert_eq!(
        perform(&replier, "echo", &send).await,
        Outcome::Failed("no answer within 10s".into())
    );
    assert_eq!(stats.snapshot().replies_failed, 1);
}

#[test]
fn the_https_client_builds_from_the_system_roots() {
    crate::api::client::build(&ApiUrl::default()).expect("https client");
}
