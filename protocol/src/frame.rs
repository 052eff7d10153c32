//! The frames that travel between relay and agent, one per WebSocket binary message.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies one request on one connection; the relay picks it, the agent echoes it.
pub type RequestId = u64;

/// One HTTP header: the name as HTTP/1 parsers hand it over (lowercase; header names are
/// case-insensitive) and the value's bytes exactly as sent. A request keeps its headers as a list,
/// so duplicates and their order survive.
pub type Header = (String, Bytes);

/// Headers that describe one HTTP connection, not the message (RFC 9110 §7.6.1). Frames carry only
/// end-to-end headers: each hop sets these for itself.
pub const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Whether `name` (lowercase) is a hop-by-hop header that frames never carry.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Everything that crosses the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Agent → relay, first frame: who I am and which bots I serve. Must stay variant 0.
    Hello(Hello),
    /// Relay → agent, first frame: accepted, and the limits that apply to this session.
    HelloAck(HelloAck),
    /// Relay → agent: a webhook request for one of the agent's bots.
    Request(Request),
    /// Agent → relay: the bot's answer to a request.
    Response(Response),
    /// Agent → relay: the request could not be delivered to the bot, and why.
    Failure(Failure),
    /// Relay → agent: the caller is gone or the deadline passed; drop the request.
    Cancel(RequestId),
    /// Either way: are you there? Answered by [`Frame::Pong`] with the same value.
    Ping(u64),
    /// Either way: the answer to [`Frame::Ping`].
    Pong(u64),
}

/// The agent's handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the agent speaks. Must stay the first field.
    pub version: u16,
    /// A name for logs, such as the host name; not an identity.
    pub agent: String,
    /// The agent's software version, for logs.
    pub software: String,
    /// The bots this agent serves.
    #[serde(deserialize_with = "bounded_list")]
    pub bots: Vec<String>,
    /// The delivery mode the agent asks for, for some of its bots. The relay's own configuration
    /// of a bot wins over it.
    #[serde(deserialize_with = "bounded_list")]
    pub modes: Vec<(String, DeliveryMode)>,
}

/// How a bot's webhooks reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// Live only: the bot's answer goes back to Telegram; an absent agent means 503 and
    /// Telegram retries.
    Passthrough,
    /// Stored first: the relay answers 200 once the update is on disk and delivers it from there.
    Durable,
    /// Live while an agent is connected and the chat has nothing waiting; stored otherwise.
    #[default]
    Auto,
}

impl DeliveryMode {
    /// The mode's name, as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passthrough => "passthrough",
            Self::Durable => "durable",
            Self::Auto => "auto",
        }
    }

    /// The mode named `name`, as written in configuration.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Passthrough, Self::Durable, Self::Auto]
            .into_iter()
            .find(|mode| mode.as_str() == name)
    }
}

impl std::fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The relay's answer to a [`Hello`] it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    /// The protocol version the relay speaks.
    pub version: u16,
    /// The relay's software version, for logs.
    pub software: String,
    /// The session number the relay logs under, so both sides' logs can be matched.
    pub session: u64,
    /// The largest body the relay will send or accept in this session.
    pub max_body_bytes: u32,
}

/// A webhook request, as the relay received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the [`Response`] or [`Failure`].
    pub id: RequestId,
    /// Which of the agent's bots this is for.
    pub bot: String,
    /// The HTTP method, such as `POST`.
    pub method: String,
    /// What followed `/hook/<bot>` in the path: empty, or starting with `/`.
    pub path: String,
    /// The query string without the `?`, if the request had one.
    pub query: Option<String>,
    /// The request headers, with `X-Forwarded-For` and `X-Forwarded-Proto` added by the relay.
    #[serde(deserialize_with = "bounded_list")]
    pub headers: Vec<Header>,
    /// The body bytes, untouched.
    pub body: Bytes,
    /// How long the relay waits for the answer; the agent gives up a little earlier.
    pub timeout_ms: u32,
    /// The Telegram `update_id` in the body, when the relay found one; the agent uses it to
    /// skip updates the bot has already had.
    pub update_id: Option<i64>,
    /// Whether a caller is waiting for this answer, or the relay is delivering from its store.
    pub delivery: Delivery,
}

/// How a request reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Telegram is waiting: the bot's answer goes back to it unchanged.
    Live,
    /// From the relay's store, after the relay already answered Telegram 200. The bot's 2xx
    /// answer acknowledges it (anything else is retried), and a Bot API call in the answer's
    /// body must be made by the agent, since Telegram will never see it.
    Stored {
        /// 1 for the first delivery, counting up with each retry.
        attempt: u32,
    },
}

/// The bot's HTTP answer, passed back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The [`Request::id`] this answers.
    pub id: RequestId,
    /// The bot's status code.
    pub status: u16,
    /// The bot's headers, minus hop-by-hop ones.
    #[serde(deserialize_with = "bounded_list")]
    pub headers: Vec<Header>,
    /// The bot's body bytes, untouched.
    pub body: Bytes,
}

/// Why the agent could not get an answer from the bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The [`Request::id`] this answers.
    pub id: RequestId,
    /// What went wrong, for the relay to choose a status code.
    pub kind: FailureKind,
    /// One line for the relay's log.
    pub message: String,
}

/// The classes of delivery failure the relay answers differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The bot's URL refused or dropped the connection (relay answers 502).
    BotUnreachable,
    /// The bot did not answer in time (relay answers 504).
    BotTimeout,
    /// The bot answered with something the agent cannot pass on, such as a body over the limit
    /// (relay answers 502).
    BadBotResponse,
    /// The agent does not serve this bot or cannot build the request (relay answers 502).
    Rejected,
    /// The agent has too much in flight (relay answers 503).
    Overloaded,
}

/// Room reserved up front for a list in a frame, in entries: a request has a dozen or two headers
/// and an agent a few bots, so this is rarely outgrown.
const LIST_PREALLOC: usize = 32;

/// Reads a list whose declared length is not trusted for the allocation: serde reserves room for
/// up to 1 MiB of entries on the length prefix alone, so a 16-byte frame declaring a million
/// headers cost 1 MiB before it failed. The list grows only as entries actually arrive.
fn bounded_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct List<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for List<T> {
        type Value = Vec<T>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a list")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(LIST_PREALLOC));
            while let Some(entry) = seq.next_element()? {
                list.push(entry);
            }
            Ok(list)
        }
    }

    deserializer.deserialize_seq(List(std::marker::PhantomData))
}
