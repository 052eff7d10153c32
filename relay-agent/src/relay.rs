//! The link to the relay: dialing it ([`connect`]), one session over the connection
//! ([`session`]) and the delays between sessions ([`backoff`]). May import [`crate::bot`] (where
//! each request goes) and the modules below it, never the crate root.

pub(crate) mod backoff;
pub(crate) mod connect;
pub(crate) mod session;
