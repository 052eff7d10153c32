use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Clock, Expiry, Lifetime};

const LIFETIME: Lifetime = Lifetime {
    idle: Duration::from_secs(60),
    header: Duration::from_secs(10),
    max_age: Duration::from_secs(3600),
    max_requests: 3,
};

#[tokio::test(start_paused = true)]
async fn an_idle_connection_expires_after_the_idle_timeout_and_a_request_restarts_it() {
    let clock = Clock::new(LIFETIME);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(clock.expired(), None);
    drop(clock.request());
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        clock.expired(),
        None,
        "the request made it idle again from then"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(clock.expired(), Some(Expiry::Idle));
}

#[tokio::test(start_paused = true)]
async fn a_started_header_block_has_the_header_timeout_not_the_idle_one() {
    let clock = Clock::new(LIFETIME);
    let (client, server) = tokio::io::duplex(64);
    let mut server = clock.watch(server);
    let mut client = client;
    client.write_all(b"GET / HT").await.expect("write");
    let mut buf = [0u8; 8];
    server.read_exact(&mut buf).await.expect("read");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(clock.expired(), None);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(clock.expired(), Some(Expiry::SlowHeader));
}

#[tokio::test(start_paused = true)]
async fn a_request_in_progress_never_expires() {
    let clock = Clock::new(LIFETIME);
    let request = clock.request();
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(clock.expired(), None);
    assert!(clock.next_check() > tokio::time::Instant::now());
    drop(request);
    assert_eq!(clock.expired(), None);
}

#[tokio::test(start_paused = true)]
async fn the_last_request_is_the_counted_one_or_the_first_after_the_age() {
    let clock = Clock::new(LIFETIME);
    assert!(!clock.request().is_last());
    assert!(!clock.request().is_last());
    assert!(clock.request().is_last(), "the third of three");
    let young = Clock::new(LIFETIME);
    tokio::time::advance(LIFETIME.max_age).await;
    assert!(young.request().is_last());
}
