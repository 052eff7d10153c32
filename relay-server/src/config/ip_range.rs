//! An address range written `ADDRESS/PREFIX` (or a bare address), as in `trusted_proxies`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A range of IPv4 or IPv6 addresses: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    address: IpAddr,
    prefix: u8,
}

/// Why a range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address range like 10.0.0.0/8, 127.0.0.1 or ::1/128")]
pub struct IpRangeError(String);

impl IpRange {
    /// The loopback ranges, 127.0.0.0/8 and ::1: a proxy on the relay's own machine.
    pub fn loopback() -> [IpRange; 2] {
        [
            IpRange {
                address: IpAddr::from([127, 0, 0, 0]),
                prefix: 8,
            },
            IpRange {
                address: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                prefix: 128,
            },
        ]
    }

    /// Whether `address` is in the range. An IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, address: IpAddr) -> bool {
        let bits = |value: IpAddr| -> (u128, u8) {
            match value.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let (mine, my_width) = bits(self.address);
        let (theirs, their_width) = bits(address);
        if my_width != their_width {
            return false;
        }
        let prefix = u32::from(self.prefix);
        let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        mine & mask == theirs & mask
    }
}

impl FromStr for IpRange {
    type Err = IpRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || IpRangeError(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = IpAddr::from_str(address)
            .map_err(|_| error())?
            .to_canonical();
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix.parse::<u8>().map_err(|_| error())?,
        };
        if prefix > width {
            return Err(error());
        }
        Ok(IpRange { address, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for IpRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "ip_range_tests.rs"]
mod tests;
