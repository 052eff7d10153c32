//! STAND-IN for the lead's `tls` folder module (lands on main; this file is replaced then).
//!
//! - [`acme`]: certificates from an ACME CA.
//! - [`certificates`]: the live certificate resolver.
//! - [`pem`]: PEM files into rustls keys.

pub(crate) mod acme;
pub(crate) mod certificates;
pub(crate) mod pem;
