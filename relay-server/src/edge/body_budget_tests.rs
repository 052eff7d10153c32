use super::{BodyBudget, Exhausted};

#[test]
fn shares_take_from_the_budget_and_give_back_when_dropped() {
    let budget = BodyBudget::new(100);
    let first = budget.take(60).expect("fits");
    assert_eq!(budget.take(41).err(), Some(Exhausted));
    let mut second = budget.take(40).expect("fits exactly");
    assert_eq!(budget.in_use(), 100);
    assert_eq!(second.grow(1), Err(Exhausted));
    drop(first);
    second.grow(10).expect("room again");
    assert_eq!(second.bytes(), 50);
    drop(second);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn a_huge_request_does_not_wrap_around() {
    let budget = BodyBudget::new(100);
    let _held = budget.take(10).expect("fits");
    assert_eq!(budget.take(usize::MAX).err(), Some(Exhausted));
    assert_eq!(budget.in_use(), 10);
}
