//! The update every benchmark request carries: a realistic Telegram text message of about 750
//! bytes, with a fresh `update_id` each time and the chat spread over [`CHATS`] chats.
//!
//! Fresh ids matter beyond realism: the agent answers a repeated `update_id` from its duplicate
//! window without asking the bot, and the relay orders stored updates per chat. The Rust side
//! ([`render`], for probes) and wrk's Lua side ([`lua_expression`]) fill in the same template.

use std::sync::atomic::{AtomicI64, Ordering};

/// The bot name every relay in the bench serves.
pub const BOT: &str = "bench";
/// The webhook secret the relay checks (`[bots.bench] secret_token`).
pub const SECRET: &str = "bench_webhook_secret_0123456789";
/// The header Telegram sends the secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
/// Chats the updates are spread over.
pub const CHATS: i64 = 1000;
/// The first chat id: a private chat's id is its user's, nine digits like most real ones.
pub const FIRST_CHAT: i64 = 100_000_000;
/// Ids below this are the bench's own (probes, recovery measurements); wrk runs use ids above it,
/// see [`crate::wrk`].
pub const OWN_IDS: i64 = 10_000_000_000;

/// The update, with `$UPDATE_ID`, `$MESSAGE_ID` and `$CHAT_ID` to fill in. The `url` entity's
/// offset matches the text (UTF-16 units; the text is ASCII).
const TEMPLATE: &str = concat!(
    r#"{"update_id":$UPDATE_ID,"message":{"message_id":$MESSAGE_ID,"#,
    r#""from":{"id":$CHAT_ID,"is_bot":false,"first_name":"Alexandra","last_name":"Kowalczyk-Fernandes","username":"alexandra_kf","language_code":"en"},"#,
    r#""chat":{"id":$CHAT_ID,"first_name":"Alexandra","last_name":"Kowalczyk-Fernandes","username":"alexandra_kf","type":"private"},"#,
    r#""date":1767225600,"#,
    r#""text":"/order Hi! Could you please check the status of my order #A-1042-77? I placed it on Monday and the tracking page at https://shop.example.com/track/A-1042-77 still says it is processing. I need it delivered before Friday, because it is a birthday present for my sister. Thanks a lot, and have a nice day!","#,
    r#""entities":[{"offset":0,"length":6,"type":"bot_command"},{"offset":116,"length":40,"type":"url"}]}}"#,
);

/// The placeholders of [`TEMPLATE`] and the Lua expression each becomes, given `id`.
const FIELDS: [(&str, &str); 3] = [
    ("$UPDATE_ID", "string.format('%d', id)"),
    ("$MESSAGE_ID", "string.format('%d', id % 1000000 + 1)"),
    ("$CHAT_ID", "string.format('%d', 100000000 + id % 1000)"),
];

static NEXT_ID: AtomicI64 = AtomicI64::new(1);

/// A fresh `update_id` for the bench's own requests.
pub fn next_id() -> i64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The update with `id`: its chat is `id` modulo [`CHATS`].
pub fn render(id: i64) -> String {
    TEMPLATE
        .replace("$UPDATE_ID", &id.to_string())
        .replace("$MESSAGE_ID", &(id % 1_000_000 + 1).to_string())
        .replace("$CHAT_ID", &(FIRST_CHAT + id % CHATS).to_string())
}

/// A Lua expression that builds the same body from a number `id` in scope, as one
/// `table.concat` of literal pieces and formatted numbers.
pub fn lua_expression() -> String {
    let mut parts = Vec::new();
    let mut rest = TEMPLATE;
    loop {
        let next = FIELDS
            .iter()
            .filter_map(|(name, lua)| rest.find(name).map(|at| (at, *name, *lua)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, name, lua)) = next else {
            parts.push(lua_string(rest));
            break;
        };
        parts.push(lua_string(&rest[..at]));
        parts.push(lua.to_owned());
        rest = &rest[at + name.len()..];
    }
    format!("table.concat({{{}}})", parts.join(", "))
}

/// A Lua long string holding `text` verbatim (the template holds no `]]`).
fn lua_string(text: &str) -> String {
    format!("[[{text}]]")
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
