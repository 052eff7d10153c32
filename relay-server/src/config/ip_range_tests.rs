use std::net::IpAddr;

use super::IpRange;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

#[test]
fn a_range_holds_the_addresses_under_its_prefix() {
    let range: IpRange = "10.1.0.0/16".parse().expect("range");
    assert!(range.contains(ip("10.1.200.3")));
    assert!(!range.contains(ip("10.2.0.1")));
    assert!(
        range.contains(ip("::ffff:10.1.0.9")),
        "IPv4-mapped counts as IPv4"
    );
    assert!(!range.contains(ip("::1")));
}

#[test]
fn a_bare_address_is_a_range_of_one_and_zero_is_everything() {
    let one: IpRange = "192.0.2.7".parse().expect("range");
    assert!(one.contains(ip("192.0.2.7")));
    assert!(!one.contains(ip("192.0.2.8")));
    let all: IpRange = "0.0.0.0/0".parse().expect("range");
    assert!(all.contains(ip("203.0.113.1")));
    let v6: IpRange = "2001:db8::/32".parse().expect("range");
    assert!(v6.contains(ip("2001:db8:1::5")));
    assert!(!v6.contains(ip("2001:db9::5")));
}

#[test]
fn loopback_is_127_slash_8_and_ipv6_one() {
    let [v4, v6] = IpRange::loopback();
    assert!(v4.contains(ip("127.0.0.2")));
    assert!(v6.contains(ip("::1")));
    assert!(!v4.contains(ip("192.168.1.1")));
}

#[test]
fn nonsense_is_refused() {
    for text in [
        "",
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "10.0.0.0/x",
        "localhost",
    ] {
        assert!(text.parse::<IpRange>().is_err(), "{text:?} parsed");
    }
}
