//! Bot names: the one rule both sides apply, since a name travels in the hello, in webhook URLs
//! (`/hook/<bot>`), in file names and in logs.

/// The rule in words, for error messages on either side.
pub const RULE: &str = "1 to 64 characters from A-Z a-z 0-9 _ -";

/// The longest bot name.
pub const MAX_LEN: usize = 64;

/// Whether `name` is a valid bot name: [`RULE`]. Such a name is safe in a URL path segment and
/// as a file name, and needs no escaping in a log line.
pub fn is_valid(name: &str) -> bool {
    (1..=MAX_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
#[path = "bot_name_tests.rs"]
mod tests;
