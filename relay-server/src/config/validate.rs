//! The checks every configuration passes, whether it came from flags, a file or a test.

use std::time::Duration;

use super::{Config, ConfigError, MAX_THREADS, MIN_TOKEN_LEN, TlsMode};

/// Bodies under this are not worth configuring; it also keeps the check against the frame limit honest.
const MIN_BODY_BYTES: usize = 1024;
/// Shorter connection timeouts would close connections before a request could be made on them.
const MIN_CONNECTION_TIMEOUT: Duration = Duration::from_millis(100);

impl Config {
    /// Checks every value that flags, files or tests may have set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return invalid(format!("threads must be 1 to {MAX_THREADS}"));
        }
        let limits = &self.limits;
        if !(MIN_BODY_BYTES..=protocol::MAX_BODY_LIMIT).contains(&limits.max_body_bytes) {
            return invalid(format!(
                "max_body_bytes must be between {MIN_BODY_BYTES} and {}",
                protocol::MAX_BODY_LIMIT
            ));
        }
        if limits.bot_timeout < Duration::from_millis(100)
            || limits.bot_timeout >= Duration::from_secs(60)
        {
            return invalid(
                "bot_timeout must be at least 100ms and under 60s (Telegram gives up at 60s)"
                    .into(),
            );
        }
        if limits.heartbeat_timeout < Duration::from_secs(1) {
            return invalid("heartbeat_timeout must be at least 1s".into());
        }
        let counts = [
            ("max_connections", limits.max_connections),
            (
                "max_connections_per_source",
                limits.max_connections_per_source,
            ),
            (
                "max_handshakes_per_source",
                limits.max_handshakes_per_source,
            ),
            ("max_agent_sessions", limits.max_agent_sessions),
            ("max_sessions_per_token", limits.max_sessions_per_token),
            ("max_in_flight_per_agent", limits.max_in_flight_per_agent),
            (
                "max_requests_per_connection",
                limits.max_requests_per_connection as usize,
            ),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{name} must be at least 1"));
        }
        if limits.max_sessions_per_token > limits.max_agent_sessions {
            return invalid("max_sessions_per_token must not exceed max_agent_sessions".into());
        }
        if limits.body_budget_bytes < limits.max_body_bytes {
            return invalid("body_budget_bytes must be at least max_body_bytes".into());
        }
        for (name, value) in [
            ("keep_alive_timeout", limits.keep_alive_timeout),
            ("header_read_timeout", limits.header_read_timeout),
            ("max_connection_age", limits.max_connection_age),
        ] {
            if value < MIN_CONNECTION_TIMEOUT {
                return invalid(format!(
                    "{name} must be at least {MIN_CONNECTION_TIMEOUT:?}"
                ));
            }
        }
        for token in self
            .agent_token
            .iter()
            .chain(self.agents.iter().map(|a| &a.token))
        {
            if token.expose().len() < MIN_TOKEN_LEN {
                return invalid(format!(
                    "agent tokens must be at least {MIN_TOKEN_LEN} characters long"
                ));
            }
        }
        for (index, agent) in self.agents.iter().enumerate() {
            if agent.bots.is_empty() {
                return invalid(format!("agent {:?} lists no bots", agent.name));
            }
            for bot in &agent.bots {
                check_bot_name(bot)?;
            }
            if self.agents[..index]
                .iter()
                .any(|other| other.token == agent.token)
                || self.agent_token.as_ref() == Some(&agent.token)
            {
                return invalid(format!(
                    "agent {:?} reuses another agent's token",
                    agent.name
                ));
            }
        }
        let delivery = &self.delivery;
        if delivery.max_attempts == 0 || delivery.chats_in_parallel == 0 {
            return invalid("max_attempts and chats_in_parallel must be at least 1".into());
        }
        if delivery.retention < Duration::from_secs(60) {
            return invalid("retention must be at least 1m".into());
        }
        if delivery.max_store_bytes < limits.max_body_bytes as u64 {
            return invalid("max_store_bytes must be at least max_body_bytes".into());
        }
        for (name, bot) in &self.bots {
            check_bot_name(name)?;
            if let Some(secret) = &bot.secret_token {
                check_secret_token(name, secret.expose())?;
            }
        }
        if let Some(host) = &self.public_host
            && (host.is_empty() || host.contains(|c: char| c == '/' || c.is_whitespace()))
        {
            return invalid(format!(
                "public_host {host:?} must be a bare host name or IP address"
            ));
        }
        if let TlsMode::Acme(acme) = &self.tls {
            acme.validate()?;
        }
        Ok(())
    }
}

fn check_bot_name(name: &str) -> Result<(), ConfigError> {
    if protocol::bot_name::is_valid(name) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "bot name {name:?} must be {}",
            protocol::bot_name::RULE
        )))
    }
}

/// Telegram allows 1–256 characters of `A-Z a-z 0-9 _ -` in a webhook secret.
fn check_secret_token(bot: &str, secret: &str) -> Result<(), ConfigError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if (1..=256).contains(&secret.len()) && secret.bytes().all(allowed) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "secret_token of bot {bot:?} must be 1-256 letters, digits, '_' or '-' (Telegram's rule)"
        )))
    }
}
