//! The join value: the one string a relay's banner hands to an agent (`--join` or `RELAY_JOIN`),
//! carrying the relay's URL, the agent token and, for a self-signed certificate, its [`Pin`].
//! Imports only [`crate::secret`].
//!
//! A join value is `rj1.` followed by base64url (no padding) of a compact JSON object:
//! `{"relay":"wss://…","token":"…","pin":"sha256:…"}`, the pin left out when there is none.
//! Base64url keeps it one shell word with no quoting; JSON keeps it readable once decoded and lets
//! a later relay add a key that an older agent skips. A change an older agent must not skip
//! gets a new prefix (`rj2.`), so it is refused with a clear message rather than half understood.
//!
//! No error message here quotes the value or the token: a join value holds a secret.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// What every join value starts with; the `1` is the format's version.
pub const JOIN_PREFIX: &str = "rj1.";

/// The longest join value accepted, in bytes, before anything is decoded. A real one is a URL,
/// a token and a pin: well under 1 KiB. 8 KiB leaves room for long host names and tokens while
/// keeping a pasted file or a runaway variable from being decoded at all.
pub const MAX_JOIN_LEN: usize = 8 * 1024;

/// The SHA-256 fingerprint of a certificate's DER bytes: what `--pin` pins. Not a secret (it is
/// derived from the certificate the relay shows anyone), so `Debug` and `Display` show it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin([u8; 32]);

/// Why a pin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// It does not say which hash it is.
    #[error("a pin must start with sha256: (like sha256:3f7a…, 64 hex digits)")]
    Prefix,
    /// The part after `sha256:` is not 64 hex digits (or 32 colon-separated pairs).
    #[error(
        "a pin is sha256: followed by 64 hex digits, with or without colons between pairs (as openssl x509 -fingerprint -sha256 prints them)"
    )]
    Digits,
}

impl Pin {
    /// The pin of a certificate, from its DER bytes.
    pub fn of(der: &[u8]) -> Pin {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Pin(bytes)
    }

    /// Reads `sha256:HEX`: 64 hex digits in either case, or 32 pairs separated by colons
    /// (`AB:CD:…`) as openssl prints them. Whitespace around it is ignored.
    pub fn parse(text: &str) -> Result<Pin, PinError> {
        let text = text.trim();
        let hex = text
            .get(..7)
            .filter(|head| head.eq_ignore_ascii_case("sha256:"))
            .map(|_| &text[7..])
            .ok_or(PinError::Prefix)?;
        let digits: Vec<u8> = if hex.contains(':') {
            let pairs: Vec<&str> = hex.split(':').collect();
            if pairs.len() != 32 || pairs.iter().any(|pair| pair.len() != 2) {
                return Err(PinError::Digits);
            }
            pairs.concat().into_bytes()
        } else {
            hex.as_bytes().to_vec()
        };
        if digits.len() != 64 {
            return Err(PinError::Digits);
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let high = hex_digit(pair[0]).ok_or(PinError::Digits)?;
            let low = hex_digit(pair[1]).ok_or(PinError::Digits)?;
            *byte = (high << 4) | low;
        }
        Ok(Pin(bytes))
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn hex_digit(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

impl fmt::Display for Pin {
    /// `sha256:` and 64 lowercase hex digits, the form [`Pin::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({self})")
    }
}

impl FromStr for Pin {
    type Err = PinError;

    fn from_str(text: &str) -> Result<Pin, PinError> {
        Pin::parse(text)
    }
}

/// What a join value carries. Its `Debug` shows the relay and the pin, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The relay's agent URL, `ws://` or `wss://`.
    pub relay: String,
    /// The agent token the relay expects.
    pub token: Secret,
    /// The relay certificate's fingerprint, when the agent should trust exactly that certificate
    /// (a self-signed one); `None` when the relay's certificate is from a public CA.
    pub pin: Option<Pin>,
}

/// Why a join value was refused. No message quotes the value: it holds the agent token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// It does not start with [`JOIN_PREFIX`].
    #[error(
        "not a join value: it must start with rj1. (copy the whole RELAY_JOIN=… line from relay-server's banner)"
    )]
    Prefix,
    /// It is longer than [`MAX_JOIN_LEN`].
    #[error("not a join value: longer than {MAX_JOIN_LEN} bytes")]
    TooLong,
    /// The part after the prefix is not base64url.
    #[error("damaged join value: not base64url; copy it again from relay-server's banner")]
    Base64,
    /// The decoded bytes end before the JSON object does: the value was cut short.
    #[error("damaged join value: it is cut short; copy the whole value again")]
    Truncated,
    /// The decoded bytes are not the JSON object a relay writes.
    #[error("damaged join value: {0}; copy it again from relay-server's banner")]
    Shape(&'static str),
    /// The relay URL in it is not `ws://` or `wss://`.
    #[error("damaged join value: its relay URL is not ws:// or wss://")]
    Relay,
    /// The pin in it is not a pin.
    #[error("damaged join value: {0}")]
    Pin(PinError),
}

/// The JSON object inside a join value. Keys it does not know are skipped, so that a newer relay
/// can add one; see the module docs for changes that must not be skipped.
#[derive(Serialize, Deserialize)]
struct Wire {
    relay: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
}

/// base64url without padding when writing; padding tolerated when reading, in case a tool added it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl Join {
    /// The join value: [`JOIN_PREFIX`] and base64url of the JSON object.
    pub fn encode(&self) -> String {
        let wire = Wire {
            relay: self.relay.clone(),
            token: self.token.expose().to_owned(),
            pin: self.pin.map(|pin| pin.to_string()),
        };
        // A struct of strings always serializes.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        format!("{JOIN_PREFIX}{}", BASE64.encode(json))
    }

    /// Reads a join value. Whitespace and quotes around it (pasted along by accident) are
    /// ignored. Only the shape is checked here; the agent checks the URL and the token further.
    pub fn parse(value: &str) -> Result<Join, JoinError> {
        if value.len() > MAX_JOIN_LEN {
            return Err(JoinError::TooLong);
        }
        let value = value
            .trim()
            .trim_matches(|c| matches!(c, '"' | '\'' | '`'))
            .trim();
        let body = value.strip_prefix(JOIN_PREFIX).ok_or(JoinError::Prefix)?;
        let json = BASE64.decode(body).map_err(|_| JoinError::Base64)?;
        let wire: Wire = serde_json::from_slice(&json).map_err(|error| {
            if error.is_eof() {
                JoinError::Truncated
            } else {
                JoinError::Shape(
                    "not the JSON object relay-server writes (relay, token and an optional pin)",
                )
            }
        })?;
        let relay = wire.relay;
        let scheme_ok = ["ws://", "wss://"].iter().any(|scheme| {
            relay
                .get(..scheme.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        });
        if !scheme_ok {
            return Err(JoinError::Relay);
        }
        if wire.token.is_empty() {
            return Err(JoinError::Shape("its token is empty"));
        }
        let pin = wire
            .pin
            .as_deref()
            .map(Pin::parse)
            .transpose()
            .map_err(JoinError::Pin)?;
        Ok(Join {
            relay,
            token: Secret::new(wire.token),
            pin,
        })
    }
}

impl FromStr for Join {
    type Err = JoinError;

    fn from_str(value: &str) -> Result<Join, JoinError> {
        Join::parse(value)
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
