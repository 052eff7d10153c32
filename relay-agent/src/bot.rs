//! One relayed request on its way to the bot and back: [`handler`] runs the steps, [`forward`]
//! talks HTTP to the bot, [`dedupe`] remembers what the bot has already answered. May import
//! [`crate::api`] (for the Bot API calls in answers to stored updates) and the modules below it,
//! never [`crate::relay`].

pub(crate) mod dedupe;
pub(crate) mod forward;
pub(crate) mod handler;
