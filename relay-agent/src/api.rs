//! Bot API calls the agent makes on a bot's behalf: [`reply`] finds and makes the call in a bot's
//! answer to a stored update, over the pooled HTTPS [`client`]. May import only the modules
//! below it (tls, error, config, url, stats, text), never [`crate::bot`] or [`crate::relay`].

pub(crate) mod client;
pub(crate) mod reply;
