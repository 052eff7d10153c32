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
async fn past_the_tracked_addresses_newcomers_share_one_allowance() {
    let logins = FailedLogins::default();
    for n in 0..MAX_TRACKED {
        let n = u32::try_from(n).expect("small");
        logins.failed(IpAddr::from((10 << 24 | n).to_be_bytes()));
    }
    let (a, b) = (ip(2), ip(3));
    for _ in 0..MAX_FAILURES / 2 {
        logins.failed(a);
        logins.failed(b);
    }
    assert!(logins.throttled(a).is_some() && logins.throttled(b).is_some());
    assert!(logins.windows.lock().expect("lock").len() <= MAX_TRACKED + 1);
    // Once the old windows are over, addresses are tracked one by one again.
    tokio::time::advance(WINDOW).await;
    assert_eq!(logins.failed(a), Failure::First);
    assert_eq!(logins.throttled(b), None);
}
