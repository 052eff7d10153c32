//! Small helpers for the responses the relay makes itself.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// A response with `status` and `body` and nothing else.
pub(crate) fn plain(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

/// The relay's own answer: a status and one short sentence, never an error dump.
pub(crate) fn text_response(status: StatusCode, sentence: &'static str) -> Response<Full<Bytes>> {
    let mut response = plain(status, Bytes::from(format!("{sentence}\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A 503 that tells the caller when to try again (Telegram honours `Retry-After`).
pub(crate) fn retry_later(sentence: &'static str, after: Duration) -> Response<Full<Bytes>> {
    let mut response = text_response(StatusCode::SERVICE_UNAVAILABLE, sentence);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(after.as_secs().max(1)),
    );
    response
}
