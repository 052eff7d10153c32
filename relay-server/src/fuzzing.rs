//! Thin entry points for the fuzz targets in `relay-server/fuzz/`, which live outside the crate
//! and so see only what is `pub`. Each calls exactly the code the relay runs on untrusted input;
//! the crate's internals stay `pub(crate)`. Hidden from the docs: not an API, no stability.

use std::path::Path;

use clap::Parser;

use crate::config::{Cli, Config, ConfigError};
use crate::delivery::update::UpdateInfo;

/// What [`UpdateInfo::read`] finds in a webhook body: the `update_id` and the queue name.
pub fn read_update(body: &[u8]) -> (Option<i64>, String) {
    let info = UpdateInfo::read(body);
    (info.update_id, info.queue)
}

/// The relay's configuration from `text` as a config file, with no flags: parsed, merged and
/// validated as at start-up.
pub fn parse_config(text: &str) -> Result<Config, ConfigError> {
    let cli = Cli::try_parse_from(["relay-server"]).map_err(|error| {
        ConfigError::Invalid(format!("the empty command line is refused: {error}"))
    })?;
    Config::from_file_text(cli, Path::new("fuzz.toml"), text)
}
