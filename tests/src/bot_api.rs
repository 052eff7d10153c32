//! [`FakeBotApi`]: a Bot API server on 127.0.0.1 that records every call and answers each with
//! `{"ok":true,...}`, standing in for api.telegram.org when the agent makes the calls bots put in
//! their answers to stored updates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use protocol::Secret;
use relay_agent::Config;
use relay_agent::url::ApiUrl;
use test_support::{Answer, Received, TestBot};

/// One call as the Bot API saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// The HTTP method.
    pub method: String,
    /// Path and query, such as `/bot123456:TEST-token/sendMessage`.
    pub path: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body bytes.
    pub body: Bytes,
}

/// A running fake Bot API: a [`TestBot`] that answers as the Bot API does. Its server stops
/// with the test's runtime.
#[derive(Debug, Clone)]
pub struct FakeBotApi {
    server: TestBot,
}

impl FakeBotApi {
    /// Starts the server on a port the OS picks.
    pub async fn start() -> Self {
        // Each answer carries a new message_id, as sendMessage's result would.
        let message_ids = Arc::new(AtomicU64::new(1));
        let server = TestBot::start(move |_| {
            let id = message_ids.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                r#"{{"ok":true,"result":{{"message_id":{id},"date":1764028800,"chat":{{"id":1,"type":"private"}},"text":"thanks"}}}}"#
            );
            async move { Answer::with_body(200, "application/json", body) }
        })
        .await;
        Self { server }
    }

    /// The base URL to give the agent as `--api-url`.
    pub fn url(&self) -> String {
        self.server.url("")
    }

    /// `config` with its Bot API pointed here and `token` as the Telegram token of `bot`.
    pub fn serve(&self, mut config: Config, bot: &str, token: &str) -> Config {
        config.api_url = ApiUrl::parse(&self.url()).expect("api url");
        let entry = config
            .bots
            .iter_mut()
            .find(|b| b.name == bot)
            .unwrap_or_else(|| panic!("the agent does not serve {bot}"));
        entry.bot_token = Some(Secret::new(token));
        config
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.server.received().into_iter().map(call).collect()
    }

    /// How many calls have been received.
    pub fn count(&self) -> usize {
        self.server.count()
    }
}

fn call(received: Received) -> ApiCall {
    let content_type = received.header("content-type");
    ApiCall {
        method: received.method,
        path: received.uri,
        content_type,
        body: received.body,
    }
}
