//! Where the relay is and how to trust it: `--relay`, `--token`, `--ca`, `--pin` and `--join`
//! (and their file keys) merged into one [`RelaySettings`]. Imports only [`super::cli`],
//! [`super::file`] and [`super::error`].
//!
//! A join value fills in only what is not given otherwise: an explicit `--relay`, `--token` (or
//! `RELAY_AGENT_TOKEN`), `--ca` or `--pin`, or the same key in the config file, wins over the
//! join value's part. `--ca` or `--pin` replace the join value's pin as a whole, so that a
//! certificate file given on purpose is not second-guessed by an old pin.

use std::path::PathBuf;

use protocol::{Join, Pin, Secret};

use super::cli::Cli;
use super::error::ConfigError;
use super::file::File;

/// The merged relay settings; the URL is checked by the caller.
#[derive(Debug)]
pub(super) struct RelaySettings {
    pub(super) relay: String,
    pub(super) token: Secret,
    pub(super) ca: Option<PathBuf>,
    pub(super) pin: Option<Pin>,
}

/// Merges the flags over the file over the join value (the flag's, else the file's), taking
/// these settings out of both.
pub(super) fn merge(flags: &mut Cli, file: &mut File) -> Result<RelaySettings, ConfigError> {
    // An empty RELAY_JOIN (a blank line in an environment file) counts as not set.
    let given = |join: Option<Secret>| join.filter(|value| !value.expose().trim().is_empty());
    let join = match (given(flags.join.take()), given(file.join.take())) {
        (Some(value), _) => Some(read_join("--join (or RELAY_JOIN)", &value)?),
        (None, Some(value)) => Some(read_join("join in the config file", &value)?),
        (None, None) => None,
    };
    let pin = match (flags.pin.take(), file.pin.take()) {
        (Some(text), _) => Some(read_pin("--pin", &text)?),
        (None, Some(text)) => Some(read_pin("pin in the config file", &text)?),
        (None, None) => None,
    };
    let ca = flags.ca.take().or(file.ca.take());
    let (join_relay, join_token, join_pin) = match join {
        Some(join) => (Some(join.relay), Some(join.token), join.pin),
        None => (None, None, None),
    };
    let explicit_trust = ca.is_some() || pin.is_some();
    Ok(RelaySettings {
        relay: flags
            .relay
            .take()
            .or(file.relay.take())
            .or(join_relay)
            .ok_or(ConfigError::MissingRelay)?,
        token: flags
            .token
            .take()
            .or(file.token.take())
            .or(join_token)
            .ok_or(ConfigError::MissingToken)?,
        pin: if explicit_trust { pin } else { join_pin },
        ca,
    })
}

fn read_join(key: &'static str, value: &Secret) -> Result<Join, ConfigError> {
    Join::parse(value.expose()).map_err(|error| ConfigError::Join { key, error })
}

fn read_pin(key: &'static str, text: &str) -> Result<Pin, ConfigError> {
    Pin::parse(text).map_err(|error| ConfigError::Pin { key, error })
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
