//! Thin entry points for the fuzz targets in `relay-agent/fuzz/`, which live outside the crate
//! and so see only what is `pub`. Each calls exactly the code the agent runs on a bot's answer;
//! the crate's internals stay `pub(crate)`. Hidden from the docs: not an API, no stability.

use bytes::Bytes;

use crate::api::reply;

/// The Bot API method in a bot's answer with this `Content-Type` and body, as
/// [`reply::parse`] finds it (JSON, urlencoded form or multipart form).
pub fn reply_method(content_type: &[u8], body: &[u8]) -> Option<String> {
    let headers = [(
        "content-type".to_owned(),
        Bytes::copy_from_slice(content_type),
    )];
    reply::parse(&headers, body).map(|call| call.method)
}
