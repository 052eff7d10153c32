use std::net::IpAddr;
use std::time::Duration;

use super::{PerSource, Pool, source_of};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

#[test]
fn a_source_gets_up_to_its_cap_and_its_count_falls_as_guards_drop() {
    let per_source = PerSource::new(2);
    let first = per_source.enter(ip("192.0.2.1")).expect("first");
    let second = per_source.enter(ip("192.0.2.1")).expect("second");
    assert!(per_source.enter(ip("192.0.2.1")).is_none(), "third is over");
    assert!(
        per_source.enter(ip("192.0.2.2")).is_some(),
        "others are not"
    );
    drop(first);
    assert_eq!(per_source.count(ip("192.0.2.1")), 1);
    assert!(per_source.enter(ip("192.0.2.1")).is_some());
    drop(second);
}

#[test]
fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
    assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
    assert_eq!(source_of(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    let per_source = PerSource::new(1);
    let _held = per_source.enter(ip("2001:db8:1:2::1")).expect("first");
    assert!(per_source.enter(ip("2001:db8:1:2::ffff")).is_none());
    assert!(per_source.enter(ip("2001:db8:1:3::1")).is_some());
}

#[tokio::test(start_paused = true)]
async fn the_reserve_is_used_only_when_the_general_pool_is_full() {
    let pool = Pool::new(1, 1);
    let general = pool.slot().await.expect("slot");
    assert!(!general.reserved);
    let reserved = pool.slot().await.expect("slot");
    assert!(reserved.reserved);
    let third = tokio::time::timeout(Duration::from_secs(1), pool.slot()).await;
    assert!(third.is_err(), "both full: the next waits");
    drop(general);
    let again = pool.slot().await.expect("slot");
    assert!(!again.reserved);
}
