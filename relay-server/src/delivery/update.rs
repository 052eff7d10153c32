//! What the relay reads inside a Telegram update: its `update_id`, and the queue that keeps its
//! order. Telegram keeps one queue per chat, and per user for queries that have no chat; the relay
//! keeps the same ones, so a stored update never overtakes another of its chat.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The queue of bodies that are not Telegram updates (or name no chat or user): one per bot.
pub(crate) const BOT_QUEUE: &str = "bot";

/// The parts of an update the relay cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpdateInfo {
    /// The update's `update_id`, if the body is an update.
    pub update_id: Option<i64>,
    /// The ordering key: `chat:<id>`, `user:<id>` or [`BOT_QUEUE`].
    pub queue: String,
}

#[derive(Deserialize)]
struct Id {
    id: i64,
}

/// The object of an update's one payload field, as far as ordering goes.
#[derive(Deserialize)]
struct Payload {
    chat: Option<Id>,
    from: Option<Id>,
    user: Option<Id>,
}

impl UpdateInfo {
    /// Reads `body`; anything that is not a JSON object with an `update_id` gets the bot queue.
    ///
    /// An update has `update_id` and one payload field. Messages, posts, member updates, join
    /// requests, boosts and reactions carry a `chat`: their queue is the chat. Callback, inline,
    /// shipping and pre-checkout queries carry a `from` (and `poll_answer` a `user`): their queue
    /// is that user, as in Telegram's server. Anything else (a `poll`) shares the bot queue.
    pub(crate) fn read(body: &[u8]) -> Self {
        let fallback = Self {
            update_id: None,
            queue: BOT_QUEUE.into(),
        };
        // Only the top level is parsed, into borrowed slices, and then only the payload objects:
        // a hostile body (a huge array, deep nesting) costs a scan, not a tree in memory.
        let Ok(fields) = serde_json::from_slice::<HashMap<Cow<'_, str>, &RawValue>>(body) else {
            return fallback;
        };
        let Some(update_id) = fields
            .get("update_id")
            .and_then(|raw| serde_json::from_str::<i64>(raw.get()).ok())
        else {
            return fallback;
        };
        let queue = fields
            .iter()
            .filter(|(name, raw)| *name != "update_id" && raw.get().starts_with('{'))
            .find_map(|(_, raw)| {
                let payload = serde_json::from_str::<Payload>(raw.get()).ok()?;
                match (payload.chat, payload.from.or(payload.user)) {
                    (Some(chat), _) => Some(format!("chat:{}", chat.id)),
                    (None, Some(user)) => Some(format!("user:{}", user.id)),
                    (None, None) => None,
                }
            })
            .unwrap_or_else(|| BOT_QUEUE.into());
        Self {
            update_id: Some(update_id),
            queue,
        }
    }
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
