//! The admin API's client, behind `relay-server stats` and `relay-server dead-letters …`: one
//! request, and its answer as a person reads it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use protocol::Secret;
use serde_json::Value;
use tokio::net::TcpStream;

use super::api::REQUEST_TIMEOUT;
use crate::config::{AdminCommand, DeadLetterAction};

/// Runs one command against the admin API at `address` and returns what to print.
pub async fn client(
    command: AdminCommand,
    address: SocketAddr,
    token: &Secret,
) -> Result<String, AdminError> {
    let (method, path) = match &command {
        AdminCommand::Stats => (Method::GET, "/stats".to_owned()),
        AdminCommand::DeadLetters(DeadLetterAction::List { bot }) => match bot {
            Some(bot) => (Method::GET, format!("/dead-letters?bot={bot}")),
            None => (Method::GET, "/dead-letters".to_owned()),
        },
        AdminCommand::DeadLetters(DeadLetterAction::Replay { bot, seq }) => {
            (Method::POST, format!("/dead-letters/{bot}/{seq}/replay"))
        }
        AdminCommand::DeadLetters(DeadLetterAction::Drop { bot, seq }) => {
            (Method::DELETE, format!("/dead-letters/{bot}/{seq}"))
        }
    };
    let value = call(address, token, method, &path).await?;
    Ok(render(&command, &value))
}

/// Why an admin command got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing listens at the address, or the connection broke.
    #[error(
        "cannot reach the admin API at {address}: {source}; is relay-server running with its admin API there (--admin-listen)?"
    )]
    Unreachable {
        /// Where the API was looked for.
        address: SocketAddr,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The HTTP handshake failed after connecting.
    #[error("admin API at {address}: {source}")]
    Handshake {
        /// The API's address.
        address: SocketAddr,
        /// What hyper said.
        source: hyper::Error,
    },
    /// The request could not be sent, or its answer not read.
    #[error("admin API: {0}")]
    Exchange(hyper::Error),
    /// The request could not be made: a path or token that is not valid in HTTP.
    #[error("{0}")]
    Request(http::Error),
    /// The API answered with an error status.
    #[error("admin API answered {status}: {message}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The API's `error` field.
        message: String,
    },
    /// No answer within the time limit.
    #[error("admin API at {address} did not answer within {after:?}")]
    TimedOut {
        /// The API's address.
        address: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
}

/// Makes one admin API request and returns its JSON answer.
pub async fn call(
    address: SocketAddr,
    token: &Secret,
    method: Method,
    path: &str,
) -> Result<Value, AdminError> {
    let exchange = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|source| AdminError::Unreachable { address, source })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| AdminError::Handshake { address, source })?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, address.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            .body(Full::new(Bytes::new()))
            .map_err(AdminError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(AdminError::Exchange)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(AdminError::Exchange)?
            .to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
                .to_owned();
            return Err(AdminError::Refused { status, message });
        }
        Ok(value)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| AdminError::TimedOut {
            address,
            after: REQUEST_TIMEOUT,
        })?
}

/// Human-readable output of a command's answer.
fn render(command: &AdminCommand, value: &Value) -> String {
    match command {
        AdminCommand::DeadLetters(DeadLetterAction::List { .. }) => {
            let rows = value.as_array().map(Vec::as_slice).unwrap_or_default();
            if rows.is_empty() {
                return "no dead letters".into();
            }
            let mut out = format!(
                "{:>10}  {:<20} {:>12} {:>8}  {}\n",
                "SEQ", "BOT", "UPDATE_ID", "ATTEMPTS", "LAST ERROR"
            );
            for row in rows {
                let field = |name: &str| {
                    row.get(name).map_or(String::new(), |v| {
                        v.to_string().trim_matches('"').to_owned()
                    })
                };
                out.push_str(&format!(
                    "{:>10}  {:<20} {:>12} {:>8}  {}\n",
                    field("seq"),
                    field("bot"),
                    field("update_id"),
                    field("attempts"),
                    field("last_error")
                ));
            }
            out.trim_end().to_owned()
        }
        AdminCommand::DeadLetters(DeadLetterAction::Replay { bot, seq }) => {
            format!(
                "replayed {bot} {seq}: queued again as {}",
                value.get("seq").unwrap_or(&Value::Null)
            )
        }
        AdminCommand::DeadLetters(DeadLetterAction::Drop { bot, seq }) => {
            format!("dropped {bot} {seq}")
        }
        AdminCommand::Stats => serde_json::to_string_pretty(value).unwrap_or_default(),
    }
}
