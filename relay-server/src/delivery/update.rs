//! What the relay reads inside a Telegram update: its `update_id`, and the queue that keeps its
//! order. Telegram keeps one queue per chat, and per user for queries that have no chat; the relay
//! keeps the same ones, so a stored update never overtakes another of its chat.

use std::borrow::Cow;

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

/// Top-level keys read before the relay stops looking: an update has two (`update_id` and one
/// payload), so a body with thousands costs a few dozen steps, not a table of them all.
const MAX_KEYS: usize = 64;

/// The error that stops the scan once both fields are known; the rest of the body is not read.
const ENOUGH: &str = "update_id and queue known";

impl UpdateInfo {
    /// Reads `body`; anything that is not a JSON object with an `update_id` gets the bot queue.
    ///
    /// An update has `update_id` and one payload field. Messages, posts, member updates, join
    /// requests, boosts and reactions carry a `chat`: their queue is the chat. Callback, inline,
    /// shipping and pre-checkout queries carry a `from` (and `poll_answer` a `user`): their queue
    /// is that user, as in Telegram's server. Anything else (a `poll`) shares the bot queue.
    ///
    /// The scan is bounded whatever the body holds: it reads the top level key by key, stops as
    /// soon as `update_id` and a queue are known, gives up after [`MAX_KEYS`] keys, and borrows
    /// values instead of building them; serde_json skips a value, however deeply nested, in one
    /// pass without recursion.
    pub(crate) fn read(body: &[u8]) -> Self {
        let fallback = Self {
            update_id: None,
            queue: BOT_QUEUE.into(),
        };
        let mut found = Found::default();
        let mut reader = serde_json::Deserializer::from_slice(body);
        let scanned = serde::Deserializer::deserialize_map(&mut reader, TopLevel(&mut found));
        let whole = match scanned {
            Ok(()) => reader.end().is_ok(),
            // Stopped on purpose: both fields are known.
            Err(_) => found.update_id.is_some() && found.queue.is_some(),
        };
        match (whole, found.update_id) {
            (true, Some(update_id)) => Self {
                update_id: Some(update_id),
                queue: found.queue.unwrap_or_else(|| BOT_QUEUE.into()),
            },
            _ => fallback,
        }
    }
}

/// What the scan has found so far.
#[derive(Debug, Default)]
struct Found {
    update_id: Option<i64>,
    queue: Option<String>,
}

/// Visits the top-level object, filling in a [`Found`].
struct TopLevel<'a>(&'a mut Found);

impl<'de> serde::de::Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a Telegram update object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut keys = 0;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            keys += 1;
            if keys > MAX_KEYS {
                return Err(A::Error::custom("too many keys for an update"));
            }
            if key == "update_id" {
                self.0.update_id = Some(map.next_value::<i64>()?);
            } else {
                let raw = map.next_value::<&'de RawValue>()?;
                if self.0.queue.is_none() && raw.get().starts_with('{') {
                    self.0.queue = queue_of(raw.get());
                }
            }
            if self.0.update_id.is_some() && self.0.queue.is_some() {
                return Err(A::Error::custom(ENOUGH));
            }
        }
        Ok(())
    }
}

/// The queue a payload object names: its chat, else its user; `None` when it names neither
/// (or not as numbers). Reading it skips every other field without keeping it.
fn queue_of(payload: &str) -> Option<String> {
    let payload = serde_json::from_str::<Payload>(payload).ok()?;
    match (payload.chat, payload.from.or(payload.user)) {
        (Some(chat), _) => Some(format!("chat:{}", chat.id)),
        (None, Some(user)) => Some(format!("user:{}", user.id)),
        (None, None) => None,
    }
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
