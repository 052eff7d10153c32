use std::time::Duration;

use super::*;

#[test]
fn one_busy_user_leaves_every_other_its_reserve() {
    let limit = FairLimit::new(12, 2, ["slow", "a", "b"]);
    let held: Vec<_> = std::iter::from_fn(|| limit.try_acquire("slow"))
        .take(20)
        .collect();
    assert_eq!(held.len(), 8, "12 slots less 2 for each of the two others");
    for user in ["a", "b"] {
        let first = limit.try_acquire(user).expect("a reserved slot");
        let second = limit.try_acquire(user).expect("a reserved slot");
        drop((first, second));
    }
    assert_eq!(limit.in_use(), 8);
}

#[test]
fn a_lone_user_may_use_all_but_the_reserves_and_the_limit_holds() {
    let limit = FairLimit::new(4, 1, ["a", "b"]);
    let a: Vec<_> = std::iter::from_fn(|| limit.try_acquire("a"))
        .take(10)
        .collect();
    assert_eq!(a.len(), 3);
    let b = limit.try_acquire("b").expect("b's reserve");
    assert!(limit.try_acquire("b").is_none(), "the limit is full");
    assert!(limit.try_acquire("unknown").is_none());
    drop(a);
    let b_more: Vec<_> = std::iter::from_fn(|| limit.try_acquire("b"))
        .take(10)
        .collect();
    assert_eq!(b_more.len(), 2, "b now leaves a its reserve");
    drop((b, b_more));
    assert_eq!(limit.in_use(), 0);
    let all: Vec<_> = std::iter::from_fn(|| limit.try_acquire("a"))
        .take(10)
        .collect();
    assert_eq!(all.len(), 3);
}

#[test]
fn the_reserves_never_take_more_than_half_the_limit() {
    let limit = FairLimit::new(8, 10, ["a", "b"]);
    assert_eq!(limit.reserve(), 2);
    let a: Vec<_> = std::iter::from_fn(|| limit.try_acquire("a"))
        .take(10)
        .collect();
    assert_eq!(a.len(), 6);
    // The agent's defaults with ten bots: a busy one still gets half, not a tenth.
    let ten: Vec<String> = (0..10).map(|n| format!("bot{n}")).collect();
    let agent = FairLimit::new(100, 10, ten.iter().map(String::as_str));
    assert_eq!(agent.reserve(), 5);
    let busy: Vec<_> = std::iter::from_fn(|| agent.try_acquire("bot0"))
        .take(200)
        .collect();
    assert_eq!(busy.len(), 55);
    // More users than half the slots: still one each while the limit covers them.
    let many = FairLimit::new(5, 10, ["a", "b", "c", "d"]);
    assert_eq!(many.reserve(), 1);
    let crowd = FairLimit::new(3, 10, ["a", "b", "c", "d"]);
    assert_eq!(crowd.reserve(), 0, "not every user can keep a slot");
    let one = FairLimit::new(5, 10, ["only"]);
    assert_eq!(one.reserve(), 2);
    let all: Vec<_> = std::iter::from_fn(|| one.try_acquire("only"))
        .take(10)
        .collect();
    assert_eq!(all.len(), 5);
    let none = FairLimit::new(5, 0, ["a", "b"]);
    let a: Vec<_> = std::iter::from_fn(|| none.try_acquire("a"))
        .take(10)
        .collect();
    assert_eq!(a.len(), 5, "no reserve: the plain limit");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_the_slot_a_release_frees_for_it() {
    let limit = std::sync::Arc::new(FairLimit::new(3, 1, ["a", "b"]));
    let mut a: Vec<_> = std::iter::from_fn(|| limit.try_acquire("a"))
        .take(10)
        .collect();
    assert_eq!(a.len(), 2);
    let b = limit.try_acquire("b").expect("b's reserve");
    let waiter = tokio::spawn({
        let limit = limit.clone();
        async move {
            let _permit = limit.acquire("b").await;
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiter.is_finished(), "every slot is held");
    a.pop();
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("the waiter wakes")
        .expect("join");
    drop((a, b));
    assert_eq!(limit.in_use(), 0);
}
