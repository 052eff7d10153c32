use super::*;

#[test]
fn retries_wait_longer_each_time_up_to_an_hour() {
    let mut backoff = Backoff::default();
    let waits: Vec<_> = (0..8).map(|_| backoff.next().as_secs() / 60).collect();
    assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
}
