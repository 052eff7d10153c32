//! Bot API calls inside a bot's answer ("replying inside the webhook response"): recognising
//! them, and making them against the Bot API for stored updates, whose answers Telegram never
//! sees.
//!
//! A bot may answer a webhook with a method call in the body: a JSON object with a `method`
//! field, or a form (urlencoded or multipart, as aiogram sends) with a `method` field. Telegram
//! performs it for a live webhook; for an update the relay stored and delivers later, the agent
//! performs it here with the bot's token, or drops it (and counts it) when it has none.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use protocol::{Header, Response, Secret};

use crate::api::client::{self, ApiClient};
use crate::config::{Config, bot_token_env};
use crate::error::AgentError;
use crate::stats::{Counter, Stats};
use crate::text::{chain, one_line, seconds};
use crate::url::ApiUrl;

/// How long one Bot API call may take, connection included. The Bot API answers in well under a
/// second; a call that takes 10 s has failed, and the relay is waiting for the acknowledgement.
pub(crate) const API_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of the Bot API's answer that is read, to log its `description`. A method's result is
/// a few KiB at most; a larger answer is not the Bot API's.
pub(crate) const MAX_API_ANSWER_BYTES: usize = 1024 * 1024;

/// The longest method name accepted; Telegram's longest are about 35 characters.
const MAX_METHOD_LEN: usize = 64;

/// A Bot API call found in a bot's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// The method, such as `sendMessage`.
    pub(crate) method: String,
    /// The answer's `Content-Type`, sent on with the body.
    pub(crate) content_type: Bytes,
}

/// The call in an answer's body, if it holds one: `application/json` with a string `method`
/// field, or `application/x-www-form-urlencoded` or `multipart/form-data` with a `method` field.
/// Anything else (another content type, no `method`, a `method` that is not a method name, a body
/// that does not parse) is not a call.
pub(crate) fn parse(headers: &[Header], body: &[u8]) -> Option<Call> {
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.clone())?;
    let text = std::str::from_utf8(&content_type).ok()?;
    let (essence, _) = text.split_once(';').unwrap_or((text, ""));
    let method = match essence.trim().to_ascii_lowercase().as_str() {
        "application/json" => {
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            value.as_object()?.get("method")?.as_str()?.to_owned()
        }
        "application/x-www-form-urlencoded" => form_field(body, "method")?,
        "multipart/form-data" => {
            let boundary = parameter(text, "boundary")?;
            let value = multipart_field(body, &boundary, "method")?;
            String::from_utf8(value).ok()?.trim().to_owned()
        }
        _ => return None,
    };
    let valid = (1..=MAX_METHOD_LEN).contains(&method.len())
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some(Call {
        method,
        content_type,
    })
}

/// Whether Telegram itself ignores `method` in a webhook answer: every `get*` method,
/// `setWebhook`, `deleteWebhook`, `close` and `logOut`. Method names are case-insensitive.
pub(crate) fn ignored(method: &str) -> bool {
    let method = method.to_ascii_lowercase();
    method.starts_with("get")
        || matches!(
            method.as_str(),
            "setwebhook" | "deletewebhook" | "close" | "logout"
        )
}

/// What became of the answer to a stored update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The answer holds no call.
    NoCall,
    /// A call Telegram would ignore too; not made.
    Ignored,
    /// No token for the bot; not made.
    Dropped,
    /// Made, and Telegram answered `ok`.
    Ok,
    /// Made, and Telegram refused it or it failed; holds Telegram's `description` or the error.
    Failed(String),
}

/// Why a call failed. The message goes to the log and into [`Outcome::Failed`], once the token
/// is masked out of it.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The method URL cannot be built from the base URL, token and method.
    #[error("cannot build the URL: {0}")]
    Url(http::Error),
    /// The bot's `Content-Type` cannot be sent on.
    #[error("the answer's Content-Type is not a valid header value")]
    ContentType,
    /// The request failed on its way (connect, TLS, I/O): the error and its causes on one line.
    #[error("{0}")]
    Transport(String),
    /// The Bot API refused the call, saying why.
    #[error("HTTP {status}: {description}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The Bot API's `description`.
        description: String,
    },
    /// The server answered with something other than a Bot API answer.
    #[error("HTTP {0} without a Bot API answer")]
    NotBotApi(u16),
    /// No answer within [`API_CALL_TIMEOUT`].
    #[error("no answer within {}", seconds(API_CALL_TIMEOUT))]
    Timeout,
}

/// Makes the calls in bots' answers to stored updates.
#[derive(Debug)]
pub(crate) struct Replier {
    api_url: ApiUrl,
    tokens: HashMap<String, Secret>,
    /// Built only when some bot has a token: without one, no call is ever made.
    client: Option<ApiClient>,
    /// Bots already warned about a missing token, so the warning comes once per bot.
    warned: Mutex<HashSet<String>>,
    stats: Arc<Stats>,
}

impl Replier {
    /// A replier for `config`'s bots and Bot API URL.
    pub(crate) fn new(config: &Config, stats: Arc<Stats>) -> Result<Replier, AgentError> {
        let tokens: HashMap<_, _> = config
            .bots
            .iter()
            .filter_map(|bot| Some((bot.name.clone(), bot.bot_token.clone()?)))
            .collect();
        let client = if tokens.is_empty() {
            None
        } else {
            Some(client::build(&config.api_url)?)
        };
        Ok(Replier {
            api_url: config.api_url.clone(),
            tokens,
            client,
            warned: Mutex::default(),
            stats,
        })
    }

    /// Makes the call in `answer`, `bot`'s 2xx answer to a stored update, if it holds one;
    /// logs and counts the result.
    pub(crate) async fn perform(
        &self,
        bot: &str,
        update_id: Option<i64>,
        answer: &Response,
    ) -> Outcome {
        let Some(call) = parse(&answer.headers, &answer.body) else {
            return Outcome::NoCall;
        };
        let method = call.method.as_str();
        if ignored(method) {
            tracing::debug!(
                bot,
                update = update_id,
                method,
                "not making a call Telegram ignores in webhook answers"
            );
            return Outcome::Ignored;
        }
        let (Some(token), Some(client)) = (self.tokens.get(bot), &self.client) else {
            self.stats.count(Counter::ReplyDropped);
            let first = self
                .warned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(bot.to_owned());
            if first {
                tracing::warn!(
                    bot,
                    "bot {bot} answered a stored update with a {method} call but no bot token is \
                     configured; the call is dropped: set --bot-token {bot}=… or {}",
                    bot_token_env(bot)
                );
            }
            return Outcome::Dropped;
        };
        let made = tokio::time::timeout(
            API_CALL_TIMEOUT,
            self.call(client, token, &call, answer.body.clone()),
        )
        .await
        .unwrap_or(Err(CallError::Timeout));
        let url = self.api_url.masked(method);
        match made {
            Ok(()) => {
                self.stats.count(Counter::ReplyOk);
                tracing::info!(bot, update = update_id, method, %url, "made the bot's reply to a stored update");
                Outcome::Ok
            }
            Err(error) => {
                // Library errors could quote the URL; the token never goes into a log.
                let reason = one_line(&error.to_string().replace(token.expose(), "***"));
                self.stats.count(Counter::ReplyFailed);
                tracing::warn!(bot, update = update_id, method, %url, %reason, "the bot's reply to a stored update failed");
                Outcome::Failed(reason)
            }
        }
    }

    /// One `POST {api_url}/bot{token}/{method}` with the answer's content type and body, unchanged.
    /// The body keeps its `method` field: the Bot API ignores parameters a method does not take,
    /// so this is exactly what Telegram itself would run, and multipart bodies (with their
    /// boundaries and any files) go on byte for byte without being re-encoded.
    async fn call(
        &self,
        client: &ApiClient,
        token: &Secret,
        call: &Call,
        body: Bytes,
    ) -> Result<(), CallError> {
        let uri = self
            .api_url
            .method(token, &call.method)
            .map_err(CallError::Url)?;
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        let content_type = http::HeaderValue::from_maybe_shared(call.content_type.clone())
            .map_err(|_| CallError::ContentType)?;
        request.headers_mut().insert(CONTENT_TYPE, content_type);
        let response = client
            .request(request)
            .await
            .map_err(|error| CallError::Transport(chain(&error)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_API_ANSWER_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        let answer: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let ok = answer.as_ref().and_then(|a| a.get("ok")?.as_bool());
        if ok == Some(true) && status.is_success() {
            return Ok(());
        }
        let description = answer
            .as_ref()
            .and_then(|a| a.get("description")?.as_str().map(str::to_owned));
        let status = status.as_u16();
        Err(match description {
            Some(description) => CallError::Refused {
                status,
                description,
            },
            None => CallError::NotBotApi(status),
        })
    }
}

/// The decoded value of the first `name` field in an urlencoded form.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        (form_decode(key)? == name).then(|| form_decode(value))?
    })
}

/// Percent-decoding with `+` as a space; `None` for a broken escape or non-UTF-8.
fn form_decode(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes.iter();
    while let Some(&byte) = rest.next() {
        out.push(match byte {
            b'+' => b' ',
            b'%' => {
                let high = char::from(*rest.next()?).to_digit(16)?;
                let low = char::from(*rest.next()?).to_digit(16)?;
                u8::try_from(high * 16 + low).ok()?
            }
            byte => byte,
        });
    }
    String::from_utf8(out).ok()
}

/// A parameter of a header value such as `multipart/form-data; boundary="x"` or
/// `form-data; name="method"`, unquoted.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| unquote(value.trim()))
    })
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_owned(),
    }
}

/// The content of the first part named `name` in a multipart body (RFC 7578).
fn multipart_field(body: &[u8], boundary: &str, name: &str) -> Option<Vec<u8>> {
    if boundary.is_empty() {
        return None;
    }
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let next = [b"\r\n", delimiter.as_slice()].concat();
    let mut rest = &body[find(body, &delimiter)? + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return None;
        }
        // Past the delimiter line (which may carry trailing whitespace) to the part's headers.
        rest = &rest[find(rest, b"\r\n")? + 2..];
        let (head, content) = match rest.strip_prefix(b"\r\n") {
            Some(content) => (&b""[..], content),
            None => {
                let end = find(rest, b"\r\n\r\n")?;
                (&rest[..end], &rest[end + 4..])
            }
        };
        let end = find(content, &next)?;
        if part_name(head).as_deref() == Some(name) {
            return Some(content[..end].to_vec());
        }
        rest = &content[end + next.len()..];
    }
}

/// The `name` in a part's `Content-Disposition: form-data; name="..."`.
fn part_name(head: &[u8]) -> Option<String> {
    std::str::from_utf8(head)
        .ok()?
        .split("\r\n")
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("content-disposition")
                .then_some(value)
        })
        .and_then(|value| parameter(value, "name"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
