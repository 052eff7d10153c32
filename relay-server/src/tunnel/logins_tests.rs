use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test(start_paused = true)]
async fn an_address_is_throttled_after_its_allowance_and_free_again_after_the_window() {
    let logins = FailedLogins::default();
    assert_eq!(logins.failed(ip(2)), Failure::First);
    for _ in 2..MAX_FAILURES {
        assert_eq!(logins.failed(ip(2)), Failure::Counted);
        assert_eq!(logins.throttled(ip(2)), None);
    }
    assert_eq!(logins.failed(ip(2)), Failure::Throttled);
    assert_eq!(logins.throttled(ip(2)), Some(WINDOW));
    // Another address is not affected.
    assert_eq!(logins.throttled(ip(1)), None);
    tokio::time::advance(WINDOW / 2).await;
    assert_eq!(logins.throttled(ip(2)), Some(WINDOW / 2));
    tokio::time::advance(WINDOW / 2).await;
    assert_eq!(logins.throttled(ip(2)), None);
    assert_eq!(logins.failed(ip(2)), Failure::First, "a new window");
}

#[tokio::test(start_paused = true)]
async fn a_good_token_clears_the_count() {
    let logins = FailedLogins::default();
    for _ in 1..MAX_FAILURES {
        logins.failed(ip(2));
    }
    logins.succeeded(ip(2));
    assert_eq!(logins.failed(ip(2)), Failure::First);
}

#[tokio::test(start_paused = true)]
async fn past_the_tracked_sources_nobody_else_is_refused_for_them() {
    let logins = FailedLogins::default();
    for n in 0..MAX_TRACKED {
        let n = u32::try_from(n).expect("small");
        for _ in 0..MAX_FAILURES {
            logins.failed(IpAddr::from((10 << 24 | n).to_be_bytes()));
        }
    }
    let newcomer = ip(2);
    for _ in 0..MAX_FAILURES * 2 {
        assert_eq!(logins.failed(newcomer), Failure::Untracked);
    }
    assert_eq!(
        logins.throttled(newcomer),
        None,
        "a stranger pays for nobody"
    );
    assert_eq!(logins.throttled(ip(3)), None);
    assert_eq!(logins.windows.lock().expect("lock").len(), MAX_TRACKED);
    // Once the old windows are over, sources are tracked again.
    tokio::time::advance(WINDOW).await;
    assert_eq!(logins.failed(newcomer), Failure::First);
}

#[tokio::test(start_paused = true)]
async fn an_ipv6_64_is_one_source() {
    let logins = FailedLogins::default();
    for n in 0..MAX_FAILURES {
        let address: IpAddr = format!("2001:db8:1:2::{:x}", n + 1).parse().expect("ipv6");
        logins.failed(address);
    }
    let same: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ipv6");
    let other: IpAddr = "2001:db8:1:3::1".parse().expect("ipv6");
    assert!(logins.throttled(same).is_some());
    assert_eq!(logins.throttled(other), None);
}
