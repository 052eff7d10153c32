use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn delays_grow_then_cap_and_stay_within_the_jitter_bounds() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut backoff = Backoff::default();
    let mut step = INITIAL_DELAY;
    for _ in 0..20 {
        let delay = backoff.next_delay_with(&mut rng);
        assert!(
            delay >= step / 2 && delay <= step,
            "{delay:?} outside {step:?}"
        );
        step = (step * 2).min(MAX_DELAY);
    }
    assert_eq!(step, MAX_DELAY);
    assert!(backoff.next_delay_with(&mut rng) >= MAX_DELAY / 2);
}

#[test]
fn delays_are_not_all_the_same() {
    let mut rng = StdRng::seed_from_u64(1);
    let delays: Vec<_> = (0..10)
        .map(|_| Backoff::new(MAX_DELAY, MAX_DELAY).next_delay_with(&mut rng))
        .collect();
    assert!(delays.iter().any(|d| *d != delays[0]), "{delays:?}");
}

#[test]
fn reset_starts_from_the_initial_step() {
    let mut backoff = Backoff::default();
    for _ in 0..10 {
        backoff.next_delay();
    }
    assert!(backoff.next_delay() >= MAX_DELAY / 2);
    backoff.reset();
    assert!(backoff.next_delay() <= INITIAL_DELAY);
}

#[test]
fn a_relay_restart_is_retried_within_two_seconds() {
    let mut backoff = Backoff::default();
    let first_five: Duration = (0..5).map(|_| backoff.next_delay()).sum();
    assert!(first_five <= Duration::from_millis(3100), "{first_five:?}");
    let mut backoff = Backoff::default();
    let first_four: Duration = (0..4).map(|_| backoff.next_delay()).sum();
    assert!(first_four <= Duration::from_millis(1500), "{first_four:?}");
}
