//! The optional TOML config file: its shape, and reading it. [`super::Config::from_cli`] merges
//! it with the flags. Imports only [`super::error`] and [`crate::text`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{DeliveryMode, Secret};
use serde::Deserialize;

use super::error::ConfigError;

/// The config file. Unknown keys are errors, so a typo is caught instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) relay: Option<String>,
    pub(super) token: Option<Secret>,
    pub(super) ca: Option<PathBuf>,
    pub(super) pin: Option<String>,
    pub(super) join: Option<Secret>,
    pub(super) name: Option<String>,
    pub(super) max_concurrency: Option<usize>,
    pub(super) reserved_per_bot: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub(super) request_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) heartbeat_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) startup_timeout: Option<Duration>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) api_url: Option<String>,
    /// A table per bot, so that bots can grow keys without changing the file's shape.
    #[serde(default)]
    pub(super) bots: BTreeMap<String, FileBot>,
}

/// One `[bots.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBot {
    pub(super) url: String,
    pub(super) bot_token: Option<Secret>,
    pub(super) mode: Option<DeliveryMode>,
}

/// Reads and parses the file at `path`; the error names the line when it can.
pub(super) fn read_file(path: &Path) -> Result<File, ConfigError> {
    let error = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    toml::from_str(&text).map_err(|e| error(service::toml_error(&text, &e)))
}
