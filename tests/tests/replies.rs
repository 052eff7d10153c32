//! Replies inside the webhook response: for an update the relay stored (and so answered 200 to
//! Telegram itself), the agent makes the Bot API call in the bot's answer, once; for a live update
//! the answer goes back to Telegram, which makes the call, and the agent makes none.

use std::time::Duration;

use bytes::Bytes;
use e2e::{
    Answer, ApiCall, DEADLINE, FakeBotApi, FakeTelegram, TestAgent, TestBot, TestRelay, eventually,
    update_json,
};
use relay_server::config::{BotSettings, DeliveryMode};

/// The bot's Telegram token, as @BotFather shapes them.
const BOT_TOKEN: &str = "123456:TEST-token";
/// Where a sendMessage call with [`BOT_TOKEN`] goes.
const SEND_MESSAGE: &str = "/bot123456:TEST-token/sendMessage";
/// Chat ids past 32 bits, as Telegram's are.
const CHAT: i64 = 5_000_000_001;
const OTHER_CHAT: i64 = 5_000_000_002;

/// The JSON answer the bot gives an update from `chat`.
fn thanks(chat: i64) -> String {
    format!(r#"{{"method":"sendMessage","chat_id":{chat},"text":"thanks"}}"#)
}

/// A relay whose bot `shop` is delivered in `mode`.
fn relay(mode: DeliveryMode) -> TestRelay {
    let mut config = TestRelay::config();
    let settings = BotSettings {
        mode: Some(mode),
        ..BotSettings::default()
    };
    config.bots.insert("shop".into(), settings);
    TestRelay::start_with(config)
}

/// A bot that answers every update with a sendMessage call to the update's chat.
async fn replying_bot() -> TestBot {
    TestBot::start(|update| async move {
        let update: serde_json::Value = serde_json::from_slice(&update.body).expect("json update");
        let chat = update["message"]["chat"]["id"].as_i64().expect("chat id");
        Answer::with_body(200, "application/json", thanks(chat))
    })
    .await
}

/// An agent for `shop` with `api` as its Bot API and [`BOT_TOKEN`] as shop's token, not yet
/// started.
fn agent_config(relay: &TestRelay, bot: &TestBot, api: &FakeBotApi) -> relay_agent::Config {
    api.serve(
        TestAgent::config(relay, &[("shop", bot.url("/webhook"))]),
        "shop",
        BOT_TOKEN,
    )
}

/// Waits until the relay has `delivered` stored updates acknowledged and none left waiting. The
/// agent makes a stored update's call before it acknowledges it, so from then on the Bot API has
/// every call it will ever get for them.
async fn all_acknowledged(relay: &TestRelay, delivered: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let stats = relay.admin(hyper::Method::GET, "/stats").await;
        if stats["delivered"] == delivered && stats["waiting"] == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {delivered} acknowledged updates: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn send_message_call(content_type: &str, body: impl Into<Bytes>) -> ApiCall {
    ApiCall {
        method: "POST".into(),
        path: SEND_MESSAGE.into(),
        content_type: Some(content_type.into()),
        body: body.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_updates_reply_is_made_against_the_bot_api_once() {
    let relay = relay(DeliveryMode::Durable);
    let api = FakeBotApi::start().await;
    let bot = replying_bot().await;
    let _agent = TestAgent::start(agent_config(&relay, &bot, &api));
    relay.wait_for_bot("shop").await;

    let reply = FakeTelegram::new(&relay)
        .send("/hook/shop", update_json(1, CHAT, "one coffee please"))
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.is_empty(),
        "a stored update's answer never reaches Telegram"
    );

    eventually("the Bot API gets the call", || api.count() >= 1).await;
    all_acknowledged(&relay, 1).await;
    assert_eq!(bot.count(), 1);
    assert_eq!(
        api.calls(),
        [send_message_call("application/json", thanks(CHAT))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_update_stored_while_the_agent_was_away_has_its_reply_made_once() {
    let relay = relay(DeliveryMode::Auto);
    let api = FakeBotApi::start().await;
    let bot = replying_bot().await;
    let config = agent_config(&relay, &bot, &api);
    let mut agent = TestAgent::start(config.clone());
    relay.wait_for_bot("shop").await;
    agent.kill();
    relay.wait_until_gone("shop").await;

    let reply = FakeTelegram::new(&relay)
        .send("/hook/shop", update_json(2, CHAT, "while away"))
        .await;
    assert_eq!(reply.status, 200, "auto mode stores when no agent is there");
    assert!(reply.body.is_empty());
    assert_eq!(relay.stat("waiting").await, 1);
    assert_eq!((bot.count(), api.count()), (0, 0));

    let _agent = TestAgent::start(config);
    eventually("the Bot API gets the call", || api.count() >= 1).await;
    all_acknowledged(&relay, 1).await;
    assert_eq!(bot.count(), 1);
    assert_eq!(
        api.calls(),
        [send_message_call("application/json", thanks(CHAT))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_reply_goes_back_to_telegram_and_the_agent_makes_no_call() {
    let relay = relay(DeliveryMode::Auto);
    let api = FakeBotApi::start().await;
    let bot = replying_bot().await;
    let config = agent_config(&relay, &bot, &api);
    let mut agent = TestAgent::start(config.clone());
    relay.wait_for_bot("shop").await;
    let telegram = FakeTelegram::new(&relay);

    let reply = telegram
        .send("/hook/shop", update_json(3, CHAT, "live"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.body, Bytes::from(thanks(CHAT)), "Telegram makes it");
    // The agent makes any call before it answers the relay, so by now it would have made one.
    assert_eq!(api.count(), 0);

    // The same agent does make the call for a stored update, so the silence above is not a broken
    // Bot API URL or token: away, one update of another chat is stored, then delivered on return.
    agent.kill();
    relay.wait_until_gone("shop").await;
    let reply = telegram
        .send("/hook/shop", update_json(4, OTHER_CHAT, "stored"))
        .await;
    assert_eq!((reply.status, reply.body.len()), (200, 0));
    let _agent = TestAgent::start(config);
    eventually("the Bot API gets the call", || api.count() >= 1).await;
    all_acknowledged(&relay, 1).await;
    assert_eq!(
        api.calls(),
        [send_message_call("application/json", thanks(OTHER_CHAT))],
        "only the stored update's reply is made by the agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aiogram_multipart_reply_to_a_stored_update_reaches_the_bot_api_byte_for_byte() {
    // What aiogram answers with handle_in_background=False: method and parameters as form parts.
    let boundary = "a7f1b2c3d4e5f60718293a4b5c6d7e8f";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nsendMessage\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n{CHAT}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nПривет \u{1F44B}\r\n\
         --{boundary}--\r\n"
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let relay = relay(DeliveryMode::Durable);
    let api = FakeBotApi::start().await;
    let answer = Answer::with_body(200, &content_type, body.clone());
    let bot = TestBot::start(move |_| {
        let answer = answer.clone();
        async move { answer }
    })
    .await;
    let _agent = TestAgent::start(agent_config(&relay, &bot, &api));
    relay.wait_for_bot("shop").await;

    let reply = FakeTelegram::new(&relay)
        .send("/hook/shop", update_json(5, CHAT, "multipart"))
        .await;
    assert_eq!((reply.status, reply.body.len()), (200, 0));

    eventually("the Bot API gets the call", || api.count() >= 1).await;
    all_acknowledged(&relay, 1).await;
    assert_eq!(api.calls(), [send_message_call(&content_type, body)]);
}
